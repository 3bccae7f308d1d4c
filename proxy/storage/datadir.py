"""The data dir's single writer: one daemon per data dir, checked before anything is opened.

Two daemons on one data dir would both write SQLite and the blob store, and the second would
reset root's password under the first. The lock is an flock on `wheelwell.lock` (released by
the kernel when the process dies, kill -9 included); the file names the holder's pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from proxy.errors import WheelwellError

LOCK_NAME = "wheelwell.lock"


class DataDirError(WheelwellError):
    """The data dir cannot be used: not writable, or held by another wheelwell."""


class DataDirLock:
    """Held from start-up to exit by `wheelwell serve`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        """Create the dir if needed and take the lock; DataDirError saying why not."""
        path = self.data_dir / LOCK_NAME
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DataDirError(
                f"cannot use data dir {self.data_dir}: {exc.strerror or exc}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise DataDirError(
                f"data dir {self.data_dir} is in use by another wheelwell ({who}); "
                "stop it, or give this one its own --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def announce(self, url: str) -> None:
        """Record where the daemon listens, after the pid (read by `wheelwell healthcheck`)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n{url}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().partition("\n")[0].strip()
        return int(text) if text.isdigit() else None
    except (OSError, UnicodeDecodeError):
        return None


def announced_url(data_dir: Path) -> str | None:
    """The URL the daemon holding `data_dir` recorded, or None (not running, or not listening)."""
    try:
        lines = (data_dir / LOCK_NAME).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return lines[1].strip() if len(lines) > 1 and "://" in lines[1] else None
