"""Upstream project pages on disk (diskcache), so a restart or a dead upstream still has them.

SQLite allows one writer at a time, so all access goes through one dedicated thread, and writes
are queued and committed in batches behind the response (write-behind): a client never waits for
the disk to learn about a page it has already been served from memory.

Remembered 404s are tagged on disk and capped (least recently stored dropped): anyone can ask
for a million made-up names, and each would otherwise stay, on disk and in `known`, for good.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import diskcache  # type: ignore[import-untyped]

from proxy.model import ProjectPage
from proxy.simple_api import render_json
from proxy.tasks import WriteBehind

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CachedPage:
    """One upstream answer: its body as the upstream sent it, our own JSON form, or a 404."""

    #: the upstream's body (`content_type` set), or PEP 691 JSON with absolute upstream URLs
    #: (render_json of the parsed page: a revalidated page, and milestone 1's entries)
    body: bytes
    fetched_at: float  #: wall-clock time of the last fetch or successful revalidation
    status: int = 200  #: 200, or 404 for a negative entry
    etag: str | None = None
    last_modified: str | None = None
    serial: int | None = None  #: upstream X-PyPI-Last-Serial
    content_type: str = ""  #: of an upstream body; "" for our own JSON
    url: str = ""  #: the upstream's final URL, the base of relative links


_Write = tuple[CachedPage, ProjectPage | None]  #: a page rendered to JSON only when written
_Queued = _Write | None  #: None: delete the key (a negative entry dropped from the cap)
_NEGATIVE_TAG = "404"


def _with_body(cached: CachedPage, page: ProjectPage | None) -> CachedPage:
    if page is None:
        return cached
    return dataclasses.replace(cached, body=render_json(page), content_type="", url="")


class PageCache:
    """diskcache behind one thread; `known` spares a disk lookup for pages never stored."""

    def __init__(self, directory: Path, *, max_negative: int = 10_000) -> None:
        self.directory = directory
        self.max_negative = max_negative  #: limits.negative_pages
        self._cache: diskcache.Cache | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pagecache")
        self._known: set[str] = set()
        #: keys whose stored answer is a 404, oldest first
        self._negative: OrderedDict[str, None] = OrderedDict()
        self._writes: WriteBehind[str, _Queued] = WriteBehind("pagecache", self._flush)

    def _open(self) -> None:
        self._cache = diskcache.Cache(str(self.directory), size_limit=2**32)
        self._known = set(self._cache.iterkeys())
        rows = self._cache._sql(
            "SELECT key FROM Cache WHERE tag = ? ORDER BY store_time, rowid", (_NEGATIVE_TAG,)
        )
        self._negative = OrderedDict((str(key), None) for (key,) in rows)

    def _trim_negative(self) -> None:
        """Drop the oldest 404s over the cap, from memory now and from disk behind."""
        while len(self._negative) > self.max_negative:
            key, _ = self._negative.popitem(last=False)
            self._known.discard(key)
            self._writes.put(key, None)

    async def start(self) -> None:
        await self._call(self._open)
        self._trim_negative()  # on the loop: it queues writes

    async def close(self) -> None:
        """Flush queued writes, then close the database."""
        await self._writes.close()
        if self._cache is not None:
            await self._call(self._cache.close)
            self._cache = None
        self._thread.shutdown(wait=True)

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    @property
    def cache(self) -> diskcache.Cache:
        if self._cache is None:
            raise RuntimeError("page cache is not open")
        return self._cache

    async def load(self, key: str) -> CachedPage | None:
        pending = self._writes.pending(key)
        if pending is not None:
            return _with_body(*pending)
        if key not in self._known:  # never stored, or a dropped 404 (maybe still queued)
            return None
        raw = await self._call(self.cache.get, key)
        if not isinstance(raw, dict):
            return None
        try:
            return CachedPage(**raw)
        except TypeError:
            return None

    def store(self, key: str, cached: CachedPage, page: ProjectPage | None = None) -> None:
        """Queue a write (the latest per key wins); `page` is rendered to JSON off the loop."""
        self._writes.put(key, (cached, page))
        self._known.add(key)
        if cached.status == 200:
            self._negative.pop(key, None)
        else:
            self._negative[key] = None
            self._negative.move_to_end(key)
            self._trim_negative()

    def _write_batch(self, batch: dict[str, _Queued]) -> None:
        with self.cache.transact():
            for key, queued in batch.items():
                if queued is None:
                    self.cache.delete(key)
                    continue
                cached, page = queued
                tag = None if cached.status == 200 else _NEGATIVE_TAG
                self.cache.set(key, asdict(_with_body(cached, page)), tag=tag)

    async def _flush(self, batch: dict[str, _Queued]) -> None:
        """One transaction per batch, on the cache's own thread (WriteBehind logs a failure)."""
        await self._call(self._write_batch, batch)
