"""storage.backend s3 against a real SeaweedFS S3 server on 127.0.0.1 (issue 16, first slice).

The daemon keeps its blobs in the bucket and a copy on its disk; these tests wipe the disk's
`blobs/` to see files come back from the bucket (streamed, or by a presigned redirect that pip
and uv follow), hang the store (SIGSTOP) to see uploads refused with 503 naming it while the
mirror keeps serving, and check that what lands in the bucket is only verified bytes.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import sys
import urllib.parse
from pathlib import Path

import yaml

from tests.conftest import Clients, Daemon, DaemonFactory, Dists, http_get
from tests.e2e.conftest import ROOT, installed_versions, pip_install, post_upload, twine_upload
from tests.e2e.test_replication import SECRET, _status, _wait_caught_up
from tests.fakes.dists import build_wheel
from tests.fakes.index import ThreadedServer
from tests.polling import wait_until
from tests.seaweed import BUCKET, CREDENTIALS, SeaweedFS, blob_keys, on_bucket, wheelwell_cli


def _redirect_of(url: str) -> tuple[int, str]:
    """The first answer's status and Location, not followed."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        conn.request("GET", parts.path)
        answer = conn.getresponse()
        answer.read()
        return answer.status, answer.getheader("Location") or ""
    finally:
        conn.close()


def _wipe_disk(daemon: Daemon) -> None:
    """What a new node or a lost volume looks like: the database, no local blobs."""
    shutil.rmtree(daemon.data_dir / "blobs")


def test_uploads_and_mirror_files_live_in_the_bucket(
    store: SeaweedFS,
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    dists: Dists,
    tmp_path: Path,
) -> None:
    daemon = on_bucket(daemon_factory, fake_index_server, store)
    ours = build_wheel(tmp_path / "dists", "ours", "1.0")
    twine_upload(clients, f"{daemon.url}/root/public/", ROOT, ours.path)
    cold = tmp_path / "cold"
    pip_install(clients, daemon, "root/public", cold, "ours", "alpha")  # alpha: from the mirror
    assert installed_versions(clients, cold, "ours", "alpha") == ["1.0", "1.0"]
    keys = blob_keys(store)
    assert {ours.sha256, dists.alpha.sha256, dists.beta2.sha256} <= keys
    assert store.get(f"ww/blobs/{ours.sha256[:2]}/{ours.sha256}") == ours.path.read_bytes()
    for key in keys:  # every object is the verified bytes of its name
        assert hashlib.sha256(store.get(f"ww/blobs/{key[:2]}/{key}")).hexdigest() == key

    daemon.stop()
    _wipe_disk(daemon)
    daemon = on_bucket(daemon_factory, fake_index_server, store, again=daemon)
    url = f"{daemon.url}/root/public/+f/{ours.sha256}/{ours.filename}"
    body = ours.path.read_bytes()
    ranged = http_get(url, {"Range": "bytes=10-19"})  # from the bucket: just those bytes
    assert ranged.status == 206 and ranged.body == body[10:20]
    assert ranged.headers["Content-Range"] == f"bytes 10-19/{len(body)}"
    assert ranged.headers["Accept-Ranges"] == "bytes"
    assert http_get(url, {"Range": "bytes=-5"}).body == body[-5:]
    beyond = http_get(url, {"Range": f"bytes={len(body)}-"})
    assert beyond.status == 416 and beyond.headers["Content-Range"] == f"bytes */{len(body)}"
    local = daemon.data_dir / "blobs" / ours.sha256[:2] / ours.sha256
    assert not local.exists()  # a part is not a copy
    warm = tmp_path / "warm"
    pip_install(clients, daemon, "root/public", warm, "ours", "alpha")
    assert installed_versions(clients, warm, "ours", "alpha") == ["1.0", "1.0"]
    assert local.read_bytes() == body  # streamed through, kept on the way
    ranged = http_get(url, {"Range": "bytes=0-9"})  # now from the disk copy
    assert ranged.status == 206 and ranged.body == body[:10]


def test_presigned_redirects_are_followed_by_pip_and_uv(
    store: SeaweedFS,
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    first = on_bucket(daemon_factory, fake_index_server, store, redirect=True)
    ours = build_wheel(tmp_path / "dists", "ours", "2.0")
    twine_upload(clients, f"{first.url}/root/public/", ROOT, ours.path)
    first.stop()
    _wipe_disk(first)
    daemon = on_bucket(daemon_factory, fake_index_server, store, again=first, redirect=True)
    url = f"{daemon.url}/root/public/+f/{ours.sha256}/{ours.filename}"
    status, location = _redirect_of(url)
    assert status == 302
    assert location.startswith(f"{store.endpoint}/{BUCKET}/ww/blobs/") and "Signature" in location
    target = tmp_path / "pip"
    pip_install(clients, daemon, "root/public", target, "ours")
    assert installed_versions(clients, target, "ours") == ["2.0"]
    uv_target = tmp_path / "uv"
    args = ("--target", str(uv_target), "--python", sys.executable)
    clients.uv("pip", "install", *args, "--index-url", daemon.index_url("root/public"), "ours")
    assert installed_versions(clients, uv_target, "ours") == ["2.0"]


def test_a_store_that_is_down(
    store: SeaweedFS,
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    daemon = on_bucket(daemon_factory, fake_index_server, store, read_timeout="1s")
    store.pause()
    refused = post_upload(f"{daemon.url}/root/public/", build_wheel(tmp_path / "d", "down", "1.0"))
    assert refused.status == 503, refused.body
    assert f"object store s3://{BUCKET}/ww/" in refused.body.decode()
    mirror = tmp_path / "mirror"
    pip_install(clients, daemon, "root/pypi", mirror, "alpha")  # the mirror goes on: disk only
    assert installed_versions(clients, mirror, "alpha") == ["1.0"]

    store.resume()  # back: the upload now lands, in the bucket too
    later = build_wheel(tmp_path / "d2", "down", "1.0")
    assert post_upload(f"{daemon.url}/root/public/", later).status == 200
    assert later.sha256 in blob_keys(store)


def test_migrate_a_local_store_then_switch(
    store: SeaweedFS,
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    dists: Dists,
    tmp_path: Path,
) -> None:
    local = daemon_factory(fake_index_server.url)  # backend local, as before the move
    ours = build_wheel(tmp_path / "dists", "ours", "3.0")
    twine_upload(clients, f"{local.url}/root/public/", ROOT, ours.path)
    pip_install(clients, local, "root/public", tmp_path / "t1", "ours", "alpha")
    config = tmp_path / "migrate.yaml"
    s3 = {"endpoint": store.endpoint, "bucket": BUCKET, "prefix": "ww/", "addressing": "path"}
    config.write_text(yaml.safe_dump({"storage": {"s3": s3}}))
    corrupt = local.data_dir / "blobs" / dists.beta2.sha256[:2] / dists.beta2.sha256
    corrupt.write_bytes(b"rotten" + corrupt.read_bytes()[6:])  # never copied as it is
    argv = ["storage", "migrate", "--to", "s3", "--config", str(config)]
    moved = wheelwell_cli(*argv, "--data-dir", str(local.data_dir))  # while it runs
    assert moved.returncode == 1, moved.stderr  # one file failed its hash
    assert f"not copied, fails its sha256: {dists.beta2.sha256}" in moved.stdout
    keys = blob_keys(store)
    assert {ours.sha256, dists.alpha.sha256} <= keys and dists.beta2.sha256 not in keys
    again = wheelwell_cli(*argv, "--data-dir", str(local.data_dir))
    assert "copied 0 files" in again.stdout  # idempotent

    local.stop()
    _wipe_disk(local)
    daemon = on_bucket(daemon_factory, fake_index_server, store, again=local)
    target = tmp_path / "t2"
    pip_install(clients, daemon, "root/public", target, "ours", "alpha")  # beta: from upstream
    assert installed_versions(clients, target, "ours", "alpha") == ["3.0", "1.0"]
    missing = wheelwell_cli("storage", "migrate", "--to", "s3", "--data-dir", str(tmp_path))
    assert missing.returncode == 2 and "storage.s3.bucket" in missing.stderr


def test_a_replica_sharing_the_bucket_copies_nothing_from_its_primary(
    store: SeaweedFS,
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    secret_file = tmp_path / "replication-secret"
    secret_file.write_text(SECRET + "\n")
    s3 = {"endpoint": store.endpoint, "bucket": BUCKET, "prefix": "ww/", "addressing": "path"}
    shared = {"backend": "s3", "s3": s3}
    rep = {"secret_file": str(secret_file), "heartbeat": "1s"}
    primary = daemon_factory(
        fake_index_server.url,
        {"storage": shared, "replication": {**rep, "role": "primary"}},
        env=CREDENTIALS,
    )
    ours = build_wheel(tmp_path / "dists", "ours", "4.0")
    twine_upload(clients, f"{primary.url}/root/public/", ROOT, ours.path)
    replica = daemon_factory(
        fake_index_server.url,
        {"storage": shared, "replication": {**rep, "primary_url": primary.url}},
        env=CREDENTIALS,
    )
    _wait_caught_up(replica, primary)
    wait_until(
        lambda: _status(replica)["primary"]["files_pending"] == 0,
        timeout=30,
        message="the replica's file list settled",
    )
    target = tmp_path / "target"
    pip_install(clients, replica, "root/public", target, "ours")
    assert installed_versions(clients, target, "ours") == ["4.0"]
    assert "/+replication/files/" not in primary.log()  # every byte came from the bucket


def test_the_disk_copies_are_bounded_and_read_back_from_the_bucket(
    store: SeaweedFS,
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    daemon = on_bucket(daemon_factory, fake_index_server, store, cache_size="100KB")
    built = [
        build_wheel(tmp_path / f"d{n}", f"big{n}", "1.0", payload_size=40_000) for n in range(4)
    ]
    for wheel in built:
        twine_upload(clients, f"{daemon.url}/root/public/", ROOT, wheel.path)

    def on_disk() -> int:
        blobs = daemon.data_dir / "blobs"
        return sum(p.stat().st_size for p in blobs.rglob("*") if p.is_file())

    wait_until(lambda: on_disk() <= 100_000, timeout=30, message="the disk copies evicted")
    assert {w.sha256 for w in built} <= blob_keys(store)  # the bucket keeps every one
    target = tmp_path / "target"
    names = [w.name for w in built]
    pip_install(clients, daemon, "root/public", target, *names)
    assert installed_versions(clients, target, *names) == ["1.0"] * 4


def test_a_file_larger_than_a_part_goes_up_in_parts(
    store: SeaweedFS,
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    daemon = on_bucket(daemon_factory, fake_index_server, store, part_size="5MiB")
    large = build_wheel(tmp_path / "dists", "large", "1.0", payload_size=12_000_000)
    twine_upload(clients, f"{daemon.url}/root/public/", ROOT, large.path)
    key = f"ww/blobs/{large.sha256[:2]}/{large.sha256}"
    assert hashlib.sha256(store.get(key)).hexdigest() == large.sha256  # three parts, whole
    assert "<Upload>" not in store.request("GET", f"/{BUCKET}?uploads").decode()  # none left
