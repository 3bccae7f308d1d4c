"""The bucket as a whole under storage.backend s3, against a real SeaweedFS (issue 16, second
slice): conditional creates (one writer wins when two servers put the same blob), eviction of
mirror objects to honour `storage.max_size`, and abandoned multipart uploads cleaned up."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.config import S3Addressing, S3Config
from proxy.metrics import Metrics
from proxy.storage.blobs import LocalBlobStore, LocalFile
from proxy.storage.s3 import S3BlobStore
from tests.conftest import Clients, DaemonFactory, http_get
from tests.e2e.conftest import ROOT, twine_upload
from tests.e2e.test_disk_faults import metric
from tests.e2e.test_upstream_failures import file_url
from tests.fakes.dists import build_wheel
from tests.fakes.index import FakeIndex, ThreadedServer
from tests.polling import wait_until
from tests.seaweed import BUCKET, CREDENTIALS, SeaweedFS, blob_keys, on_bucket


@pytest.fixture
async def s3(
    store: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[S3BlobStore, S3BlobStore]]:
    """Two servers' stores on one bucket (each with its own disk), as a primary and a replica."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    cfg = S3Config(
        endpoint=store.endpoint, bucket=BUCKET, prefix="ww/", addressing=S3Addressing.PATH,
        part_size=5 * 1024**2,
    )  # fmt: skip
    stores = []
    for name in ("one", "two"):
        local = LocalBlobStore(tmp_path / name)
        local.open()
        stores.append(S3BlobStore(cfg, local, Metrics()))
        await stores[-1].start()
    yield stores[0], stores[1]
    for each in stores:
        await each.close()
        each.local.close()


async def _on_disk(store: S3BlobStore, data: bytes) -> LocalFile:
    stored = await store.local.store_bytes(data)
    assert isinstance(stored, LocalFile)
    return stored


def _put_bytes(store: S3BlobStore) -> float:
    return store.metrics.object_store_bytes_put._value.get() if store.metrics else 0.0


@pytest.mark.parametrize("size", [300 * 1024, 11 * 1024**2], ids=["one put", "multipart"])
async def test_a_put_that_finds_the_blob_created_meanwhile_uploads_nothing(
    s3: tuple[S3BlobStore, S3BlobStore], size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two servers putting one blob: the second looked (HEAD: missing) before the first's
    put landed. Its conditional create is refused (412), so it uploads nothing more. The race
    is laid out in order rather than left to timing: SeaweedFS checks If-None-Match on a
    multipart completion without a lock, so two completions in the same instant both land,
    where AWS answers one of them 409."""
    one, two = s3
    data = os.urandom(size)
    first, second = await _on_disk(one, data), await _on_disk(two, data)
    assert await one.put(first) is True

    async def missed(sha256: str) -> None:
        return None  # what two's HEAD said, before one's put landed

    monkeypatch.setattr(two, "size_of", missed)
    assert await two.put(second) is False
    assert _put_bytes(one) == size and _put_bytes(two) == 0
    assert await one.digest(first.path.name) == first.path.name
    listed = await two._client.list_multipart_uploads(Bucket=BUCKET)
    assert not listed.get("Uploads")  # a refused multipart upload is aborted, not left behind


def test_max_size_evicts_the_least_recently_used_mirror_objects_from_the_bucket(
    store: SeaweedFS,
    daemon_factory: DaemonFactory,
    clients: Clients,
    tmp_path: Path,
) -> None:
    fake = FakeIndex(tmp_path / "upstream")
    mirrored = [build_wheel(tmp_path / "d", f"m{n}", "1.0", payload_size=60_000) for n in range(5)]
    for wheel in mirrored:
        fake.add(wheel)
    with ThreadedServer(fake.app) as upstream:
        daemon = on_bucket(daemon_factory, upstream, store, storage={"max_size": "200KB"})
        ours = build_wheel(tmp_path / "ours", "ours", "1.0", payload_size=60_000)
        twine_upload(clients, f"{daemon.url}/root/public/", ROOT, ours.path)
        for wheel in mirrored:  # m0 first: the least recently used
            assert http_get(file_url(daemon, wheel.name, wheel.filename)).status == 200

        def evicted() -> bool:
            held = blob_keys(store)
            return mirrored[0].sha256 not in held and mirrored[-1].sha256 in held

        wait_until(evicted, timeout=30, message="the oldest mirror object evicted")
        held = blob_keys(store)
        assert ours.sha256 in held  # an upload never goes
        assert sum(len(store.get(f"ww/blobs/{sha[:2]}/{sha}")) for sha in held) <= 200_000
        assert not (
            daemon.data_dir / "blobs" / mirrored[0].sha256[:2] / mirrored[0].sha256
        ).exists()
        assert metric(daemon, "wheelwell_object_store_evictions_total") >= 1
        status = json.loads(http_get(daemon.url + "/+status", {"Accept": "application/json"}).body)
        assert status["bucket"]["listed"] and status["bucket"]["bytes"] <= 200_000

        path = f"/files/{mirrored[0].filename}"
        assert fake.hits(path) == 1
        again = http_get(file_url(daemon, mirrored[0].name, mirrored[0].filename))
        assert again.status == 200 and again.body == mirrored[0].path.read_bytes()
        assert fake.hits(path) == 2  # evicted everywhere: fetched from upstream again
        hosted = http_get(f"{daemon.url}/root/public/+f/{ours.sha256}/{ours.filename}")
        assert hosted.status == 200 and hosted.body == ours.path.read_bytes()


def test_abandoned_multipart_uploads_are_aborted_at_start(
    store: SeaweedFS, daemon_factory: DaemonFactory, fake_index_server: ThreadedServer
) -> None:
    store.request("POST", f"/{BUCKET}/ww/blobs/ab/{'ab' * 32}?uploads")  # a put cut off
    store.request("POST", f"/{BUCKET}/elsewhere/x?uploads")  # not ours: left alone
    assert store.request("GET", f"/{BUCKET}?uploads").decode().count("<Upload>") == 2
    time.sleep(1.5)
    on_bucket(daemon_factory, fake_index_server, store, stale_uploads="1s")

    def left() -> str:
        return store.request("GET", f"/{BUCKET}?uploads").decode()

    wait_until(lambda: left().count("<Upload>") == 1, timeout=30, message="ours aborted")
    assert "elsewhere/x" in left()
