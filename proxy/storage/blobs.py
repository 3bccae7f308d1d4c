"""Content-addressed file store: a stored file is always complete and verified.

Files are written to `tmp/`, fsynced and renamed into `blobs/<sha[:2]>/<sha>`; a rename is atomic,
so a reader sees either nothing or the whole file. Aliases map keys that are not a sha256 (files
published without a hash, `.metadata` files) to the blob holding their bytes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import hashlib
import itertools
import logging
import os
import time
import weakref
from pathlib import Path

from proxy.errors import StorageError, StorageFullError
from proxy.model import check_filename, is_sha256

log = logging.getLogger(__name__)


def _translate_os_error(exc: OSError, where: Path) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageFullError(str(where))
    return StorageError(f"storage error under {where}: {exc.strerror or exc}")


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


class BlobStore:
    """Owns `<data_dir>/blobs`, `<data_dir>/aliases` and `<data_dir>/tmp`."""

    def __init__(self, data_dir: Path) -> None:
        #: fsync can take milliseconds; it gets its own threads so reads never queue behind it
        self._commit_pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="commit")
        self.root = data_dir
        self._names = itertools.count(time.time_ns())  #: temp names: unique without urandom
        self.blobs = data_dir / "blobs"
        self.aliases = data_dir / "aliases"
        self.tmp = data_dir / "tmp"

    def open(self) -> None:
        """Create the layout and drop temp files a crash left behind (they were never complete)."""
        for path in (self.blobs, self.aliases, self.tmp):
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
        return path if path.is_file() else None

    def resolve_alias(self, alias: str) -> str | None:
        try:
            value = (self.aliases / alias).read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return value if is_sha256(value) else None

    def find_key(self, key: str) -> Path | None:
        """A blob by sha256 or by alias."""
        sha = key if is_sha256(key) else self.resolve_alias(key)
        return self.find(sha) if sha else None

    def create_temp(self) -> TempBlob:
        path = self.tmp / f"{next(self._names):x}-{os.getpid()}.part"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise _translate_os_error(exc, self.tmp) from exc
        return TempBlob(path, fd)

    def _commit(self, temp: TempBlob, aliases: tuple[str, ...]) -> Path:
        sha = temp.hexdigest()
        final = self.path_for(sha)
        os.fsync(temp.fd)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp.path.replace(final)
        for alias in aliases:
            self._write_alias(alias, sha)
        return final

    def _write_alias(self, alias: str, sha: str) -> None:
        check_filename(alias)
        tmp = self.tmp / f"{next(self._names):x}-{os.getpid()}.alias"
        tmp.write_text(sha)
        tmp.replace(self.aliases / alias)

    async def commit(self, temp: TempBlob, aliases: tuple[str, ...] = ()) -> Path:
        """fsync and rename the verified temp file into place; the temp fd stays readable."""
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._commit_pool, self._commit, temp, aliases
            )
        except OSError as exc:
            raise _translate_os_error(exc, self.blobs) from exc

    def _store_bytes(self, data: bytes, aliases: tuple[str, ...]) -> Path:
        temp = self.create_temp()
        try:
            temp.write_sync(data)
            return self._commit(temp, aliases)
        finally:
            temp.close()

    async def store_bytes(self, data: bytes, aliases: tuple[str, ...] = ()) -> Path:
        """Store a small body (a .metadata file) under its sha256, in one trip to a thread."""
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._commit_pool, self._store_bytes, data, aliases
            )
        except OSError as exc:
            raise _translate_os_error(exc, self.blobs) from exc
