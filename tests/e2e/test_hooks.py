"""Webhooks against the real daemon: twine uploads, kill -9 with events queued, exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import Clients, Daemon, DaemonFactory
from tests.e2e.conftest import ROOT, ROOT_PASSWORD, call, decoded, simple_files, twine_upload
from tests.fakes.dists import build_sdist, build_wheel
from tests.fakes.index import ThreadedServer
from tests.fakes.receiver import Receiver, signature_ok
from tests.polling import wait_until

SECRET = "e2e-hook-secret-5d1c"
#: quick retries: the receiver's recovery is seen within a fraction of a second
HOOKS = {"hooks": {"retry_min": 0.05, "retry_max": 0.2, "timeout": 2}}


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
) -> None:
    receiver = Receiver()
    with ThreadedServer(receiver.app) as server:
        first = daemon_factory(fake_index_server.url, HOOKS)
        hooks = tmp_path / "hooks.json"
        hooks.write_text(json.dumps([{"url": f"{server.url}/hook", "secret": SECRET}]))
        # made at run time (a YAML-declared index is reset to the file at every start), by
        # the CLI, the secret in a file rather than on the command line
        cli(clients, first, "index", "create", "root/ci", "--webhooks", f"@{hooks}")
        server.stop()  # the receiver is down: every attempt is refused
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
        server.start()  # the receiver recovers
        wait_until(
            lambda: len(receiver.at("/hook")) >= 4,
            timeout=30,
            message=lambda: f"four deliveries; got {projects(receiver)}\n{again.log()}",
        )
        wait_until(
            lambda: hook_state(again, "delivered") == 4, timeout=30, message="four delivered"
        )
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
    assert f"webhook {server.url}/hook (upload, yank" in shown
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
