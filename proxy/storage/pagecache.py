"""Upstream project pages on disk (diskcache), so a restart or a dead upstream still has them."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import diskcache  # type: ignore[import-untyped]


@dataclass(frozen=True, slots=True)
class CachedPage:
    """One upstream answer: the page in our own JSON form, or a remembered 404."""

    body: bytes  #: PEP 691 JSON with absolute upstream URLs (render_json of the parsed page)
    fetched_at: float  #: wall-clock time of the last fetch or successful revalidation
    status: int = 200  #: 200, or 404 for a negative entry
    etag: str | None = None
    last_modified: str | None = None
    serial: int | None = None  #: upstream X-PyPI-Last-Serial


class PageCache:
    """diskcache is synchronous SQLite, so every call runs in the executor."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: diskcache.Cache | None = None

    def open(self) -> None:
        self._cache = diskcache.Cache(str(self.directory), size_limit=2**32)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    @property
    def cache(self) -> diskcache.Cache:
        if self._cache is None:
            raise RuntimeError("page cache is not open")
        return self._cache

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))

    async def load(self, key: str) -> CachedPage | None:
        raw = await self._run(self.cache.get, key)
        if not isinstance(raw, dict):
            return None
        try:
            return CachedPage(**raw)
        except TypeError:
            return None

    async def store(self, key: str, page: CachedPage) -> None:
        await self._run(self.cache.set, key, asdict(page))
