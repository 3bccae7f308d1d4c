"""`wheelwell export` while a server runs, `wheelwell import` into a new data dir, and back."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
import zstandard

from tests.conftest import Clients, Daemon, DaemonFactory, clean_env, free_port, http_get
from tests.e2e.conftest import ROOT, call, decoded, installed_versions, pip_install, twine_upload
from tests.e2e.test_replication import _dump, _restart
from tests.fakes.dists import build_wheel
from tests.fakes.index import ThreadedServer
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

ALICE = ("alice", "alice-secret-1234")


def wheelwell(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
        check=False,
    )


def _populate(daemon: Daemon, clients: Clients, tmp_path: Path) -> str:
    """Uploads, a yank, a user and a token: the kinds of state an export must carry."""
    for version in ("1.0", "2.0"):
        built = build_wheel(tmp_path / "dists", "ours", version, payload_size=50_000)
        twine_upload(clients, f"{daemon.url}/root/public/", ROOT, built.path)
    yank = call(
        daemon, "PATCH", "/root/public/ours/2.0", {"yanked": True, "reason": "bad"}, auth=ROOT
    )
    assert yank.status == 200, yank.body
    assert call(daemon, "PUT", "/alice", {"password": ALICE[1]}, auth=ROOT).status == 201
    made = call(daemon, "POST", "/+tokens", {"description": "ci"}, auth=ALICE)
    assert made.status == 201, made.body
    token: str = decoded(made)["token"]
    return token


@pytest.mark.parametrize("name", ["export", "export.tar", "export.tar.zst"])
def test_export_import_export_round_trip(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
    name: str,
) -> None:
    daemon = daemon_factory(fake_index_server.url)
    token = _populate(daemon, clients, tmp_path)
    dest = tmp_path / name
    done = wheelwell("export", str(dest), "--data-dir", str(daemon.data_dir))  # server running
    assert done.returncode == 0, done.stderr
    assert "every one sha256-checked" in done.stdout
    serial = json.loads(http_get(daemon.url + "/+status").body)["serial"]
    assert f"at serial {serial}:" in done.stdout

    new = tmp_path / "restored"
    imported = wheelwell("import", str(dest), "--data-dir", str(new))
    assert imported.returncode == 0, imported.stderr
    again = tmp_path / "again"
    assert wheelwell("export", str(again), "--data-dir", str(new)).returncode == 0
    first = _manifest(dest)
    assert (again / "manifest.json").read_bytes() == first  # export → import → export: the same

    daemon.stop()
    old_dump = _dump(daemon)
    moved = _restart_on(daemon, new)
    daemon_factory.started.append(moved)
    assert _dump(moved) == old_dump
    assert json.loads(http_get(moved.url + "/+status").body)["serial"] == serial
    target = tmp_path / "target"
    pip_install(clients, moved, "root/public", target, "ours")
    assert installed_versions(clients, target, "ours") == ["1.0"]  # 2.0 stayed yanked
    assert call(moved, "GET", "/+tokens", auth=ALICE).status == 200  # the password hash works
    assert call(moved, "GET", "/+tokens", auth=("__token__", token)).status == 200
    later = build_wheel(tmp_path / "dists", "ours", "3.0")
    twine_upload(clients, f"{moved.url}/root/public/", ROOT, later.path)
    assert json.loads(http_get(moved.url + "/+status").body)["serial"] == serial + 1


def _manifest(dest: Path) -> bytes:
    if dest.is_dir():
        return (dest / "manifest.json").read_bytes()
    if dest.name.endswith(".zst"):
        with (
            dest.open("rb") as raw,
            zstandard.ZstdDecompressor().stream_reader(raw) as plain,
            tarfile.open(fileobj=plain, mode="r|") as tar,
        ):
            member = next(iter(tar))
            extracted = tar.extractfile(member)
            assert extracted is not None
            return extracted.read()
    with tarfile.open(dest) as tar:
        extracted = tar.extractfile("manifest.json")
        assert extracted is not None
        return extracted.read()


def _restart_on(daemon: Daemon, data_dir: Path) -> Daemon:
    """The daemon's config, with another data dir."""
    config: dict[str, Any] = yaml.safe_load(daemon.config_path.read_text())
    config["storage"]["data_dir"] = str(data_dir)
    path = daemon.config_path.with_name("restored.yaml")
    path.write_text(yaml.safe_dump(config))
    moved = Daemon(daemon.url, path, data_dir, daemon.log_path, daemon.process)
    return _restart(moved)


@pytest.fixture
def exported(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> Path:
    daemon = daemon_factory(fake_index_server.url)
    _populate(daemon, clients, tmp_path)
    dest = tmp_path / "good"
    assert wheelwell("export", str(dest), "--data-dir", str(daemon.data_dir)).returncode == 0
    return dest


def _refused(src: Path, target: Path, wanted: str) -> None:
    result = wheelwell("import", str(src), "--data-dir", str(target))
    assert result.returncode == 1, result.stdout
    assert result.stderr.count("\n") == 1 and wanted in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not target.exists() or not any(target.iterdir())  # left untouched
    assert not list(target.parent.glob(f".{target.name}.import-*"))  # nothing half-built


def test_a_blob_whose_bytes_changed_is_refused_naming_it(exported: Path, tmp_path: Path) -> None:
    blob = next((exported / "blobs").rglob("*/*"))
    data = bytearray(blob.read_bytes())
    data[0] ^= 0xFF
    blob.write_bytes(bytes(data))
    _refused(exported, tmp_path / "new", f"{blob.relative_to(exported)}: its sha256 differs")


def test_a_manifest_that_does_not_match_is_refused(exported: Path, tmp_path: Path) -> None:
    blob = next((exported / "blobs").rglob("*/*"))
    blob.unlink()
    _refused(exported, tmp_path / "new", "in the manifest but not in the export")


def test_an_unknown_version_is_refused(exported: Path, tmp_path: Path) -> None:
    manifest = json.loads((exported / "manifest.json").read_text())
    manifest["version"] = 99
    (exported / "manifest.json").write_text(json.dumps(manifest))
    _refused(exported, tmp_path / "new", "export format version 99 is not supported")


def test_a_truncated_archive_is_refused(exported: Path, tmp_path: Path) -> None:
    tarball = tmp_path / "whole.tar"
    names = [f["path"] for f in json.loads((exported / "manifest.json").read_text())["files"]]
    with tarfile.open(tarball, "w") as tar:  # laid out as export lays out a tar: manifest first
        for name in ["manifest.json", *names]:
            tar.add(exported / name, arcname=name)
    with tarfile.open(tarball) as tar:
        blob = max(
            (m for m in tar.getmembers() if m.name.startswith("blobs/")), key=lambda m: m.size
        )
    whole = tarball.read_bytes()
    # within the headers and the state, and half-way through a blob's bytes
    for n, at in enumerate((len(whole) // 2, blob.offset_data + blob.size // 2)):
        cut = tmp_path / f"cut{n}.tar"
        cut.write_bytes(whole[:at])
        _refused(cut, tmp_path / "new", f"cut{n}.tar: truncated or damaged archive")


def test_an_import_into_a_data_dir_in_use_is_refused(exported: Path, tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "wheelwell.sqlite3").write_bytes(b"")
    result = wheelwell("import", str(exported), "--data-dir", str(used))
    assert result.returncode == 1
    assert "not empty" in result.stderr
    assert [p.name for p in used.iterdir()] == ["wheelwell.sqlite3"]


def test_a_wheelhouse_record_outside_its_directories_is_refused(
    exported: Path, tmp_path: Path
) -> None:
    """A crafted export must not make the server serve an arbitrary local file."""
    state = json.loads((exported / "state.json").read_text())
    state["tables"]["wheelhouse"].append(
        {
            "idx": "root/public", "path": "/etc/passwd", "filename": "passwd-1.0.tar.gz",
            "project": "passwd", "version": "1.0", "size": 1, "mtime_ns": 0, "sha256": "0" * 64,
            "requires_python": None, "metadata_sha256": None, "summary": "",
            "description": "", "description_type": "",
        }
    )  # fmt: skip
    body = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
    (exported / "state.json").write_bytes(body)
    manifest = json.loads((exported / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == "state.json":
            entry["size"], entry["sha256"] = len(body), hashlib.sha256(body).hexdigest()
    (exported / "manifest.json").write_text(json.dumps(manifest))
    _refused(exported, tmp_path / "new", "'/etc/passwd' is outside the wheelhouse directories")


def _stored(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "blobs").glob("*/*")}


def test_include_mirror_round_trip_serves_the_cache_warm_without_upstream(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    """Mirror files, aliases and pages travel; the restored server installs with no upstream."""
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    dropped = build_wheel(wheelhouse, "dropped", "1.0")
    indexes = {
        "storage": {"wheelhouse_poll": "0.2s"},
        "indexes": [
            {"name": "root/pypi", "kind": "mirror"},
            {"name": "root/public", "kind": "private", "bases": ["root/pypi"]},
            {"name": "root/wh", "kind": "private", "wheelhouse": [str(wheelhouse)]},
        ],
    }
    daemon = daemon_factory(fake_index_server.url, indexes)
    _populate(daemon, clients, tmp_path)
    pip_install(clients, daemon, "root/pypi", tmp_path / "warm", "alpha")
    index = daemon.index_url("root/wh")
    wait_until(
        lambda: http_get(f"{index}dropped/").status == 200, timeout=10, message="the wheelhouse"
    )
    dest = tmp_path / "mirror.tar.zst"
    done = wheelwell(
        "export", str(dest), "--data-dir", str(daemon.data_dir), "--include-mirror",
        "--include-wheelhouse",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "mirror pages" in done.stdout and "1 wheelhouse files' bytes included" in done.stdout
    daemon.stop()

    new = tmp_path / "restored"
    imported = wheelwell("import", str(dest), "--data-dir", str(new))
    assert imported.returncode == 0, imported.stderr
    dropped_sha = hashlib.sha256(dropped.path.read_bytes()).hexdigest()
    assert _stored(new) == _stored(daemon.data_dir) | {dropped_sha}
    again = tmp_path / "again"
    redone = wheelwell(
        "export", str(again), "--data-dir", str(new), "--include-mirror", "--include-wheelhouse"
    )
    assert redone.returncode == 0, redone.stderr
    assert (again / "manifest.json").read_bytes() == _manifest(dest)

    config: dict[str, Any] = yaml.safe_load(daemon.config_path.read_text())
    config["storage"]["data_dir"] = str(new)
    config["upstream"]["url"] = f"http://127.0.0.1:{free_port()}/simple/"  # nobody listens
    config["upstream"]["page_ttl"] = "0s"  # every page is stale: served from the cache anyway
    path = daemon.config_path.with_name("offline.yaml")
    path.write_text(yaml.safe_dump(config))
    offline = _restart(Daemon(daemon.url, path, new, daemon.log_path, daemon.process))
    daemon_factory.started.append(offline)
    target = tmp_path / "target"
    pip_install(clients, offline, "root/pypi", target, "alpha")
    assert installed_versions(clients, target, "alpha", "beta") == ["1.0", "2.0"]


REPLICATION_SECRET = "export-replica-secret-0123456789"


def _cluster_config(primary: Daemon | None, data_dir: Path | None = None) -> dict[str, Any]:
    """Overrides for a primary (no `primary`) or a replica of it, optionally on `data_dir`."""
    replication: dict[str, Any] = {"secret": REPLICATION_SECRET, "heartbeat": "1s"}
    if primary is None:
        replication["role"] = "primary"
    else:
        replication.update(primary_url=primary.url, replica_id="from-export")
    overrides: dict[str, Any] = {"replication": replication}
    if data_dir is not None:
        overrides["storage"] = {"data_dir": str(data_dir)}
    return overrides


def _serial(daemon: Daemon) -> int:
    serial: int = json.loads(http_get(daemon.url + "/+status").body)["serial"]
    return serial


def _files_pending(replica: Daemon) -> int:
    status = json.loads(http_get(replica.url + "/+status", {"Accept": "application/json"}).body)
    pending: int = status["primary"]["files_pending"]
    return pending


def test_a_replica_started_from_an_export_follows_on_from_its_serial(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    primary = daemon_factory(fake_index_server.url, _cluster_config(None))
    first = build_wheel(tmp_path / "dists", "ours", "1.0", payload_size=20_000)
    twine_upload(clients, f"{primary.url}/root/public/", ROOT, first.path)
    dest = tmp_path / "export"
    assert wheelwell("export", str(dest), "--data-dir", str(primary.data_dir)).returncode == 0
    exported_at = _serial(primary)
    later = build_wheel(tmp_path / "dists", "ours", "2.0")
    twine_upload(clients, f"{primary.url}/root/public/", ROOT, later.path)

    new = tmp_path / "replica-data"
    assert wheelwell("import", str(dest), "--data-dir", str(new)).returncode == 0
    first_sha = hashlib.sha256(first.path.read_bytes()).hexdigest()
    imported_blob = (new / "blobs" / first_sha[:2] / first_sha).stat()
    replica = daemon_factory(fake_index_server.url, _cluster_config(primary, new))
    wait_until(
        lambda: _serial(replica) == _serial(primary) and _files_pending(replica) == 0,
        timeout=30,
        message=lambda: f"the replica caught up:\n{replica.log()}",
    )
    assert _dump(replica) == _dump(primary)
    assert "snapshot" not in replica.log()  # it followed on from the export's serial
    assert f"caught up with the primary at serial {_serial(primary)}" in replica.log()
    assert _serial(primary) > exported_at
    kept = (new / "blobs" / first_sha[:2] / first_sha).stat()
    assert (kept.st_ino, kept.st_mtime_ns) == (imported_blob.st_ino, imported_blob.st_mtime_ns)
    target = tmp_path / "target"
    pip_install(clients, replica, "root/public", target, "ours")
    assert installed_versions(clients, target, "ours") == ["2.0"]


def _replica_from_snapshot(
    daemon_factory: DaemonFactory,
    upstream: ThreadedServer,
    primary: Daemon,
    export: Path,
    data_dir: Path,
) -> Daemon:
    """A replica on `export` imported into `data_dir`, once it started from `primary`'s snapshot
    and caught up (the export's serial may equal the primary's: wait for the snapshot itself)."""
    assert wheelwell("import", str(export), "--data-dir", str(data_dir)).returncode == 0
    replica = daemon_factory(upstream.url, _cluster_config(primary, data_dir))
    wait_until(
        lambda: (
            "started from the primary's snapshot" in replica.log()
            and _serial(replica) == _serial(primary)
        ),
        timeout=30,
        message=lambda: f"the replica caught up:\n{replica.log()}",
    )
    return replica


def test_a_replica_started_from_another_primarys_export_starts_from_the_snapshot(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    """Same serials, other history: replaying onto it would mix two databases' rows."""
    other = daemon_factory(fake_index_server.url)
    assert call(other, "PUT", "/mallory", {"password": "mallory-secret-1"}, auth=ROOT).status == 201
    dest = tmp_path / "foreign"
    assert wheelwell("export", str(dest), "--data-dir", str(other.data_dir)).returncode == 0
    other.stop()
    primary = daemon_factory(fake_index_server.url, _cluster_config(None))
    ours = build_wheel(tmp_path / "dists", "ours", "1.0")
    twine_upload(clients, f"{primary.url}/root/public/", ROOT, ours.path)
    replica = _replica_from_snapshot(
        daemon_factory, fake_index_server, primary, dest, tmp_path / "replica-data"
    )
    assert "holds another database" in replica.log()
    assert _dump(replica) == _dump(primary)
    assert "mallory" not in {row["name"] for row in _dump(replica)["users"]}


def test_a_replica_on_the_history_a_restored_primary_left_starts_from_the_snapshot(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    """The primary was restored from an older export and wrote on: serials after it differ."""
    primary = daemon_factory(fake_index_server.url, _cluster_config(None))
    twine_upload(
        clients, f"{primary.url}/root/public/", ROOT,
        build_wheel(tmp_path / "dists", "ours", "1.0").path,
    )  # fmt: skip
    older, newer = tmp_path / "older", tmp_path / "newer"
    assert wheelwell("export", str(older), "--data-dir", str(primary.data_dir)).returncode == 0
    for version in ("2.0", "3.0"):
        built = build_wheel(tmp_path / "dists", "ours", version)
        twine_upload(clients, f"{primary.url}/root/public/", ROOT, built.path)
    assert wheelwell("export", str(newer), "--data-dir", str(primary.data_dir)).returncode == 0
    primary.stop()

    restored_dir = tmp_path / "restored"
    assert wheelwell("import", str(older), "--data-dir", str(restored_dir)).returncode == 0
    restored = daemon_factory(fake_index_server.url, _cluster_config(None, restored_dir))
    for name in ("carol", "dave", "erin"):  # past the newer export's serial, other rows
        assert (
            call(restored, "PUT", f"/{name}", {"password": f"{name}-secret-1"}, auth=ROOT).status
            == 201
        )
    assert _serial(restored) > json.loads((newer / "state.json").read_text())["serial"]

    replica = _replica_from_snapshot(
        daemon_factory, fake_index_server, restored, newer, tmp_path / "replica-data"
    )
    assert "history forked" in replica.log()
    assert _dump(replica) == _dump(restored)
    assert {row["version"] for row in _dump(replica)["files"]} == {"1.0"}
