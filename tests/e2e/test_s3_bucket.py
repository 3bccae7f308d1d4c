"""The bucket as a whole under storage.backend s3, against a real SeaweedFS (issue 16, second
slice): conditional creates (one writer wins when two servers put the same blob), eviction of
mirror objects to honour `storage.max_size`, and abandoned multipart uploads cleaned up."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from proxy.config import S3Addressing, S3Config
from proxy.metrics import Metrics
from proxy.storage.blobs import LocalBlobStore, LocalFile
from proxy.storage.s3 import S3BlobStore
from tests.seaweed import BUCKET, CREDENTIALS, SeaweedFS, seaweedfs


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SeaweedFS]:
    server = seaweedfs(tmp_path / "seaweedfs")
    server.start()  # before the credentials: SeaweedFS given AWS_* in its environment checks them
    yield server
    server.stop()


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
async def test_two_servers_putting_one_blob_at_once_upload_it_once(
    s3: tuple[S3BlobStore, S3BlobStore], size: int
) -> None:
    one, two = s3
    data = os.urandom(size)
    first, second = await _on_disk(one, data), await _on_disk(two, data)
    created = await asyncio.gather(one.put(first), two.put(second))
    assert sorted(created) == [False, True]  # the conditional create decided who uploads
    assert _put_bytes(one) + _put_bytes(two) == size
    assert await one.size_of(first.path.name) == size
    assert await one.digest(first.path.name) == first.path.name
