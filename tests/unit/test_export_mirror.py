"""`export --include-mirror`: mirror files held against eviction, pages and aliases round-trip."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from proxy.cluster import export as exporting
from proxy.cluster import mirrorstate
from proxy.storage.blobs import BlobAliases, LocalBlobStore
from proxy.storage.db import Database
from proxy.storage.pagecache import CachedPage, PageCache

BIG = b"x" * 300_000  #: a page body large enough that diskcache keeps it in a file of its own
MISSING = CachedPage(body=b"", fetched_at=2.0, status=404)


async def _data_dir(root: Path) -> tuple[Path, list[str]]:
    """A data dir with three mirror files (one by alias), a cached page and a remembered 404."""
    db = Database(root / "wheelwell.sqlite3")
    await db.start()
    store = LocalBlobStore(root, BlobAliases(db))
    store.open()
    shas = []
    for n in range(3):
        stored = await store.store_bytes(b"file %d" % n, (f"key{n}.metadata",) if n else ())
        shas.append(stored.path.name)
    store.close()
    await db.close()
    pages = PageCache(root / "pages")
    await pages.start()
    pages.store("root/pypi:big", CachedPage(body=BIG, fetched_at=1.5, etag='"e"', serial=7))
    pages.store("root/pypi:nope", MISSING)
    await pages.close()
    return root, sorted(shas)


async def test_mirror_state_round_trips_with_an_identical_manifest(tmp_path: Path) -> None:
    data_dir, shas = await _data_dir(tmp_path / "data")
    report = exporting.export(data_dir, tmp_path / "out", include_mirror=True)
    assert report.counts["mirror files"] == 3 and report.counts["mirror pages"] == 2
    exporting.import_(tmp_path / "out", tmp_path / "new")
    exporting.export(tmp_path / "new", tmp_path / "again", include_mirror=True)
    manifest = (tmp_path / "out" / "manifest.json").read_bytes()
    assert (tmp_path / "again" / "manifest.json").read_bytes() == manifest
    assert mirrorstate.stored_blobs(tmp_path / "new" / "blobs") == shas
    pages = PageCache(tmp_path / "new" / "pages")
    await pages.start()
    big = await pages.load("root/pypi:big")
    assert big is not None and big.body == BIG and big.etag == '"e"' and big.serial == 7
    assert await pages.load("root/pypi:nope") == MISSING
    await pages.close()
    db = Database(tmp_path / "new" / "wheelwell.sqlite3")
    await db.start()
    assert await BlobAliases(db).lookup("key1.metadata") == hashlib.sha256(b"file 1").hexdigest()
    await db.close()


async def test_without_the_option_the_mirror_stays_out(tmp_path: Path) -> None:
    data_dir, _ = await _data_dir(tmp_path / "data")
    exporting.export(data_dir, tmp_path / "out")
    listed = json.loads((tmp_path / "out" / "manifest.json").read_text())["files"]
    assert [f["path"] for f in listed] == ["state.json"]


def test_a_file_evicted_before_it_is_held_is_skipped_one_after_is_still_whole(
    tmp_path: Path,
) -> None:
    blobs = tmp_path / "blobs"
    shas = []
    for n in range(2):
        body = b"cached %d" % n * 1000
        sha = hashlib.sha256(body).hexdigest()
        (blobs / sha[:2]).mkdir(parents=True, exist_ok=True)
        (blobs / sha[:2] / sha).write_bytes(body)
        shas.append(sha)
    listed = mirrorstate.stored_blobs(blobs)
    (blobs / listed[0][:2] / listed[0]).unlink()  # evicted between the listing and the hold
    held = mirrorstate.Held()
    try:
        mirrorstate.hold_blobs(held, blobs, listed)
        assert held.skipped == 1 and list(held.blobs) == [listed[1]]
        (blobs / listed[1][:2] / listed[1]).unlink()  # evicted after: the bytes are held
        fh, size = held.blobs[listed[1]]
        assert hashlib.sha256(fh.read()).hexdigest() == listed[1] and size == 8000
    finally:
        held.close()


@pytest.mark.parametrize(
    ("change", "wanted"),
    [
        (lambda m: m["aliases"].append(["x.metadata", "0" * 64]), "names a file not in the export"),
        (lambda m: m["pages"][0].update(status=500), "bad status"),
        (lambda m: m["pages"][0].update(body="1" * 64), "its body is not in the export"),
        (lambda m: m["pages"][0].update(extra=1), "unknown or missing fields"),
    ],
)
async def test_a_crafted_mirror_state_is_refused(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], wanted: str
) -> None:
    data_dir, _ = await _data_dir(tmp_path / "data")
    out = tmp_path / "out"
    exporting.export(data_dir, out, include_mirror=True)
    mirror = json.loads((out / "mirror.json").read_text())
    change(mirror)
    body = json.dumps(mirror).encode()
    (out / "mirror.json").write_bytes(body)
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == "mirror.json":
            entry["size"], entry["sha256"] = len(body), hashlib.sha256(body).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(exporting.ExportError, match=wanted):
        exporting.import_(out, tmp_path / "new")
    assert not (tmp_path / "new").exists()
