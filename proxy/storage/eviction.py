"""The mirror cache's size: least-recently-used mirror files are evicted; hosted files never are.

Two bounds: `storage.max_size` (the store's bytes) and `storage.keep_free` (free space on the
data dir's file system, whatever else fills it).

Accounting lives in LocalBlobStore (sizes and last access per blob, seeded from the files' mtimes at
start); this module decides what may go. A blob referenced by an uploaded file or its metadata is
protected, whatever its age.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from proxy.metrics import Metrics
from proxy.storage.blobs import LocalBlobStore

log = logging.getLogger(__name__)

_LOW_WATER = 0.9  #: evict down to this share of max_size, so eviction does not run per file
#: past keep_free, free this much more (of keep_free, at most _FREE_SLACK_MAX), for the same reason
_FREE_SLACK = 0.05
_FREE_SLACK_MAX = 256 * 1024**2


@dataclass(frozen=True, slots=True)
class CacheStats:
    files: int
    bytes: int
    protected_files: int
    max_size: int

    def as_json(self) -> dict[str, int]:
        return {
            "files": self.files,
            "bytes": self.bytes,
            "protected_files": self.protected_files,
            "max_size": self.max_size,
        }


def protected_blobs(db_path: Path) -> set[str]:
    """sha256s of uploaded files and their metadata: never evicted (read-only query)."""
    if not db_path.exists():
        return set()
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT sha256, metadata_sha256 FROM files "
            "UNION ALL SELECT NULL, metadata_sha256 FROM wheelhouse"
        ).fetchall()
    except sqlite3.OperationalError:
        return set()
    finally:
        conn.close()
    return {sha for row in rows for sha in row if sha}


def stats(blobs: LocalBlobStore, protected: set[str], max_size: int) -> CacheStats:
    return CacheStats(
        files=len(blobs.entries),
        bytes=blobs.total_bytes,
        protected_files=len(protected & blobs.entries.keys()),
        max_size=max_size,
    )


def free_space(path: Path) -> int:
    """Bytes free for the daemon on the file system holding `path`."""
    return shutil.disk_usage(path).free


def target_bytes(total: int, max_size: int, keep_free: int = 0, free: int = 0) -> int | None:
    """The store size to evict down to, or None when neither bound is crossed."""
    targets = []
    if max_size > 0 and total > max_size:
        targets.append(int(max_size * _LOW_WATER))
    if keep_free > 0 and free < keep_free:
        slack = min(int(keep_free * _FREE_SLACK), _FREE_SLACK_MAX)
        targets.append(total - (keep_free - free) - slack)
    return max(0, min(targets)) if targets else None


def prune(
    blobs: LocalBlobStore, protected: set[str], max_size: int, keep_free: int = 0, free: int = 0
) -> tuple[int, int]:
    """Remove least-recently-used unprotected blobs until under the low-water mark (blocking)."""
    target = target_bytes(blobs.total_bytes, max_size, keep_free, free)
    if target is None:
        return 0, 0
    candidates = sorted(
        (entry.last_access, sha) for sha, entry in blobs.entries.items() if sha not in protected
    )
    removed = freed = 0
    for _, sha in candidates:
        if blobs.total_bytes <= target:
            break
        freed += blobs.remove(sha)
        removed += 1
    return removed, freed


def verify(blobs: LocalBlobStore) -> list[str]:
    """Re-hash every blob; corrupt ones move to `quarantine/` and are reported (blocking)."""
    corrupt = []
    for sha in list(blobs.entries):
        path = blobs.path_for(sha)
        digest = hashlib.sha256()
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(1024 * 1024):
                    digest.update(chunk)
        except FileNotFoundError:
            blobs.forget(sha)
            continue
        if digest.hexdigest() != sha:
            blobs.quarantine(sha)
            corrupt.append(sha)
    return corrupt


class CacheManager:
    """Runs eviction in the background whenever a commit takes the store over `max_size`."""

    def __init__(
        self,
        blobs: LocalBlobStore,
        db_path: Path,
        metrics: Metrics,
        max_size: int,
        keep_free: int = 0,
        free: Callable[[], int] | None = None,
        *,
        protect_hosted: bool = True,
    ) -> None:
        self.blobs = blobs
        #: False when an object store holds every hosted file: their disk copies are cache too
        self.protect_hosted = protect_hosted
        self.db_path = db_path
        self.metrics = metrics
        self.max_size = max_size
        self.keep_free = keep_free
        self._free = free or (lambda: free_space(db_path.parent))
        self._task: asyncio.Task[None] | None = None
        self._short_logged = False  #: the "cannot free enough" warning, once per shortage

    def update_gauges(self) -> None:
        self.metrics.blob_bytes.set(self.blobs.total_bytes)
        self.metrics.blob_files.set(len(self.blobs.entries))

    def committed(self) -> None:
        """Called after every commit; starts an eviction pass when over the limit."""
        self.update_gauges()
        if self._task is not None and not self._task.done():
            return
        free = self._free_now()
        if target_bytes(self.blobs.total_bytes, self.max_size, self.keep_free, free) is not None:
            self._task = asyncio.create_task(self._evict(), name="cache eviction")
        else:
            self._short_logged = False

    def _free_now(self) -> int:
        if self.keep_free <= 0:
            return 0
        try:
            return self._free()
        except OSError:
            return self.keep_free  # unknown: the free-space bound cannot decide anything

    async def _evict(self) -> None:
        loop = asyncio.get_running_loop()
        protected = (
            await loop.run_in_executor(None, protected_blobs, self.db_path)
            if self.protect_hosted
            else set()
        )
        free = await loop.run_in_executor(None, self._free_now)
        removed, freed = await loop.run_in_executor(
            None, prune, self.blobs, protected, self.max_size, self.keep_free, free
        )
        self.metrics.evictions.inc(removed)
        self.update_gauges()
        if removed:
            log.info(
                "evicted %d %s (%d bytes): storage.max_size %d, storage.keep_free %d "
                "(%d bytes were free)",
                removed,
                "mirror files" if self.protect_hosted else "disk copies",
                freed,
                self.max_size,
                self.keep_free,
                free,
            )
        still = target_bytes(
            self.blobs.total_bytes, self.max_size, self.keep_free, self._free_now()
        )
        if still is not None and not self._short_logged:
            self._short_logged = True
            log.warning(
                "the mirror cache cannot get under its bounds: what is left is uploaded files "
                "or other data on the disk (storage.max_size %d, storage.keep_free %d)",
                self.max_size,
                self.keep_free,
            )

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
