"""The page cache keeps a bounded number of remembered 404s, across restarts too (issue 9)."""

from __future__ import annotations

from pathlib import Path

from proxy.storage.pagecache import CachedPage, PageCache

MISSING = CachedPage(body=b"", fetched_at=1.0, status=404)
FOUND = CachedPage(body=b"{}", fetched_at=1.0)


async def test_negative_entries_are_capped_oldest_first(tmp_path: Path) -> None:
    pages = PageCache(tmp_path / "pages", max_negative=3)
    await pages.start()
    pages.store("m:found", FOUND)
    for n in range(10):
        pages.store(f"m:nope-{n}", MISSING)
    assert [await pages.load(f"m:nope-{n}") for n in range(7)] == [None] * 7
    assert [await pages.load(f"m:nope-{n}") for n in range(7, 10)] == [MISSING] * 3
    await pages.close()
    reopened = PageCache(tmp_path / "pages", max_negative=3)
    await reopened.start()
    assert sorted(reopened.cache.iterkeys()) == ["m:found", "m:nope-7", "m:nope-8", "m:nope-9"]
    assert await reopened.load("m:found") == FOUND
    await reopened.close()


async def test_a_smaller_cap_trims_what_is_on_disk_at_start(tmp_path: Path) -> None:
    pages = PageCache(tmp_path / "pages", max_negative=100)
    await pages.start()
    for n in range(10):
        pages.store(f"m:nope-{n}", MISSING)
    pages.store("m:nope-3", FOUND)  # found after all: no longer a negative entry
    await pages.close()
    smaller = PageCache(tmp_path / "pages", max_negative=2)
    await smaller.start()
    await smaller.close()  # the trim is written behind; close flushes it
    again = PageCache(tmp_path / "pages", max_negative=2)
    await again.start()
    assert len(list(again.cache.iterkeys())) == 3
    assert await again.load("m:nope-3") == FOUND
    await again.close()
