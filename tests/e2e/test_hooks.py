"""Webhooks against the real daemon: twine uploads, kill -9 with events queued, exactly once."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Clients, Daemon, DaemonFactory
from tests.e2e.conftest import (
    ROOT,
    ROOT_PASSWORD,
    Devpi,
    call,
    create_index,
    decoded,
    simple_files,
    twine_upload,
)
from tests.fakes.dists import build_sdist, build_wheel
from tests.fakes.index import ThreadedServer
from tests.fakes.receiver import Receiver, signature_ok
from tests.polling import wait_until

SECRET = "e2e-hook-secret-5d1c"
#: quick retries: the receiver's recovery is seen within a fraction of a second
HOOKS = {"hooks": {"retry_min": 0.05, "retry_max": 0.2, "timeout": 2}}


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def receiver_server(receiver: Receiver) -> Iterator[ThreadedServer]:
    """The receiver on 127.0.0.1: the tests' webhook endpoint and Jenkins."""
    with ThreadedServer(receiver.app) as server:
        yield server


def hook_state(daemon: Daemon, key: str) -> int:
    """One number of the index's only webhook in `+hooks`: pending, delivered, failed."""
    status = decoded(call(daemon, "GET", "/root/ci/+hooks", auth=ROOT))
    return int(status["webhooks"][0][key])


def cli(clients: Clients, daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    """`wheelwell …` (the client side) against `daemon` as root."""
    auth = ("--url", daemon.url, "--user", "root", "--password", ROOT_PASSWORD)
    return clients.run(sys.executable, "-m", "proxy", *args, *auth)


def projects(receiver: Receiver) -> list[str]:
    return [json.loads(r.body)["project"] for r in receiver.at("/hook")]


def test_events_queued_before_a_kill_9_are_delivered_once_in_order_after_restart(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
    receiver: Receiver,
    receiver_server: ThreadedServer,
) -> None:
    first = daemon_factory(fake_index_server.url, HOOKS)
    hooks = tmp_path / "hooks.json"
    hooks.write_text(json.dumps([{"url": f"{receiver_server.url}/hook", "secret": SECRET}]))
    # made at run time (a YAML-declared index is reset to the file at every start), by
    # the CLI, the secret in a file rather than on the command line
    cli(clients, first, "index", "create", "root/ci", "--webhooks", f"@{hooks}")
    receiver_server.stop()  # the receiver is down: every attempt is refused
    dists = [build_wheel(tmp_path / "d", f"p{n}", "1.0") for n in range(3)]
    dists.append(build_sdist(tmp_path / "d", "p3", "1.0"))
    twine_upload(clients, f"{first.url}/root/ci/", ROOT, *(d.path for d in dists))
    assert simple_files(first, "root/ci", "p3") == {dists[3].filename: dists[3].sha256}
    assert hook_state(first, "pending") == 4  # queued with the uploads themselves
    first.process.kill()  # kill -9, events still queued
    first.process.wait()

    again = daemon_factory(
        fake_index_server.url, {**HOOKS, "storage": {"data_dir": str(first.data_dir)}}
    )
    receiver_server.start()  # the receiver recovers
    wait_until(
        lambda: len(receiver.at("/hook")) >= 4,
        timeout=30,
        message=lambda: f"four deliveries; got {projects(receiver)}\n{again.log()}",
    )
    wait_until(lambda: hook_state(again, "delivered") == 4, timeout=30, message="four delivered")
    # a restart after delivery sends nothing again; a new upload is the only new event
    assert again.stop() == 0
    third = daemon_factory(
        fake_index_server.url, {**HOOKS, "storage": {"data_dir": str(first.data_dir)}}
    )
    last = build_wheel(tmp_path / "d", "p4", "1.0")
    twine_upload(clients, f"{third.url}/root/ci/", ROOT, last.path)
    wait_until(lambda: hook_state(third, "delivered") == 5, timeout=30, message="a fifth")
    status = decoded(call(third, "GET", "/root/ci/+hooks", auth=ROOT))
    shown = cli(clients, third, "index", "hooks", "root/ci").stdout
    assert f"webhook {receiver_server.url}/hook (upload, yank" in shown
    assert "pending 0, delivered 5, failed 0" in shown
    assert SECRET not in shown
    got = receiver.at("/hook")
    assert projects(receiver) == ["p0", "p1", "p2", "p3", "p4"]
    assert all(signature_ok(SECRET, r) for r in got)
    ids = [r.headers["X-Wheelwell-Event-Id"] for r in got]
    assert len(set(ids)) == 5
    assert status["webhooks"][0]["secret"] == "***"
    for daemon in (first, again, third):
        assert SECRET not in daemon.log()


def test_devpi_jenkins_setup_moves_over_unchanged(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    tmp_path: Path,
    receiver: Receiver,
    receiver_server: ThreadedServer,
) -> None:
    """devpi-client sets `uploadtrigger_jenkins` as for devpi-jenkins; `devpi upload` builds."""
    receiver.crumb = ("Jenkins-Crumb", "e2e-crumb")  # this Jenkins wants a CSRF crumb
    daemon = daemon_factory(fake_index_server.url, HOOKS)
    home = tmp_path / "devpi-home"
    home.mkdir()
    devpi = Devpi(home, daemon)
    devpi("use", f"{daemon.url}/root/public")
    devpi("login", "root", "--password", ROOT_PASSWORD)
    devpi("index", "-c", "ci", "bases=root/public")
    trigger = receiver_server.url.replace("http://", "http://ci:jenkins-api-token@")
    devpi("index", "root/ci", f"uploadtrigger_jenkins={trigger}/job/{{pkgname}}/build")
    shown = devpi("index", "root/ci").stdout
    assert "uploadtrigger_jenkins=http://ci:***@" in shown
    assert "jenkins-api-token" not in shown
    devpi("use", "root/ci")
    house = tmp_path / "dist"
    build_sdist(house, "tested", "2.0")
    build_wheel(house, "tested", "2.0")
    devpi("upload", "--from-dir", str(house))
    wait_until(
        lambda: receiver.at("/job/tested/build"),
        timeout=30,
        message=lambda: f"a Jenkins build\n{daemon.log()}",
    )
    (build,) = receiver.at("/job/tested/build")  # the sdist's; the wheel triggers none
    assert build.form["Submit"] == "Build"
    assert build.form["name"] == "jobscript.py"
    assert b"PROJECT = 'tested'" in build.form["file0"]
    assert build.headers["Jenkins-Crumb"] == "e2e-crumb"
    assert "jenkins-api-token" not in daemon.log()


def test_a_replica_fires_no_hooks_its_primary_fires_them_once(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
    receiver: Receiver,
    receiver_server: ThreadedServer,
) -> None:
    """Uploads to the primary and through a replica: one event each, sent by the primary."""
    secret = tmp_path / "replication-secret"
    secret.write_text("hooks-e2e-replication-secret-0123\n")
    secret.chmod(0o600)
    rep = {"secret_file": str(secret), "heartbeat": "1s"}
    primary = daemon_factory(
        fake_index_server.url, {**HOOKS, "replication": {"role": "primary", **rep}}
    )
    hook = {"url": f"{receiver_server.url}/hook", "secret": SECRET}
    created = call(primary, "PUT", "/root/ci", {"type": "private", "webhooks": [hook]}, auth=ROOT)
    assert created.status == 201, created.body
    replica = daemon_factory(
        fake_index_server.url, {**HOOKS, "replication": {"primary_url": primary.url, **rep}}
    )
    first = build_wheel(tmp_path / "d", "direct", "1.0")
    twine_upload(clients, f"{primary.url}/root/ci/", ROOT, first.path)
    second = build_wheel(tmp_path / "d", "relayed", "1.0")
    twine_upload(clients, f"{replica.url}/root/ci/", ROOT, second.path)
    wait_until(lambda: simple_files(replica, "root/ci", "relayed"), timeout=30, message="replayed")
    wait_until(lambda: hook_state(primary, "delivered") == 2, timeout=30, message="two sent")
    # the replica's +hooks is relayed to the primary; its own queue stayed empty
    assert hook_state(replica, "delivered") == 2
    assert projects(receiver) == ["direct", "relayed"]
    with contextlib.closing(sqlite3.connect(replica.data_dir / "wheelwell.sqlite3")) as conn:
        assert conn.execute("SELECT COUNT(*) FROM hook_events").fetchone()[0] == 0


def tox_sdist(dest: Path, name: str, exit_code: int) -> Path:
    """An sdist whose tox.ini runs one command exiting `exit_code` (no install: no build deps)."""
    dest.mkdir(parents=True, exist_ok=True)
    root = f"{name}-1.0"
    members = {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        "setup.py": f"from setuptools import setup\nsetup(name={name!r}, version='1.0')\n",
        "tox.ini": (
            "[tox]\nenvlist = check\n\n[testenv:check]\nskip_install = true\n"
            f"commands = python -c \"import sys; print('tested'); sys.exit({exit_code})\"\n"
        ),
    }
    path = dest / f"{root}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_the_job_script_runs_tox_on_the_uploaded_sdist(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
    receiver: Receiver,
    receiver_server: ThreadedServer,
) -> None:
    """What Jenkins would run: the posted jobscript.py, against the daemon, passing and failing."""
    daemon = daemon_factory(fake_index_server.url, HOOKS)
    trigger = f"{receiver_server.url}/job/{{pkgname}}/buildWithParameters"
    create_index(daemon, "root/ci", ROOT, uploadtrigger_jenkins=trigger)
    for name, code in (("passes", 0), ("fails", 3)):
        built = tox_sdist(tmp_path / "dist", name, code)
        twine_upload(clients, f"{daemon.url}/root/ci/", ROOT, built)
    for name in ("passes", "fails"):
        wait_until(
            lambda name=name: receiver.at(f"/job/{name}/buildWithParameters"),  # type: ignore[misc]
            timeout=30,
            message=f"the {name} build",
        )
    results = {}
    for name in ("passes", "fails"):
        (build,) = receiver.at(f"/job/{name}/buildWithParameters")
        script = tmp_path / f"{name}-jobscript.py"
        script.write_bytes(build.form["file0"])
        # the clients' sandbox (no pip config); virtualenv asked not to look for updates online
        env = {"VIRTUALENV_NO_PERIODIC_UPDATE": "1"}
        results[name] = clients.run(sys.executable, str(script), check=False, env=env)
    passed, failed = results["passes"], results["fails"]
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "tested" in passed.stdout
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "tested" in failed.stdout
