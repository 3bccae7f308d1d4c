"""deploy/systemd's backup run for real: the timer's service exports the running daemon's state.

Booted like tests/deploy/test_systemd.py (a throwaway nspawn machine, wheelwell installed as
the unit headers say, from wheels built on the host); the daemon mirrors a FakeIndex on the
host's loopback. `systemctl start wheelwell-backup.service` must leave an export that imports.
"""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import Dists, free_port, http_get
from tests.deploy.nspawn import Machine, boot_installed, usable_tree
from tests.fakes.index import JSON_TYPE, FakeIndex, ThreadedServer
from tests.polling import wait_until

ROOT_PASSWORD = "nspawn-backup-secret"
LIST_USERS = (
    "import sqlite3; c = sqlite3.connect('/root/restored/wheelwell.sqlite3'); "
    "print(sorted(r[0] for r in c.execute('SELECT name FROM users')))"
)


@dataclass(frozen=True, slots=True)
class Installed:
    machine: Machine
    url: str


@pytest.fixture(scope="module")
def installed(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    tree = usable_tree()
    fake = FakeIndex(tmp_path_factory.mktemp("nspawn-backup-upstream"))
    dists.load_into(fake)
    workdir = tmp_path_factory.mktemp("nspawn-backup")
    port = free_port()
    name = f"exm-{uuid.uuid4().hex[:8]}"
    units = ("wheelwell.service", "wheelwell-backup.service", "wheelwell-backup.timer")
    enable = ("wheelwell", "wheelwell-backup.timer")
    with (
        ThreadedServer(fake.app) as server,
        boot_installed(
            tree,
            name,
            workdir,
            root_password=ROOT_PASSWORD,
            port=port,
            index_url=f"{server.url}/simple/",
            units=units,
            enable=enable,
        ) as machine,
    ):
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: _ready(url),
            timeout=60,
            interval=0.3,
            message=lambda: f"/+ready:\n{machine.journal('wheelwell')}",
        )
        yield Installed(machine, url)


def _ready(url: str) -> bool:
    try:
        return http_get(f"{url}/+ready", timeout=2).status == 200
    except OSError:
        return False


def _make_user(url: str, name: str) -> None:
    auth = base64.b64encode(f"root:{ROOT_PASSWORD}".encode()).decode()
    request = urllib.request.Request(
        f"{url}/{name}",
        data=json.dumps({"password": "backup-user-secret-1"}).encode(),
        method="PUT",
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        assert response.status == 201


def test_backup_units_pass_systemd_analyze_verify(installed: Installed) -> None:
    verified = installed.machine.run(
        "systemd-analyze",
        "verify",
        "/etc/systemd/system/wheelwell-backup.service",
        "/etc/systemd/system/wheelwell-backup.timer",
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    timers = installed.machine.run("systemctl", "list-timers", "--all", "--no-pager").stdout
    assert "wheelwell-backup.timer" in timers


def test_the_timers_service_exports_the_running_daemon_and_the_export_imports(
    installed: Installed,
) -> None:
    machine = installed.machine
    _make_user(installed.url, "backedup")
    page = http_get(f"{installed.url}/root/pypi/+simple/alpha/", {"Accept": JSON_TYPE})
    assert page.status == 200, page.body  # a mirror page cached too
    started = machine.run("systemctl", "start", "wheelwell-backup.service", check=False)
    journal = machine.journal("wheelwell-backup")
    assert started.returncode == 0, started.stderr + journal
    assert "every one sha256-checked" in journal, journal
    (export,) = machine.sh("ls /var/lib/wheelwell-backups/").split()
    assert export.startswith("wheelwell-") and export.endswith(".tar.zst")
    mode = machine.sh("stat -c %a /var/lib/wheelwell-backups").strip()
    assert mode == "700"
    assert _ready(installed.url)  # the daemon went on serving
    backup = f"/var/lib/wheelwell-backups/{export}"
    imported = machine.run(
        "/opt/wheelwell/bin/wheelwell", "import", backup, "--data-dir", "/root/restored"
    ).stdout
    users = machine.run("python3", "-c", LIST_USERS).stdout
    assert "imported into /root/restored" in imported
    assert "'backedup'" in users and "'root'" in users
    # nothing the backup ran as (root) was left in the daemon's data dir
    owners = machine.sh("find /var/lib/private/wheelwell -user root | head -5").strip()
    assert owners == "", owners
