"""proxy.storage.blobs: content addressing, aliases, and nothing half-written left behind."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
from pathlib import Path

import pytest

from proxy.storage.blobs import BlobStore

BODY = b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n"
SHA = hashlib.sha256(BODY).hexdigest()
ALIAS = "u" + "0123456789" * 4


def tree(root: Path) -> list[str]:
    """Every file under root, relative: the whole on-disk state in one comparable value."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    store = BlobStore(tmp_path / "data")
    store.open()
    return store


def test_open_creates_the_layout(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "deep" / "data")
    store.open()
    assert store.blobs.is_dir()
    assert store.aliases.is_dir()
    assert store.tmp.is_dir()
    store.open()  # idempotent


async def test_store_bytes_and_find(blobs: BlobStore) -> None:
    path = await blobs.store_bytes(BODY)
    assert path == blobs.blobs / SHA[:2] / SHA
    assert path.read_bytes() == BODY
    assert blobs.find(SHA) == path
    assert blobs.find_key(SHA) == path
    assert tree(blobs.root) == [f"blobs/{SHA[:2]}/{SHA}"]


async def test_store_bytes_twice_is_one_blob(blobs: BlobStore) -> None:
    first = await blobs.store_bytes(BODY)
    second = await blobs.store_bytes(BODY)
    assert first == second
    assert tree(blobs.root) == [f"blobs/{SHA[:2]}/{SHA}"]


async def test_aliases(blobs: BlobStore) -> None:
    metadata_alias = f"{SHA}.metadata"
    path = await blobs.store_bytes(BODY, (ALIAS, metadata_alias))
    assert blobs.resolve_alias(ALIAS) == SHA
    assert blobs.find_key(ALIAS) == path
    assert blobs.find_key(metadata_alias) == path
    assert tree(blobs.root) == sorted(
        [f"aliases/{ALIAS}", f"aliases/{metadata_alias}", f"blobs/{SHA[:2]}/{SHA}"]
    )


async def test_alias_is_rewritten(blobs: BlobStore) -> None:
    await blobs.store_bytes(b"old", (ALIAS,))
    new = await blobs.store_bytes(b"new", (ALIAS,))
    assert blobs.find_key(ALIAS) == new
    assert new.read_bytes() == b"new"


def test_find_missing(blobs: BlobStore) -> None:
    assert blobs.find(SHA) is None
    assert blobs.find_key(SHA) is None
    assert blobs.find_key(ALIAS) is None
    assert blobs.resolve_alias(ALIAS) is None


def test_alias_to_a_missing_or_garbled_blob(blobs: BlobStore) -> None:
    (blobs.aliases / ALIAS).write_text(SHA)
    assert blobs.resolve_alias(ALIAS) == SHA
    assert blobs.find_key(ALIAS) is None
    (blobs.aliases / ALIAS).write_text("../../etc/passwd")
    assert blobs.resolve_alias(ALIAS) is None
    assert blobs.find_key(ALIAS) is None


def test_open_removes_leftover_temp_files(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "data")
    store.open()
    (store.tmp / "0123abcd.part").write_bytes(b"half a wheel")
    (store.tmp / "4567ef01.alias").write_text(SHA)
    blob = store.blobs / SHA[:2] / SHA
    blob.parent.mkdir()
    blob.write_bytes(BODY)
    BlobStore(tmp_path / "data").open()
    assert tree(store.root) == [f"blobs/{SHA[:2]}/{SHA}"]


async def test_discarded_temp_blob_leaves_nothing(blobs: BlobStore) -> None:
    temp = blobs.create_temp()
    await temp.write(b"partial ")
    await temp.write(b"download")
    assert temp.size == len(b"partial download")
    assert temp.read_at(8, 4) == b"down"
    assert temp.path.parent == blobs.tmp
    temp.close()
    temp.close()  # twice is harmless
    assert tree(blobs.root) == []
    with pytest.raises(OSError):
        os.fstat(temp.fd)


async def test_unlinked_temp_blob_stays_readable_until_dropped(blobs: BlobStore) -> None:
    temp = blobs.create_temp()
    await temp.write(b"late readers still get these bytes")
    name = str(temp.path)
    temp.unlink()
    assert tree(blobs.root) == []
    assert temp.read_at(0, 4) == b"late"
    link = Path(f"/proc/self/fd/{temp.fd}")
    del temp  # the last reference: the fd is closed with it
    gc.collect()  # in case a finished executor call still held the object
    # the number may be reused at once by another open file, so look at what it points to
    target = await asyncio.to_thread(lambda: link.readlink() if link.exists() else None)
    assert target is None or not str(target).startswith(name)


async def test_commit(blobs: BlobStore) -> None:
    temp = blobs.create_temp()
    await temp.write(BODY[:10])
    await temp.write(BODY[10:])
    assert temp.hexdigest() == SHA
    path = await blobs.commit(temp, (ALIAS,))
    assert temp.read_at(0, len(BODY)) == BODY  # the fd stays readable after the rename
    temp.close()
    assert path.read_bytes() == BODY
    assert blobs.find_key(ALIAS) == path
    assert tree(blobs.root) == sorted([f"aliases/{ALIAS}", f"blobs/{SHA[:2]}/{SHA}"])


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "../" + SHA[3:],
        SHA.upper(),
        SHA[:-1],
        SHA + "0",
        ALIAS,
        "md5:" + SHA[4:],
        SHA + "\n",  # `$` also matches before a trailing newline
    ],
)
def test_path_for_rejects_non_sha256(blobs: BlobStore, digest: str) -> None:
    with pytest.raises(ValueError, match="not a sha256"):
        blobs.path_for(digest)
    with pytest.raises(ValueError, match="not a sha256"):
        blobs.find(digest)
