"""A primary and a read replica on 127.0.0.1: the changelog streamed, replayed, files copied."""

from __future__ import annotations

import http.client
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy.storage.changes import dump_hosted
from tests.conftest import (
    ROOT_PASSWORD,
    Clients,
    Daemon,
    DaemonFactory,
    Dists,
    clean_env,
    http_get,
    wait_healthy,
)
from tests.e2e.conftest import ROOT, call, decoded, installed_versions, pip_install, twine_upload
from tests.fakes.dists import build_wheel
from tests.fakes.index import ThreadedServer
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

SECRET = "replication-e2e-secret-0123456789"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "replication-secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


def _primary(
    factory: DaemonFactory, upstream: str, secret_file: Path, **replication: Any
) -> Daemon:
    settings = {"role": "primary", "secret_file": str(secret_file), "heartbeat": "1s"}
    return factory(upstream, {"replication": {**settings, **replication}})


def _replica(
    factory: DaemonFactory,
    upstream: str,
    primary: Daemon | str,
    secret_file: Path,
    **replication: Any,
) -> Daemon:
    rep: dict[str, Any] = {
        "primary_url": primary if isinstance(primary, str) else primary.url,
        "secret_file": str(secret_file),
        "heartbeat": "1s",
        "replica_id": f"replica-{len(factory.started)}",
        "outside_url": "http://replica.example.internal:3141",
        **replication,
    }
    return factory(upstream, {"replication": rep})


def _status(daemon: Daemon) -> dict[str, Any]:
    got = http_get(daemon.url + "/+status", {"Accept": "application/json"})
    assert got.status == 200, got.body
    result: dict[str, Any] = json.loads(got.body)
    return result


def _caught_up(replica: Daemon, primary: Daemon) -> bool:
    serial = _status(primary)["serial"]
    return bool(_status(replica)["serial"] == serial)


def _wait_caught_up(replica: Daemon, primary: Daemon) -> None:
    wait_until(
        lambda: _caught_up(replica, primary),
        timeout=30,
        interval=0.1,
        message=lambda: f"replica at the primary's serial:\n{replica.log()}",
    )


def _dump(daemon: Daemon) -> dict[str, list[dict[str, Any]]]:
    conn = sqlite3.connect(f"file:{daemon.data_dir / 'wheelwell.sqlite3'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return dump_hosted(conn)
    finally:
        conn.close()


def _restart(daemon: Daemon) -> Daemon:
    """The same config and data dir again (after a stop or a kill -9)."""
    with daemon.log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(daemon.config_path)],
            cwd=daemon.config_path.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(PYTHONUNBUFFERED="1", WHEELWELL_ROOT_PASSWORD=ROOT_PASSWORD),
        )
    again = Daemon(daemon.url, daemon.config_path, daemon.data_dir, daemon.log_path, process)
    wait_healthy(again)
    return again


def test_replica_follows_the_primary_and_serves_its_private_uploads(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    dists: Dists,
    secret_file: Path,
    tmp_path: Path,
) -> None:
    primary = _primary(daemon_factory, fake_index_server.url, secret_file)
    ours = build_wheel(tmp_path / "dists", "ours", "1.0", requires=["beta>=1"])
    twine_upload(clients, f"{primary.url}/root/public/", ROOT, ours.path)
    replica = _replica(daemon_factory, fake_index_server.url, primary, secret_file)
    _wait_caught_up(replica, primary)
    assert _dump(replica) == _dump(primary)  # users, indexes, files: the same rows

    # pip on the replica: the private wheel (copied from the primary) and a mirrored dependency
    # (the replica's mirror fetches through the primary's)
    target = tmp_path / "target"
    pip_install(clients, replica, "root/public", target, "ours")
    assert installed_versions(clients, target, "ours", "beta") == ["1.0", "2.0"]

    # a second upload arrives over the open stream
    later = build_wheel(tmp_path / "dists", "ours", "2.0", requires=["beta>=1"])
    twine_upload(clients, f"{primary.url}/root/public/", ROOT, later.path)
    _wait_caught_up(replica, primary)
    target2 = tmp_path / "target2"
    pip_install(clients, replica, "root/public", target2, "ours")
    assert installed_versions(clients, target2, "ours") == ["2.0"]

    status = _status(replica)
    assert status["role"] == "replica"
    assert status["primary"]["streaming"] is True
    assert status["primary"]["lag_serials"] == 0
    assert status["primary"]["url"] == primary.url
    wait_until(
        lambda: _status(replica)["primary"]["files_pending"] == 0,
        timeout=30,
        message=lambda: "every private file copied",
    )
    replicas = _status(primary)["replicas"]
    assert [r["id"] for r in replicas] == ["replica-1"]
    assert replicas[0]["streaming"] is True
    assert replicas[0]["url"] == "http://replica.example.internal:3141"
    assert _status(replica)["primary"]["health"] == "ok"
    assert replicas[0]["health"] == "ok"
    browser = {"Accept": "text/html"}
    page = http_get(primary.url + "/+status", browser).body.decode()
    assert 'id="replicas"' in page and "replica-1" in page and 'class="health ok"' in page
    page = http_get(replica.url + "/+status", browser).body.decode()
    assert 'id="primary"' in page and primary.url in page
    metrics = http_get(replica.url + "/+metrics").body.decode()
    assert "wheelwell_replication_lag_serials 0.0" in metrics
    assert "wheelwell_replication_files_pending 0.0" in metrics
    primary_metrics = http_get(primary.url + "/+metrics").body.decode()
    assert "wheelwell_replicas_connected 1.0" in primary_metrics
    assert 'wheelwell_replica_lag_serials{replica="replica-1"} 0.0' in primary_metrics


def test_writes_through_a_replica_are_relayed_and_read_back_at_once(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    secret_file: Path,
    tmp_path: Path,
) -> None:
    """Read-your-writes: an upload through the replica installs from the same replica at once."""
    primary = _primary(daemon_factory, fake_index_server.url, secret_file)
    replica = _replica(daemon_factory, fake_index_server.url, primary, secret_file)
    _wait_caught_up(replica, primary)
    ours = build_wheel(tmp_path / "dists", "relayed", "1.0")
    twine_upload(clients, f"{replica.url}/root/public/", ROOT, ours.path)
    target = tmp_path / "target"
    pip_install(clients, replica, "root/public", target, "relayed")  # no wait, no retry
    assert installed_versions(clients, target, "relayed") == ["1.0"]
    assert call(primary, "GET", "/root/public/relayed").status == 200  # it is the primary's

    made = call(replica, "PUT", "/alice", {"password": "alice-secret-1234"}, auth=ROOT)
    assert made.status == 201, made.body
    login = call(replica, "POST", "/+login", {"user": "alice", "password": "alice-secret-1234"})
    assert login.status == 200, login.body
    token = decoded(login)["token"]
    as_alice = ("__token__", token)
    assert call(replica, "GET", "/+tokens", auth=as_alice).status == 200  # known here at once
    refused = call(replica, "PUT", "/bob", {"password": "bob-secret-12345"}, auth=as_alice)
    assert refused.status == 403  # the primary authorizes what a replica relays
    assert _dump(replica) == _dump(primary)


def test_a_replica_without_its_primary_refuses_writes_naming_it(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    secret_file: Path,
) -> None:
    primary = _primary(daemon_factory, fake_index_server.url, secret_file)
    replica = _replica(daemon_factory, fake_index_server.url, primary, secret_file)
    _wait_caught_up(replica, primary)
    primary.stop()
    got = call(replica, "PUT", "/alice", {"password": "alice-secret-1234"}, auth=ROOT)
    assert got.status == 503, got.body
    error = decoded(got)["error"]
    assert primary.url in error and "cannot be reached" in error
    assert call(replica, "GET", "/alice").status == 404


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-Wheelwell-Replication-Secret": "not-the-secret-at-all"}, 403),
        ({"Authorization": "Basic cm9vdDpyb290LWUyZS1zZWNyZXQ="}, 401),  # root's password: no
    ],
)
def test_the_replication_endpoints_admit_only_the_secret(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    secret_file: Path,
    headers: dict[str, str],
    status: int,
) -> None:
    primary = _primary(daemon_factory, fake_index_server.url, secret_file)
    for path in ("/+replication/changes?since=0", "/+replication/files/" + "0" * 64):
        got = http_get(primary.url + path, headers)
        assert got.status == status, (path, got.body)
        assert SECRET.encode() not in got.body


def test_a_standalone_server_has_no_replication_endpoints(daemon: Daemon) -> None:
    got = http_get(daemon.url + "/+replication/changes", {"X-Wheelwell-Replication-Secret": SECRET})
    assert got.status == 403


def test_replica_serves_reads_while_the_primary_is_gone_and_catches_up_after(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    secret_file: Path,
    tmp_path: Path,
) -> None:
    primary = _primary(daemon_factory, fake_index_server.url, secret_file)
    first = build_wheel(tmp_path / "dists", "ours", "1.0")
    twine_upload(clients, f"{primary.url}/root/public/", ROOT, first.path)
    replica = _replica(daemon_factory, fake_index_server.url, primary, secret_file)
    _wait_caught_up(replica, primary)
    wait_until(
        lambda: _status(replica)["primary"]["files_pending"] == 0,
        timeout=30,
        message=lambda: "every private file copied",
    )

    primary.process.send_signal(signal.SIGKILL)
    primary.process.wait(10)
    wait_until(
        lambda: _status(replica)["primary"]["streaming"] is False,
        timeout=15,
        message=lambda: "the replica to notice",
    )
    target = tmp_path / "target"
    pip_install(clients, replica, "root/public", target, "ours")
    assert installed_versions(clients, target, "ours") == ["1.0"]
    assert _status(replica)["primary"]["last_error"]
    assert http_get(replica.url + "/+ready").status == 200  # it caught up once: it serves

    back = _restart(primary)
    daemon_factory.started.append(back)
    second = build_wheel(tmp_path / "dists", "ours", "2.0")
    twine_upload(clients, f"{back.url}/root/public/", ROOT, second.path)
    _wait_caught_up(replica, back)
    assert _dump(replica) == _dump(back)
    assert _status(replica)["primary"]["last_error"] is None


def test_a_replica_killed_during_a_burst_restarts_consistent(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    secret_file: Path,
) -> None:
    primary = _primary(daemon_factory, fake_index_server.url, secret_file)
    replica = _replica(daemon_factory, fake_index_server.url, primary, secret_file)
    _wait_caught_up(replica, primary)
    for round_ in range(3):
        for n in range(15):
            name = f"user{round_}x{n}"
            assert (
                call(primary, "PUT", f"/{name}", {"password": "burst-pass-1234"}, auth=ROOT).status
                == 201
            )
        replica.process.send_signal(signal.SIGKILL)  # somewhere in the middle of applying them
        replica.process.wait(10)
        replica = _restart(replica)
        daemon_factory.started.append(replica)
        _wait_caught_up(replica, primary)
        assert _dump(replica) == _dump(primary)


def _compacted(primary: Daemon) -> bool:
    """A snapshot at the primary's serial, and the changelog compacted behind it."""
    status = _status(primary)
    kept = status["snapshots"]["kept"]
    return (
        bool(kept)
        and kept[0]["serial"] == status["serial"] == status["snapshots"]["compacted_upto"]
    )


def _wait_compacted(primary: Daemon) -> None:
    wait_until(
        lambda: _compacted(primary),
        timeout=30,
        interval=0.2,
        message=lambda: f"a snapshot and compaction:\n{primary.log()}",
    )


def test_a_new_replica_starts_from_a_snapshot_after_compaction(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    secret_file: Path,
    tmp_path: Path,
) -> None:
    primary = _primary(
        daemon_factory, fake_index_server.url, secret_file, snapshot_interval="1s", snapshots_keep=1
    )
    ours = build_wheel(tmp_path / "dists", "ours", "1.0")
    twine_upload(clients, f"{primary.url}/root/public/", ROOT, ours.path)
    assert (
        call(primary, "PUT", "/alice", {"password": "alice-secret-1234"}, auth=ROOT).status == 201
    )
    _wait_compacted(primary)
    gone = http_get(
        primary.url + "/+replication/changes?since=0", {"X-Wheelwell-Replication-Secret": SECRET}
    )
    assert gone.status == 410, gone.body  # the entries are gone: only a snapshot has them
    history = decoded(call(primary, "GET", "/+changelog?since=0", auth=ROOT))
    assert history["entries"] == []  # compacted: devpi's changelog never shrinks

    replica = _replica(daemon_factory, fake_index_server.url, primary, secret_file)
    _wait_caught_up(replica, primary)
    assert "started from the primary's snapshot" in replica.log()
    assert _dump(replica) == _dump(primary)
    target = tmp_path / "target"
    pip_install(clients, replica, "root/public", target, "ours")
    assert installed_versions(clients, target, "ours") == ["1.0"]

    later = build_wheel(tmp_path / "dists", "ours", "2.0")
    twine_upload(clients, f"{primary.url}/root/public/", ROOT, later.path)  # then the stream
    _wait_caught_up(replica, primary)
    assert _dump(replica) == _dump(primary)


def test_a_replica_away_past_compaction_starts_again_from_a_snapshot(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    secret_file: Path,
    tmp_path: Path,
) -> None:
    primary = _primary(
        daemon_factory, fake_index_server.url, secret_file, snapshot_interval="1s", snapshots_keep=1
    )
    replica = _replica(daemon_factory, fake_index_server.url, primary, secret_file)
    _wait_caught_up(replica, primary)
    replica.stop()
    made = call(primary, "PUT", "/root/team", {"type": "private", "bases": []}, auth=ROOT)
    assert made.status in (200, 201), made.body
    ours = build_wheel(tmp_path / "dists", "teamthing", "1.0")
    twine_upload(clients, f"{primary.url}/root/team/", ROOT, ours.path)
    _wait_compacted(primary)

    replica = _restart(replica)
    daemon_factory.started.append(replica)
    _wait_caught_up(replica, primary)
    assert "started from the primary's snapshot" in replica.log()
    assert _dump(replica) == _dump(primary)
    target = tmp_path / "target"
    pip_install(clients, replica, "root/team", target, "teamthing")  # an index it learnt anew
    assert installed_versions(clients, target, "teamthing") == ["1.0"]


@pytest.mark.parametrize("mirror_from", ["primary", "upstream"])
def test_a_replicas_mirror_fetches_where_configured(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    secret_file: Path,
    tmp_path: Path,
    mirror_from: str,
) -> None:
    primary = _primary(daemon_factory, fake_index_server.url, secret_file)
    replica = _replica(
        daemon_factory, fake_index_server.url, primary, secret_file, mirror_from=mirror_from
    )
    _wait_caught_up(replica, primary)
    target = tmp_path / "target"
    pip_install(clients, replica, "root/pypi", target, "beta==1.0")
    assert installed_versions(clients, target, "beta") == ["1.0"]
    through_primary = "GET /root/pypi/+simple/beta/" in primary.log()
    assert through_primary is (mirror_from == "primary")


def test_a_file_not_copied_yet_streams_from_the_primary_and_stays(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    secret_file: Path,
    tmp_path: Path,
) -> None:
    """file_copies: 0 copies nothing in the background: the first install streams it through."""
    primary = _primary(daemon_factory, fake_index_server.url, secret_file)
    ours = build_wheel(tmp_path / "dists", "ours", "1.0", payload_size=3_000_000)
    twine_upload(clients, f"{primary.url}/root/public/", ROOT, ours.path)
    replica = _replica(daemon_factory, fake_index_server.url, primary, secret_file, file_copies=0)
    _wait_caught_up(replica, primary)
    stored = replica.data_dir / "blobs" / ours.sha256[:2] / ours.sha256
    assert not stored.exists()
    target = tmp_path / "target"
    pip_install(clients, replica, "root/public", target, "ours")
    assert installed_versions(clients, target, "ours") == ["1.0"]
    assert stored.read_bytes() == ours.path.read_bytes()  # kept: the next one is sendfile


def test_a_damaged_file_on_the_primary_never_becomes_the_replicas(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    secret_file: Path,
    tmp_path: Path,
) -> None:
    primary = _primary(daemon_factory, fake_index_server.url, secret_file)
    ours = build_wheel(tmp_path / "dists", "ours", "1.0", payload_size=200_000)
    twine_upload(clients, f"{primary.url}/root/public/", ROOT, ours.path)
    on_primary = primary.data_dir / "blobs" / ours.sha256[:2] / ours.sha256
    body = bytearray(on_primary.read_bytes())
    body[len(body) // 2] ^= 0xFF  # same size: the primary's own size check does not see it
    on_primary.chmod(0o600)
    on_primary.write_bytes(bytes(body))
    replica = _replica(daemon_factory, fake_index_server.url, primary, secret_file, file_copies=0)
    _wait_caught_up(replica, primary)
    url = replica.url + f"/root/public/+f/{ours.sha256}/{ours.filename}"
    with pytest.raises(http.client.IncompleteRead) as cut:
        http_get(url)
    assert len(cut.value.partial) < len(body)  # cut before the last chunk: never a wrong file
    assert not (replica.data_dir / "blobs" / ours.sha256[:2] / ours.sha256).exists()
    assert "sha256 mismatch" in replica.log()


def test_a_replica_is_not_ready_before_its_first_catch_up(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    secret_file: Path,
    tmp_path: Path,
) -> None:
    replica = _replica(daemon_factory, fake_index_server.url, "http://127.0.0.1:9", secret_file)
    ready = http_get(replica.url + "/+ready")
    assert ready.status == 503
    assert json.loads(ready.body)["reason"] == "first catch-up with the primary not done yet"
    assert _status(replica)["primary"]["health"] == "warn"  # never reached, so far


def test_a_relayed_write_that_does_not_arrive_in_time_is_a_clear_503(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    secret_file: Path,
) -> None:
    primary = _primary(daemon_factory, fake_index_server.url, secret_file)
    replica = _replica(
        daemon_factory, fake_index_server.url, primary, secret_file, write_wait="0.0001s"
    )
    _wait_caught_up(replica, primary)
    got = call(replica, "PUT", "/alice", {"password": "alice-secret-1234"}, auth=ROOT)
    assert got.status == 503, got.body
    assert "has not arrived here within" in decoded(got)["error"]
    assert call(primary, "GET", "/alice").status == 200  # the write itself is done
    _wait_caught_up(replica, primary)  # and arrives all the same
    assert call(replica, "GET", "/alice").status == 200
