"""Content-addressed blob stores: a stored blob is always complete and verified.

`BlobStore` is the interface the rest of the server uses; a lookup answers *where* the bytes are
(`LocalFile | RemoteObject | Redirect`), and the web layer turns that into sendfile, a stream or a
302. `LocalBlobStore` writes to `tmp/`, fsyncs and renames into `blobs/<sha[:2]>/<sha>`; a rename
is atomic, so a reader sees either nothing or the whole file. Aliases map mirror keys that are not
a sha256 (files published without a hash, `.metadata` files) to the blob holding their bytes;
they live in SQLite (`BlobAliases`), as cache: no changelog, rebuilt by fetching again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import functools
import hashlib
import itertools
import logging
import os
import shutil
import sqlite3
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from proxy.errors import StorageError, StorageFullError
from proxy.model import check_filename, is_sha256
from proxy.storage.db import Database

log = logging.getLogger(__name__)


#: a write that fails with one of these means "the disk is full", not "the disk is broken"
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _translate_os_error(exc: OSError, where: Path) -> StorageError:
    """Name the data dir's subdirectory, never the absolute path: error bodies reach clients."""
    if exc.errno in FULL_ERRNOS:
        return StorageFullError(f"{where.name}/")
    return StorageError(f"storage error under {where.name}/: {exc.strerror or exc}")


class TempBlob:
    """A file being written: chunks are appended and hashed off the event loop."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.size = 0
        self._sha256 = hashlib.sha256()
        #: the fd lives as long as this object: a reader that joins a download late can still
        #: read it after the rename, and a number is never closed while someone may read it
        self._close = weakref.finalize(self, os.close, fd)

    def write_sync(self, data: bytes) -> None:
        """Blocking; for callers already on a worker thread."""
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self._sha256.update(data)

    async def write(self, data: bytes) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.write_sync, data)
        except OSError as exc:
            raise _translate_os_error(exc, self.path.parent) from exc
        self.size += len(data)

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()

    def read_at(self, offset: int, length: int) -> bytes:
        """Blocking pread; callers run it in the executor."""
        return os.pread(self.fd, length, offset)

    def unlink(self) -> None:
        """Remove the temp name (a no-op once committed); open readers keep their bytes."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def close(self) -> None:
        self.unlink()
        self._close()


@dataclass(frozen=True, slots=True)
class LocalFile:
    """The blob is a file on this machine: serve it with sendfile."""

    path: Path
    size: int


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """The blob is in an object store: stream it through `BlobStore.open_stream`."""

    key: str  #: what the store that answered names it by (a bucket's key; a primary's sha256)
    size: int
    #: the store can stream a part of it: `first`..`last` (inclusive) asks for that part only
    ranged: bool = False
    first: int | None = None
    last: int | None = None


@dataclass(frozen=True, slots=True)
class Redirect:
    """The client may fetch the blob itself from `url` (a short-lived presigned URL)."""

    url: str
    size: int


BlobLocation = LocalFile | RemoteObject | Redirect


class BlobStore(Protocol):
    """Where verified bytes are kept; every backend keeps the temp-verify-commit guarantee."""

    def create_temp(self) -> TempBlob:
        """A new temp file that a download or upload writes and hashes as bytes arrive."""
        ...

    async def commit(self, temp: TempBlob, aliases: tuple[str, ...] = ()) -> BlobLocation:
        """Make a verified temp file visible under its sha256 (and the aliases)."""
        ...

    async def store_bytes(self, data: bytes, aliases: tuple[str, ...] = ()) -> BlobLocation:
        """Store a small body (core metadata) under its sha256."""
        ...

    async def locate(self, key: str) -> BlobLocation | None:
        """Where the blob of a sha256 or an alias is, or None when it is not stored."""
        ...

    def open_stream(self, blob: RemoteObject) -> AsyncIterator[bytes]:
        """The bytes of a remote object (backends without remote objects raise)."""
        ...


class BlobAliases:
    """Alias → sha256 rows in the database, written behind the blob they name (cache, no log)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._rows: list[tuple[str, str]] = []  #: waiting for the next transaction
        self._next: asyncio.Future[None] | None = None  #: done when `_rows` are written
        self._writer: asyncio.Task[None] | None = None

    async def lookup(self, alias: str) -> str | None:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT sha256 FROM blob_aliases WHERE alias = ?", (alias,)
            ).fetchone()
        )
        return str(row[0]) if row is not None else None

    async def record(self, aliases: tuple[str, ...], sha256: str) -> None:
        """Group commit: what arrives while a transaction runs goes into the next one.

        A burst of metadata files costs one database trip and one WAL fsync, not one each.
        """
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
            self._next.add_done_callback(_retrieve)
        batch = self._next
        self._rows.extend((alias, sha256) for alias in aliases)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_rows(), name="blob aliases writer")
        await asyncio.shield(batch)

    async def _write_rows(self) -> None:
        while self._next is not None:
            rows, batch = self._rows, self._next
            self._rows, self._next = [], None

            try:
                await self.db.write_derived(functools.partial(_insert_aliases, rows=rows))
            except StorageError as exc:  # every caller of this batch sees the error
                batch.set_exception(exc)
            else:
                batch.set_result(None)
            finally:
                if not batch.done():  # cancelled, or an unexpected error: nobody waits forever
                    batch.cancel()

    async def migrate(self, directory: Path) -> int:
        """Milestone 1 kept aliases as files under `aliases/`: move them in, then drop the dir."""
        if not directory.is_dir():  # noqa: ASYNC240 - one stat at start-up
            return 0

        def read() -> list[tuple[str, str]]:
            found = []
            for path in directory.iterdir():
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    value = path.read_text().strip()
                    if is_sha256(value):
                        found.append((path.name, value))
            return found

        loop = asyncio.get_running_loop()
        pairs = await loop.run_in_executor(None, read)

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR IGNORE INTO blob_aliases (alias, sha256) VALUES (?, ?)", pairs
            )

        await self.db.write_derived(write)
        await loop.run_in_executor(None, shutil.rmtree, directory)
        log.info("moved %d blob aliases from %s into the database", len(pairs), directory)
        return len(pairs)


def _insert_aliases(conn: sqlite3.Connection, rows: list[tuple[str, str]]) -> None:
    """One transaction (so one WAL fsync) for the whole batch; the connection autocommits."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("INSERT OR REPLACE INTO blob_aliases (alias, sha256) VALUES (?, ?)", rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a batch's error as seen: its callers may all have been cancelled meanwhile."""
    if not future.cancelled():
        future.exception()


@dataclass(slots=True)
class BlobEntry:
    """Accounting for one stored file: its size and when it was last served."""

    size: int
    last_access: float  #: wall-clock; seeded from the file's mtime at start


class LocalBlobStore:
    """Owns `<data_dir>/blobs` and `<data_dir>/tmp`; `aliases` is None for offline tools."""

    def __init__(self, data_dir: Path, aliases: BlobAliases | None = None) -> None:
        #: fsync can take milliseconds; it gets its own threads so reads never queue behind it
        self._commit_pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="commit")
        self.root = data_dir
        self._names = itertools.count(time.time_ns())  #: temp names: unique without urandom
        self.blobs = data_dir / "blobs"
        self.aliases = aliases
        self.tmp = data_dir / "tmp"
        self.quarantine_dir = data_dir / "quarantine"
        self.entries: dict[str, BlobEntry] = {}
        self.total_bytes = 0
        self._lock = threading.Lock()  #: commits account from worker threads
        self.on_commit: Callable[[], None] | None = None  #: e.g. start an eviction pass

    def scan(self) -> None:
        """Build the size/access accounting from the files on disk (blocking; once at start)."""
        entries: dict[str, BlobEntry] = {}
        for shard in self.blobs.iterdir():
            for path in shard.iterdir() if shard.is_dir() else ():
                if is_sha256(path.name):
                    st = path.stat()
                    entries[path.name] = BlobEntry(st.st_size, st.st_mtime)
        with self._lock:
            self.entries = entries
            self.total_bytes = sum(e.size for e in entries.values())

    def _account(self, sha: str, size: int) -> None:
        with self._lock:
            entry = self.entries.get(sha)
            if entry is None:
                self.entries[sha] = BlobEntry(size, time.time())
                self.total_bytes += size
            else:
                entry.last_access = time.time()

    def remove(self, sha: str) -> int:
        """Delete a blob (eviction); returns the bytes freed. Aliases to it now miss."""
        with contextlib.suppress(FileNotFoundError):
            self.path_for(sha).unlink()
        return self.forget(sha)

    def forget(self, sha: str) -> int:
        with self._lock:
            entry = self.entries.pop(sha, None)
            if entry is None:
                return 0
            self.total_bytes -= entry.size
            return entry.size

    def quarantine(self, sha: str) -> Path:
        """Move a corrupt blob aside for a person to look at; it is fetched again when asked."""
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / sha
        with contextlib.suppress(FileNotFoundError):  # a second reader got there first
            self.path_for(sha).replace(target)
        self.forget(sha)
        return target

    def sha_of(self, path: Path) -> str | None:
        """The sha256 of a path inside `blobs/`, None for files elsewhere (wheelhouses)."""
        if path.parent.parent != self.blobs or not is_sha256(path.name):
            return None
        return path.name

    def wrong_size(self, blob: LocalFile) -> int | None:
        """The size on disk when it is not the recorded `blob.size` (one stat, no hashing).

        None when it is right, and for files the store keeps no record of (wheelhouse files).
        """
        sha = self.sha_of(blob.path)
        if sha is None or sha not in self.entries:
            return None
        try:
            actual = blob.path.stat().st_size
        except FileNotFoundError:
            return 0
        return actual if actual != blob.size else None

    def open(self) -> None:
        """Create the layout and drop temp files a crash left behind (they were never complete)."""
        for path in (self.blobs, self.tmp):
            path.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()

    def close(self) -> None:
        self._commit_pool.shutdown(wait=True)

    def path_for(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.blobs / sha256[:2] / sha256

    def find(self, sha256: str) -> Path | None:
        path = self.path_for(sha256)
        if not path.is_file():
            return None
        entry = self.entries.get(sha256)
        if entry is not None:
            entry.last_access = time.time()  # LRU order for eviction
        return path

    def size_of(self, sha256: str) -> int:
        entry = self.entries.get(sha256)
        return entry.size if entry is not None else 0

    async def locate(self, key: str) -> LocalFile | None:
        """A blob by sha256 or by alias."""
        sha = key if is_sha256(key) else None
        if sha is None and self.aliases is not None:
            sha = await self.aliases.lookup(key)
        path = self.find(sha) if sha else None
        return LocalFile(path, self.size_of(sha)) if path is not None and sha else None

    def open_stream(self, blob: RemoteObject) -> AsyncIterator[bytes]:
        raise StorageError(f"a local store holds no remote object ({blob.key})")

    def create_temp(self) -> TempBlob:
        path = self.tmp / f"{next(self._names):x}-{os.getpid()}.part"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise _translate_os_error(exc, self.tmp) from exc
        return TempBlob(path, fd)

    def _commit(self, temp: TempBlob) -> LocalFile:
        sha = temp.hexdigest()
        final = self.path_for(sha)
        os.fsync(temp.fd)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp.path.replace(final)
        size = final.stat().st_size
        self._account(sha, size)
        return LocalFile(final, size)

    async def _committed(self, stored: LocalFile, aliases: tuple[str, ...]) -> LocalFile:
        """After the rename: record the aliases, then tell the eviction accounting."""
        if aliases:
            for alias in aliases:
                check_filename(alias)
            if self.aliases is not None:
                await self.aliases.record(aliases, stored.path.name)
        if self.on_commit is not None:
            self.on_commit()
        return stored

    async def commit(self, temp: TempBlob, aliases: tuple[str, ...] = ()) -> LocalFile:
        """fsync and rename the verified temp file into place; the temp fd stays readable."""
        try:
            stored = await asyncio.get_running_loop().run_in_executor(
                self._commit_pool, self._commit, temp
            )
        except OSError as exc:
            raise _translate_os_error(exc, self.blobs) from exc
        return await self._committed(stored, aliases)

    def _store_bytes(self, data: bytes) -> LocalFile:
        temp = self.create_temp()
        try:
            temp.write_sync(data)
            return self._commit(temp)
        finally:
            temp.close()

    async def store_bytes(self, data: bytes, aliases: tuple[str, ...] = ()) -> LocalFile:
        """Store a small body (a .metadata file) under its sha256, in one trip to a thread."""
        try:
            stored = await asyncio.get_running_loop().run_in_executor(
                self._commit_pool, self._store_bytes, data
            )
        except OSError as exc:
            raise _translate_os_error(exc, self.blobs) from exc
        return await self._committed(stored, aliases)
