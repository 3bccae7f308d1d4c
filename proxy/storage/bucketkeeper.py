"""The primary's care of a shared bucket: `storage.max_size` and abandoned multipart uploads.

With `storage.backend: s3` the bucket is the store, so `storage.max_size` bounds it: once the
bucket's objects pass it, the least recently used mirror objects are deleted (down to 90%), from
the bucket and from this disk; uploaded files and their metadata never are. S3 keeps no access
times, so they are this server's: every put and every read here is noted, and the objects
listed at start count from their put time, or their disk copy's last read when later. Reads
served only by replicas are not seen; an object evicted while a replica still wants it is
fetched from upstream again, as after any eviction.

Only the primary (or a standalone server) keeps the bucket; replicas bound their disk copies
only. A hosted put is marked so at once, before its upload's row is committed, so an eviction
pass between the two cannot take it; one that was put and never committed (a crash between)
is evictable after the next restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.errors import ObjectStoreError
from proxy.metrics import Metrics
from proxy.storage.eviction import protected_blobs
from proxy.storage.s3 import S3BlobStore

log = logging.getLogger(__name__)

_LOW_WATER = 0.9  #: evict down to this share of max_size, so eviction does not run per file
_RETRY = 60.0  #: seconds before a failed listing is tried again


@dataclass(slots=True)
class _Object:
    size: int
    last_access: float  #: wall-clock
    hosted: bool  #: put by an upload on this server: never a candidate


class BucketKeeper:
    """Accounting of the bucket's objects, LRU eviction past `max_size`, upload cleanup."""

    def __init__(
        self,
        store: S3BlobStore,
        db_path: Path,
        metrics: Metrics,
        max_size: int,
        *,
        stale_uploads: float,
    ) -> None:
        self.store = store
        self.db_path = db_path
        self.metrics = metrics
        self.max_size = max_size
        self.stale_uploads = stale_uploads
        self.objects: dict[str, _Object] = {}
        self.total_bytes = 0
        self.listed = False  #: the start-up listing is done: the totals are the bucket's
        self._tasks: set[asyncio.Task[None]] = set()
        self._evicting: asyncio.Task[None] | None = None
        if max_size > 0:
            store.on_put = self.noted
            store.on_read = self.touched
            store.on_gone = self.forget

    def start(self) -> None:
        self._spawn(self._begin(), "bucket keeper")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def report(self) -> dict[str, int | bool]:
        return {
            "files": len(self.objects),
            "bytes": self.total_bytes,
            "max_size": self.max_size,
            "listed": self.listed,
        }

    # ---- what the store tells -------------------------------------------------------------

    def noted(self, sha: str, size: int, hosted: bool) -> None:
        """A put (or a put found the object there already)."""
        entry = self.objects.get(sha)
        if entry is None:
            self.objects[sha] = _Object(size, time.time(), hosted)
            self.total_bytes += size
        else:
            entry.last_access = time.time()
            entry.hosted = entry.hosted or hosted
        self._changed()

    def forget(self, sha: str) -> None:
        """Deleted from the bucket (evicted, or quarantined by a verify or the scrubber)."""
        entry = self.objects.pop(sha, None)
        if entry is not None:
            self.total_bytes -= entry.size

    def touched(self, sha: str) -> None:
        entry = self.objects.get(sha)
        if entry is not None:
            entry.last_access = time.time()

    # ---- passes ----------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _begin(self) -> None:
        """Abandoned uploads first (cheap), then the listing, retried while the store is down."""
        if self.stale_uploads > 0:
            try:
                aborted = await self.store.abort_stale_uploads(self.stale_uploads)
            except ObjectStoreError as exc:
                log.warning("abandoned uploads not cleaned up: %s", exc)
            else:
                if aborted:
                    log.info(
                        "aborted %d abandoned multipart uploads in %s", aborted, self.store.where
                    )
        while self.max_size > 0 and not self.listed:
            try:
                await self._list()
            except ObjectStoreError as exc:
                log.warning(
                    "storage.max_size not applied yet, the bucket cannot be listed: %s", exc
                )
                await asyncio.sleep(_RETRY)
        self._changed()

    async def _list(self) -> None:
        local = self.store.local.entries
        async for obj in self.store.objects():
            if obj.sha256 in self.objects:
                continue  # put since start: what it says is newer
            copy = local.get(obj.sha256)
            last = max(obj.modified, copy.last_access if copy is not None else 0.0)
            self.objects[obj.sha256] = _Object(obj.size, last, False)
            self.total_bytes += obj.size
        self.listed = True
        log.info(
            "bucket %s holds %d files (%d bytes), storage.max_size %d",
            self.store.where,
            len(self.objects),
            self.total_bytes,
            self.max_size,
        )

    def _changed(self) -> None:
        self.metrics.object_store_bytes.set(self.total_bytes)
        self.metrics.object_store_files.set(len(self.objects))
        if not self.listed or self.total_bytes <= self.max_size:
            return
        if self._evicting is None or self._evicting.done():
            self._evicting = self._spawn(self._evict(), "bucket eviction")

    async def _evict(self) -> None:
        loop = asyncio.get_running_loop()
        protected = await loop.run_in_executor(None, protected_blobs, self.db_path)
        target = int(self.max_size * _LOW_WATER)
        candidates = sorted(
            (entry.last_access, sha)
            for sha, entry in self.objects.items()
            if not entry.hosted and sha not in protected
        )
        chosen: list[str] = []
        left = self.total_bytes
        for _, sha in candidates:
            if left <= target:
                break
            chosen.append(sha)
            left -= self.objects[sha].size
        if not chosen:
            log.warning(
                "the bucket cannot get under storage.max_size %d: what is left is uploaded files",
                self.max_size,
            )
            return
        freed = self.total_bytes - left
        try:
            await self.store.delete(chosen)  # each one forgotten as its batch goes
        except ObjectStoreError as exc:
            log.warning("bucket eviction failed, tried again at the next put: %s", exc)
            return
        await loop.run_in_executor(None, self._drop_copies, chosen)
        self.metrics.object_store_evictions.inc(len(chosen))
        self.metrics.object_store_bytes.set(self.total_bytes)
        self.metrics.object_store_files.set(len(self.objects))
        log.info(
            "evicted %d mirror files (%d bytes) from %s: storage.max_size %d",
            len(chosen),
            freed,
            self.store.where,
            self.max_size,
        )

    def _drop_copies(self, shas: list[str]) -> None:
        """The disk copies go too: an evicted file is fetched from upstream again."""
        for sha in shas:
            self.store.local.remove(sha)
