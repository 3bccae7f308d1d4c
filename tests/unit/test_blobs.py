"""proxy.storage.blobs: content addressing, aliases, and nothing half-written left behind."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.errors import UnsafePathError
from proxy.storage.blobs import LocalBlobStore, LocalFile
from tests.fakes.stores import open_local_blobs

BODY = b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n"
SHA = hashlib.sha256(BODY).hexdigest()
ALIAS = "u" + "0123456789" * 4


def tree(root: Path) -> list[str]:
    """Every file under root, relative: the whole on-disk state in one comparable value."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
async def blobs(tmp_path: Path) -> AsyncIterator[LocalBlobStore]:
    async with open_local_blobs(tmp_path / "data") as store:
        yield store


def files(store: LocalBlobStore) -> list[str]:
    """The store's own files (the database beside it holds the aliases)."""
    return [p for p in tree(store.root) if not p.startswith("wheelwell.sqlite3")]


def test_open_creates_the_layout(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "deep" / "data")
    store.open()
    assert store.blobs.is_dir()
    assert store.tmp.is_dir()
    store.open()  # idempotent


async def test_store_bytes_and_locate(blobs: LocalBlobStore) -> None:
    stored = await blobs.store_bytes(BODY)
    assert stored == LocalFile(blobs.blobs / SHA[:2] / SHA, len(BODY))
    assert stored.path.read_bytes() == BODY
    assert blobs.find(SHA) == stored.path
    assert await blobs.locate(SHA) == stored
    assert files(blobs) == [f"blobs/{SHA[:2]}/{SHA}"]


async def test_store_bytes_twice_is_one_blob(blobs: LocalBlobStore) -> None:
    first = await blobs.store_bytes(BODY)
    second = await blobs.store_bytes(BODY)
    assert first == second
    assert files(blobs) == [f"blobs/{SHA[:2]}/{SHA}"]


async def test_aliases(blobs: LocalBlobStore) -> None:
    metadata_alias = f"{SHA}.metadata"
    stored = await blobs.store_bytes(BODY, (ALIAS, metadata_alias))
    assert blobs.aliases is not None and await blobs.aliases.lookup(ALIAS) == SHA
    assert await blobs.locate(ALIAS) == stored
    assert await blobs.locate(metadata_alias) == stored
    assert files(blobs) == [f"blobs/{SHA[:2]}/{SHA}"]  # aliases are rows, not files


async def test_alias_is_rewritten(blobs: LocalBlobStore) -> None:
    await blobs.store_bytes(b"old", (ALIAS,))
    new = await blobs.store_bytes(b"new", (ALIAS,))
    assert await blobs.locate(ALIAS) == new
    assert new.path.read_bytes() == b"new"


async def test_locate_missing(blobs: LocalBlobStore) -> None:
    assert blobs.find(SHA) is None
    assert await blobs.locate(SHA) is None
    assert await blobs.locate(ALIAS) is None


async def test_an_alias_whose_blob_is_gone_locates_nothing(blobs: LocalBlobStore) -> None:
    await blobs.store_bytes(BODY, (ALIAS,))
    blobs.remove(SHA)  # evicted
    assert await blobs.locate(ALIAS) is None


async def test_an_unsafe_alias_is_refused_and_nothing_recorded(blobs: LocalBlobStore) -> None:
    with pytest.raises(UnsafePathError):
        await blobs.store_bytes(BODY, ("../../etc/passwd",))
    assert blobs.aliases is not None and await blobs.aliases.lookup("../../etc/passwd") is None


async def test_milestone_1_alias_files_move_into_the_database(tmp_path: Path) -> None:
    legacy = tmp_path / "data" / "aliases"
    legacy.mkdir(parents=True)
    (legacy / ALIAS).write_text(SHA + "\n")
    (legacy / "garbled.metadata").write_text("../../etc/passwd")
    async with open_local_blobs(tmp_path / "data") as store:
        assert store.aliases is not None
        assert await store.aliases.migrate(legacy) == 1
        assert not legacy.exists()
        await store.store_bytes(BODY)
        assert await store.locate(ALIAS) == LocalFile(store.path_for(SHA), len(BODY))
        assert await store.aliases.lookup("garbled.metadata") is None
        assert await store.aliases.migrate(legacy) == 0  # once only


def test_open_removes_leftover_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "data")
    store.open()
    (store.tmp / "0123abcd.part").write_bytes(b"half a wheel")
    (store.tmp / "4567ef01.alias").write_text(SHA)
    blob = store.blobs / SHA[:2] / SHA
    blob.parent.mkdir()
    blob.write_bytes(BODY)
    LocalBlobStore(tmp_path / "data").open()
    assert tree(store.root) == [f"blobs/{SHA[:2]}/{SHA}"]


async def test_discarded_temp_blob_leaves_nothing(blobs: LocalBlobStore) -> None:
    temp = blobs.create_temp()
    await temp.write(b"partial ")
    await temp.write(b"download")
    assert temp.size == len(b"partial download")
    assert temp.read_at(8, 4) == b"down"
    assert temp.path.parent == blobs.tmp
    temp.close()
    temp.close()  # twice is harmless
    assert files(blobs) == []
    with pytest.raises(OSError):
        os.fstat(temp.fd)


async def test_unlinked_temp_blob_stays_readable_until_dropped(blobs: LocalBlobStore) -> None:
    temp = blobs.create_temp()
    await temp.write(b"late readers still get these bytes")
    name = str(temp.path)
    temp.unlink()
    assert files(blobs) == []
    assert temp.read_at(0, 4) == b"late"
    link = Path(f"/proc/self/fd/{temp.fd}")
    del temp  # the last reference: the fd is closed with it
    gc.collect()  # in case a finished executor call still held the object
    # the number may be reused at once by another open file, so look at what it points to
    target = await asyncio.to_thread(lambda: link.readlink() if link.exists() else None)
    assert target is None or not str(target).startswith(name)


async def test_commit(blobs: LocalBlobStore) -> None:
    temp = blobs.create_temp()
    await temp.write(BODY[:10])
    await temp.write(BODY[10:])
    assert temp.hexdigest() == SHA
    stored = await blobs.commit(temp, (ALIAS,))
    assert temp.read_at(0, len(BODY)) == BODY  # the fd stays readable after the rename
    temp.close()
    assert stored.path.read_bytes() == BODY
    assert await blobs.locate(ALIAS) == stored
    assert files(blobs) == [f"blobs/{SHA[:2]}/{SHA}"]


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
def test_path_for_rejects_non_sha256(blobs: LocalBlobStore, digest: str) -> None:
    with pytest.raises(ValueError, match="not a sha256"):
        blobs.path_for(digest)
    with pytest.raises(ValueError, match="not a sha256"):
        blobs.find(digest)


async def test_aliases_of_a_burst_share_one_transaction(blobs: LocalBlobStore) -> None:
    """A write-behind batch of metadata files records its aliases in few database trips."""
    aliases = blobs.aliases
    assert aliases is not None
    trips = 0
    write_derived = aliases.db.write_derived

    async def counting(fn):  # type: ignore[no-untyped-def]
        nonlocal trips
        trips += 1
        return await write_derived(fn)

    aliases.db.write_derived = counting  # type: ignore[method-assign]
    bodies = [BODY + str(i).encode() for i in range(20)]
    names = [f"{ALIAS[:-2]}{i:02d}.metadata" for i in range(20)]
    await asyncio.gather(*(aliases.record((n,), SHA) for n in names))
    assert trips <= 2
    for name in names:
        assert await aliases.lookup(name) == SHA
    stored = await asyncio.gather(
        *(blobs.store_bytes(b, (n,)) for b, n in zip(bodies, names, strict=True))
    )
    for body, name, blob in zip(bodies, names, stored, strict=True):
        assert await blobs.locate(name) == blob
        assert blob.path.read_bytes() == body
