"""Upstream project pages on disk (diskcache), so a restart or a dead upstream still has them.

SQLite allows one writer at a time, so all access goes through one dedicated thread, and writes
are queued and committed in batches behind the response (write-behind): a client never waits for
the disk to learn about a page it has already been served from memory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
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
    """One upstream answer: the page in our own JSON form, or a remembered 404."""

    body: bytes  #: PEP 691 JSON with absolute upstream URLs (render_json of the parsed page)
    fetched_at: float  #: wall-clock time of the last fetch or successful revalidation
    status: int = 200  #: 200, or 404 for a negative entry
    etag: str | None = None
    last_modified: str | None = None
    serial: int | None = None  #: upstream X-PyPI-Last-Serial


_Write = tuple[CachedPage, ProjectPage | None]  #: a page rendered to JSON only when written


def _with_body(cached: CachedPage, page: ProjectPage | None) -> CachedPage:
    return cached if page is None else dataclasses.replace(cached, body=render_json(page))


class PageCache:
    """diskcache behind one thread; `known` spares a disk lookup for pages never stored."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: diskcache.Cache | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pagecache")
        self._known: set[str] = set()
        self._writes: WriteBehind[str, _Write] = WriteBehind("pagecache", self._flush)

    def _open(self) -> None:
        self._cache = diskcache.Cache(str(self.directory), size_limit=2**32)
        self._known = set(self._cache.iterkeys())

    async def start(self) -> None:
        await self._call(self._open)

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
        if key not in self._known:
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

    def _write_batch(self, batch: dict[str, _Write]) -> None:
        with self.cache.transact():
            for key, (cached, page) in batch.items():
                self.cache.set(key, asdict(_with_body(cached, page)))

    async def _flush(self, batch: dict[str, _Write]) -> None:
        """One transaction per batch, on the cache's own thread (WriteBehind logs a failure)."""
        await self._call(self._write_batch, batch)
