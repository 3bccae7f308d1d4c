"""deploy/systemd booted for real: the unit under systemd as PID 1, in systemd-nspawn.

A throwaway copy of the cached Debian tree boots; wheelwell is installed the way the unit's header
says (a venv under /opt, the shipped config and unit) from wheels built on the host, with no
network inside. The machine shares the host's network, so the daemon's 127.0.0.1 port and the
FakeIndex's are reachable from both sides. The tests run in order on one machine; the last stops
the unit.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import pytest

from proxy.config import parse_config
from tests.conftest import Dists, free_port, http_get
from tests.deploy.nspawn import SYSTEMD, Machine, boot_installed, usable_tree
from tests.fakes.index import JSON_TYPE, FakeIndex, ThreadedServer
from tests.polling import wait_until

ROOT_PASSWORD = "nspawn-deploy-secret"
#: `systemd-analyze security wheelwell` inside the machine: lower is better; fail above this
#: (measured 1.2 "OK" with systemd 252, Debian bookworm)
SECURITY_EXPOSURE_BOUND = 1.2
#: after SIGTERM the daemon exits within shutdown_timeout plus this (the unit's comment)
STOP_MARGIN = 3.0
PROCESS_METRICS = (
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_start_time_seconds",
)


@dataclass(frozen=True, slots=True)
class Installed:
    """The booted machine with the unit enabled, and where the daemon answers from the host."""

    machine: Machine
    url: str
    upstream: FakeIndex


@pytest.fixture(scope="module")
def upstream(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeIndex]:
    fake = FakeIndex(tmp_path_factory.mktemp("nspawn-upstream"))
    dists.load_into(fake)
    with ThreadedServer(fake.app) as server:
        fake.root.joinpath("url").write_text(server.url)
        yield fake


@pytest.fixture(scope="module")
def installed(upstream: FakeIndex, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    tree = usable_tree()
    workdir = tmp_path_factory.mktemp("nspawn")
    port = free_port()
    name = f"wwh2-{uuid.uuid4().hex[:8]}"
    upstream_url = upstream.root.joinpath("url").read_text() + "/simple/"
    with boot_installed(
        tree, name, workdir, root_password=ROOT_PASSWORD, port=port, index_url=upstream_url
    ) as machine:
        yield Installed(machine, f"http://127.0.0.1:{port}", upstream)


def unit_state(machine: Machine) -> dict[str, str]:
    shown = machine.run(
        "systemctl", "show", "wheelwell", "-p", "ActiveState,SubState,Result,MainPID"
    ).stdout
    pairs = (line.split("=", 1) for line in shown.splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def ready(url: str) -> bool:
    try:
        return http_get(f"{url}/+ready", timeout=2).status == 200
    except OSError:
        return False


def test_unit_starts_and_becomes_ready(installed: Installed) -> None:
    machine = installed.machine
    wait_until(
        lambda: ready(installed.url),
        timeout=60,
        interval=0.3,
        message=lambda: f"/+ready from the host:\n{machine.journal('wheelwell')}",
    )
    state = unit_state(machine)
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    journal = machine.journal("wheelwell")
    assert "listening on" in journal
    assert ROOT_PASSWORD not in journal
    # The upstream is the FakeIndex, through PIP_INDEX_URL from /etc/wheelwell/env.
    page = http_get(f"{installed.url}/root/pypi/+simple/alpha/", {"Accept": JSON_TYPE})
    assert page.status == 200, page.body


def test_reload_sends_sighup_and_the_daemon_rereads_its_config(installed: Installed) -> None:
    machine = installed.machine
    before = unit_state(machine)["MainPID"]
    machine.run("systemctl", "reload", "wheelwell")
    wait_until(
        lambda: "reloaded /etc/wheelwell/wheelwell.yaml" in machine.journal("wheelwell"),
        timeout=30,
        interval=0.3,
        message=lambda: f"the reload line in the journal:\n{machine.journal('wheelwell')}",
    )
    state = unit_state(machine)
    assert state["ActiveState"] == "active" and state["MainPID"] == before, state
    assert ready(installed.url)


def test_process_metrics_exist_under_proc_subset_pid(installed: Installed) -> None:
    """ProcSubset=pid hides /proc/stat; the process_* metrics must not depend on it."""
    scraped = http_get(f"{installed.url}/+metrics")
    assert scraped.status == 200
    names = {line.split("{")[0].split()[0] for line in scraped.body.decode().splitlines() if line}
    missing = [name for name in PROCESS_METRICS if name not in names]
    assert not missing, f"not exported under the unit: {missing}"


def test_security_exposure_is_not_worse_than_recorded(
    installed: Installed, capsys: pytest.CaptureFixture[str]
) -> None:
    analysed = installed.machine.run("systemd-analyze", "security", "--no-pager", "wheelwell")
    match = re.search(
        r"Overall exposure level for wheelwell\.service: ([\d.]+) (\S+)", analysed.stdout
    )
    assert match, analysed.stdout[-2000:]
    exposure = float(match.group(1))
    with capsys.disabled():
        print(f"\nsystemd-analyze security wheelwell: {exposure} {match.group(2)}")  # noqa: T201
    assert exposure <= SECURITY_EXPOSURE_BOUND, analysed.stdout


def file_url(base: str, project: str, filename: str) -> str:
    """The daemon's link for `filename`, read from its JSON page."""
    page_url = f"{base}/root/pypi/+simple/{project}/"
    page = http_get(page_url, {"Accept": JSON_TYPE})
    assert page.status == 200, page.body
    links: dict[str, str] = {f["filename"]: f["url"] for f in json.loads(page.body)["files"]}
    return urljoin(page_url, links[filename])


def test_stop_with_a_download_in_flight_is_graceful(
    installed: Installed, dists: Dists, capsys: pytest.CaptureFixture[str]
) -> None:
    """`systemctl stop` ends the unit inactive (not failed), with no SIGKILL, in time."""
    machine = installed.machine
    config = parse_config((SYSTEMD / "wheelwell.yaml").read_text(), "wheelwell.yaml")
    bulky = file_url(installed.url, "bulky", dists.bulky.filename)
    installed.upstream.slow_chunk_delay = 0.5  # the 5 MB wheel trickles for ~40 s
    parts = urlsplit(bulky)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as client:
        client.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        assert client.recv(1024).startswith(b"HTTP/1.1 200")  # the download is under way
        started = time.monotonic()
        machine.run("systemctl", "stop", "wheelwell", timeout=120)
        elapsed = time.monotonic() - started
    state = unit_state(machine)
    journal = machine.journal("wheelwell")
    with capsys.disabled():
        print(f"\nsystemctl stop with a download in flight: {elapsed:.1f} s")  # noqa: T201
    assert (state["ActiveState"], state["Result"]) == ("inactive", "success"), (state, journal)
    assert "SIGKILL" not in journal and "timed out" not in journal, journal
    assert elapsed < config.server.shutdown_timeout + STOP_MARGIN, journal
