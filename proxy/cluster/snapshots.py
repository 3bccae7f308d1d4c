"""Snapshots: the primary's whole state at one serial, so its changelog can be compacted.

A replica starts from the newest snapshot when the entries it needs are gone (a new replica,
or one away for longer than the snapshots are kept), then follows the changelog from the
snapshot's serial. The primary takes one every `replication.snapshot_interval` when anything
changed, keeps `replication.snapshots_keep` of them, and deletes the changelog entries the
oldest one it keeps already holds (devpi keeps its changelog for ever).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiohttp

from proxy.cluster.protocol import SECRET_HEADER, SNAPSHOT_SERIAL_HEADER, SNAPSHOT_SHA256_HEADER
from proxy.errors import StorageError, UpstreamUnavailableError, WheelwellError
from proxy.model import mask_url
from proxy.storage.db import Database

log = logging.getLogger(__name__)

_NAME = re.compile(r"^snapshot-(\d{12})\.sqlite3$")
CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Snapshot:
    serial: int
    path: Path
    sha256: str
    size: int
    taken_at: float

    def as_json(self) -> dict[str, object]:
        return {
            "serial": self.serial,
            "sha256": self.sha256,
            "size": self.size,
            "taken_at": self.taken_at,
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_and_hash(fh: BinaryIO, digest: hashlib._Hash, chunk: bytes) -> None:
    fh.write(chunk)
    digest.update(chunk)


def check_database(path: Path) -> None:
    """The file is an intact SQLite database with a changelog table (StorageError if not)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            conn.execute("SELECT 1 FROM changelog LIMIT 1").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StorageError(f"snapshot {path.name} is not a wheelwell database: {exc}") from exc
    if verdict != "ok":
        raise StorageError(f"snapshot {path.name} is damaged: {verdict}")


class Snapshots:
    """The primary's snapshots under DATA_DIR/snapshots, the newest first in `kept`."""

    def __init__(
        self, db: Database, directory: Path, *, keep: int, interval: float, compact: bool
    ) -> None:
        self.db = db
        self.directory = directory
        self.keep = keep
        self.interval = interval
        self.compact = compact
        self.kept: list[Snapshot] = []
        self.compacted_upto = 0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.kept = await asyncio.get_running_loop().run_in_executor(None, self._scan)
        self._task = asyncio.create_task(self._every_interval(), name="replication snapshots")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _scan(self) -> list[Snapshot]:
        found = []
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            sidecar = path.with_suffix(".sha256")
            if match is None:
                if path.name.endswith(".part"):
                    path.unlink(missing_ok=True)  # a snapshot a crash interrupted
                continue
            if not sidecar.exists():
                path.unlink(missing_ok=True)
                continue
            stat = path.stat()
            sha = sidecar.read_text().strip()
            found.append(Snapshot(int(match.group(1)), path, sha, stat.st_size, stat.st_mtime))
        return sorted(found, key=lambda s: s.serial, reverse=True)

    def newest(self) -> Snapshot | None:
        return self.kept[0] if self.kept else None

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            newest = self.newest()
            if self.db.serial > (newest.serial if newest else 0):
                try:
                    await self.take()
                except (OSError, WheelwellError) as exc:
                    log.error("replication snapshot failed: %s", exc)

    async def take(self) -> Snapshot:
        """Snapshot now; then drop the oldest beyond `keep` and compact behind the oldest kept."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            temp = self.directory / f"snapshot-{time.time_ns()}.part"
            try:
                serial = await self.db.snapshot_to(temp)
                sha = await loop.run_in_executor(None, _sha256, temp)
                path = self.directory / f"snapshot-{serial:012d}.sqlite3"
                path.with_suffix(".sha256").write_text(sha + "\n")
                temp.replace(path)
            finally:
                temp.unlink(missing_ok=True)
            snapshot = Snapshot(serial, path, sha, path.stat().st_size, time.time())
            self.kept = [snapshot, *(s for s in self.kept if s.serial != serial)]
            for old in self.kept[self.keep :]:
                old.path.unlink(missing_ok=True)
                old.path.with_suffix(".sha256").unlink(missing_ok=True)
            self.kept = self.kept[: self.keep]
            log.info("replication snapshot at serial %d (%d bytes)", serial, snapshot.size)
            if self.compact:
                upto = self.kept[-1].serial
                removed = await self.db.compact(upto)
                self.compacted_upto = max(self.compacted_upto, upto)
                if removed:
                    log.info("changelog compacted: %d entries up to serial %d", removed, upto)
            return snapshot

    def report(self) -> dict[str, object]:
        return {
            "kept": [s.as_json() for s in self.kept],
            "compacted_upto": self.compacted_upto,
        }


async def fetch_snapshot(
    session: aiohttp.ClientSession, primary: str, secret: str, directory: Path
) -> tuple[Path, int]:
    """The primary's newest snapshot, downloaded, hash-checked and opened once: (path, serial)."""
    url = f"{primary}/+replication/snapshot"
    temp = directory / f"snapshot-{time.time_ns()}.part"
    digest = hashlib.sha256()
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=60)
    try:
        try:
            async with session.get(url, headers={SECRET_HEADER: secret}, timeout=timeout) as resp:
                if resp.status != 200:
                    raise UpstreamUnavailableError(mask_url(url), f"answered {resp.status}")
                serial = int(resp.headers.get(SNAPSHOT_SERIAL_HEADER, "-1"))
                expected = resp.headers.get(SNAPSHOT_SHA256_HEADER, "")
                loop = asyncio.get_running_loop()
                with temp.open("wb") as fh:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        # a snapshot is the whole database: its writes and hashing stay off the loop
                        await loop.run_in_executor(None, _write_and_hash, fh, digest, chunk)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamUnavailableError(mask_url(url), str(exc) or type(exc).__name__) from exc
        if serial < 0 or digest.hexdigest() != expected:
            raise StorageError(f"snapshot from {mask_url(url)} does not match its sha256")
        await asyncio.get_running_loop().run_in_executor(None, check_database, temp)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, serial
