"""Wheelhouse directories: distributions dropped into a folder appear in a private index.

Polling (not inotify) keeps this portable and cheap: one scandir per directory per interval.
A file is hashed and its metadata read only when its size or mtime changed, and what was learnt
is kept in SQLite, so a restart over 10,000 unchanged files hashes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from proxy.distfiles import DEFAULT_METADATA_LIMIT
from proxy.errors import InvalidUploadError, StorageError
from proxy.hosted.private import HostedFile, PrivateIndex
from proxy.hosted.uploads import inspect_distribution
from proxy.storage.blobs import BlobStore
from proxy.storage.changes import HostedRow, WheelhouseFile, WheelhouseScanned
from proxy.storage.db import Database

log = logging.getLogger(__name__)

_EXTENSIONS = (".whl", ".tar.gz", ".zip")
#: files per changelog entry: a first scan of 10,000 files is 20 bounded changes, not one huge one
_CHANGE_BATCH = 500
#: wheelhouse rows shaped like `files` rows, so HostedFile.from_row reads both
_LOAD = (
    "SELECT idx, project, version, filename, sha256, size, requires_python, metadata_sha256, "
    "0 AS yanked, NULL AS yanked_reason, mtime_ns / 1e9 AS uploaded, NULL AS uploader, "
    "summary, description, description_type, path, mtime_ns FROM wheelhouse WHERE idx = ?"
)


@dataclass(frozen=True, slots=True)
class _Seen:
    size: int
    mtime_ns: int
    file: HostedFile


def _listing(dirs: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    """path → (size, mtime_ns) of every distribution file; missing directories are empty."""
    found: dict[str, tuple[int, int]] = {}
    for directory in dirs:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(directory):
                name = entry.name
                if name.startswith(".") or not name.endswith(_EXTENSIONS):
                    continue
                with contextlib.suppress(OSError):
                    st = entry.stat()
                    if entry.is_file():
                        found[str(Path(entry.path).absolute())] = (st.st_size, st.st_mtime_ns)
    return found


def _examine(path: str, index: str, limit: int) -> tuple[HostedFile, bytes | None]:
    """Hash and inspect one file (on a worker thread)."""
    digest = hashlib.sha256()
    file = Path(path)
    with file.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    filename = file.name
    found = inspect_distribution(file, filename, metadata_limit=limit)
    metadata_sha = hashlib.sha256(found.metadata).hexdigest() if found.metadata else None
    st = file.stat()
    hosted = HostedFile(
        index=index,
        project=found.name,
        version=str(found.version),
        filename=filename,
        sha256=digest.hexdigest(),
        size=st.st_size,
        requires_python=found.requires_python,
        metadata_sha256=metadata_sha,
        yanked=False,
        yanked_reason=None,
        uploaded=st.st_mtime,
        uploader=None,
        summary=found.summary,
        description=found.description,
        description_type=found.description_type,
        path=path,
    )
    return hosted, found.metadata


def _record_of(seen: _Seen) -> WheelhouseFile:
    f = seen.file
    row = HostedRow(
        project=f.project,
        version=f.version,
        filename=f.filename,
        sha256=f.sha256,
        size=seen.size,
        requires_python=f.requires_python,
        metadata_sha256=f.metadata_sha256,
        summary=f.summary,
        description=f.description,
        description_type=f.description_type,
    )
    return WheelhouseFile(path=f.path or "", mtime_ns=seen.mtime_ns, file=row)


class Wheelhouse:
    """Keeps one private index's view of its wheelhouse directories current."""

    def __init__(
        self,
        index: PrivateIndex,
        db: Database,
        blobs: BlobStore,
        interval: float,
        metadata_limit: int = DEFAULT_METADATA_LIMIT,
    ) -> None:
        self.metadata_limit = metadata_limit  #: limits.max_metadata_size
        self.index = index
        self.db = db
        self.blobs = blobs
        self.interval = interval
        self._seen: dict[str, _Seen] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load what earlier runs learnt, scan once, then keep polling in the background."""
        rows = await self.db.read(lambda c: c.execute(_LOAD, (self.index.name,)).fetchall())
        for row in rows:
            hosted = HostedFile.from_row(row)
            self._seen[row["path"]] = _Seen(row["size"], row["mtime_ns"], hosted)
        self._publish({s.file.project for s in self._seen.values()})
        await self.scan()
        self._task = asyncio.create_task(self._poll(), name=f"wheelhouse {self.index.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.scan()
            except (OSError, StorageError) as exc:
                log.error("wheelhouse scan of %s failed: %s", self.index.name, exc)

    async def scan(self) -> None:
        loop = asyncio.get_running_loop()
        dirs = self.index.cfg.wheelhouse
        listing = await loop.run_in_executor(None, _listing, dirs)
        removed = [p for p in self._seen if p not in listing]
        changed = [
            p for p, stat in listing.items()
            if p not in self._seen or (self._seen[p].size, self._seen[p].mtime_ns) != stat
        ]  # fmt: skip
        added: list[_Seen] = []
        for path in changed:
            try:
                hosted, metadata = await loop.run_in_executor(
                    None, _examine, path, self.index.name, self.metadata_limit
                )
            except (InvalidUploadError, OSError) as exc:
                log.info("wheelhouse file %s skipped for now: %s", path, exc)
                continue
            if metadata is not None:
                await self.blobs.store_bytes(metadata)  # found by metadata_sha256
            size, mtime_ns = listing[path]
            added.append(_Seen(size, mtime_ns, hosted))
        if removed or added:
            for start in range(0, max(len(removed), len(added)), _CHANGE_BATCH):
                end = start + _CHANGE_BATCH
                await self._record(removed[start:end], added[start:end])

    async def _record(self, removed: list[str], added: list[_Seen]) -> None:
        name = self.index.name
        change = WheelhouseScanned(
            idx=name,
            removed=tuple(_record_of(self._seen[p]) for p in removed),
            added=tuple(_record_of(seen) for seen in added),
        )
        await self.db.commit(change)
        projects = {self._seen[p].file.project for p in removed}
        for p in removed:
            del self._seen[p]
        for seen in added:
            path = seen.file.path or ""
            old = self._seen.get(path)
            if old is not None:
                projects.add(old.file.project)
            self._seen[path] = seen
            projects.add(seen.file.project)
        self._publish(projects)
        log.info(
            "wheelhouse of %s: %d added or changed, %d removed",
            name,
            len(added),
            len(removed),
            extra={"index": name},
        )

    def _publish(self, changed: set[str]) -> None:
        by_project: dict[str, dict[str, HostedFile]] = {}
        for seen in self._seen.values():
            by_project.setdefault(seen.file.project, {})[seen.file.filename] = seen.file
        self.index.set_wheelhouse(by_project, changed)


async def publish_rows(index: PrivateIndex, db: Database) -> None:
    """A replica's view of a wheelhouse: the rows the primary's scans replicated, no scanning."""
    rows = await db.read(lambda c: c.execute(_LOAD, (index.name,)).fetchall())
    by_project: dict[str, dict[str, HostedFile]] = {}
    for row in rows:
        hosted = HostedFile.from_row(row)
        by_project.setdefault(hosted.project, {})[hosted.filename] = hosted
    index.set_wheelhouse(by_project, set(by_project) | set(index.wheelhouse))
