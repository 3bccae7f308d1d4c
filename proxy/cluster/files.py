"""A replica's private files: copied from the primary in the background, newest first, or on demand.

The replayed rows name files by sha256; the bytes come from the primary's
`/+replication/files/{sha256}`, are hashed as they arrive, and become visible only if the hash
matches (the local store's temp-verify-commit). `ReplicaBlobs` is the blob store a replica's
private indexes see: a file not copied yet is fetched while the client waits.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any

import aiohttp

from proxy.cluster.protocol import SECRET_HEADER
from proxy.config import ReplicationConfig
from proxy.errors import HashMismatchError, StorageError, UpstreamUnavailableError
from proxy.metrics import Metrics
from proxy.model import is_sha256, mask_url
from proxy.storage.blobs import BlobLocation, BlobStore, LocalBlobStore, RemoteObject, TempBlob
from proxy.storage.changes import Change, FileUploaded, WheelhouseScanned
from proxy.storage.db import Database
from proxy.tasks import SingleFlight

log = logging.getLogger(__name__)

CHUNK = 256 * 1024


def _hosted_blobs(conn: sqlite3.Connection) -> list[str]:
    """Every blob the hosted rows name, oldest upload first (the copier takes the newest first)."""
    rows = (
        conn.execute("SELECT sha256, metadata_sha256 FROM files ORDER BY uploaded").fetchall()
        + conn.execute("SELECT sha256, metadata_sha256 FROM wheelhouse").fetchall()
    )
    return [sha for row in rows for sha in row if sha]


class PrimaryFiles:
    """Copies the primary's files here; at most `replication.file_copies` at a time."""

    def __init__(
        self,
        disk: LocalBlobStore,
        db: Database,
        session: aiohttp.ClientSession,
        cfg: ReplicationConfig,
        metrics: Metrics,
        store: BlobStore | None = None,
    ) -> None:
        self.disk = disk
        #: where copies go and are looked for first: the disk, or a bucket the primary shares
        #: (a blob the primary put there is never copied from it)
        self.local: BlobStore = store if store is not None else disk
        self.db = db
        self.session = session
        self.cfg = cfg
        self.primary = cfg.primary_url.rstrip("/")
        self._flights: SingleFlight[str, BlobLocation] = SingleFlight("copy from primary")
        self._wanted: list[str] = []  #: a stack: the newest is copied first
        self._queued: set[str] = set()
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        metrics.replication_files_pending.set_function(lambda: self.pending)

    @property
    def pending(self) -> int:
        """Files named by replicated rows and not copied here yet."""
        return len(self._queued)

    async def start(self, after: asyncio.Event | None = None) -> None:
        """Copy in the background once `after` is set (the first catch-up: replay comes first)."""
        await self.rescan()
        self.db.add_listener(self._changed)
        self.db.add_reset_listener(self.rescan)
        self._workers = [
            asyncio.create_task(self._work(after), name=f"file copier {n}")
            for n in range(self.cfg.file_copies)
        ]

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await self._flights.close()

    async def rescan(self) -> None:
        """Want each blob the hosted rows name that is not here (at start, after a snapshot)."""
        self.want(await self.db.read(_hosted_blobs))

    def _changed(self, serial: int, change: Change) -> None:
        if isinstance(change, FileUploaded):
            self.want([change.sha256, change.metadata_sha256 or ""])
        elif isinstance(change, WheelhouseScanned):
            self.want(
                s for f in change.added for s in (f.file.sha256, f.file.metadata_sha256 or "")
            )

    def want(self, shas: Iterable[str]) -> None:
        for sha in shas:
            if sha and sha not in self._queued and self.disk.find(sha) is None:
                self._queued.add(sha)
                self._wanted.append(sha)
        if self._wanted:
            self._wake.set()

    async def _work(self, after: asyncio.Event | None) -> None:
        if after is not None:
            await after.wait()
        while True:
            while not self._wanted:
                self._wake.clear()
                await self._wake.wait()
            sha = self._wanted.pop()
            try:
                await self.fetch(sha)
            except (UpstreamUnavailableError, HashMismatchError, StorageError) as exc:
                log.warning("copying %s from the primary failed: %s", sha, exc)
                await asyncio.sleep(1.0)  # the primary is likely gone: do not spin
                self._wanted.insert(0, sha)  # tried again after the others
                continue
            self._queued.discard(sha)

    def _get(self, sha: str, method: str = "GET") -> Any:
        url = f"{self.primary}/+replication/files/{sha}"
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=60)
        return self.session.request(
            method, url, headers={SECRET_HEADER: self.cfg.secret}, timeout=timeout
        )

    async def size_on_primary(self, sha: str) -> int:
        """The size of a blob the primary has (HEAD); UpstreamUnavailableError if it cannot say."""
        url = mask_url(f"{self.primary}/+replication/files/{sha}")
        try:
            async with self._get(sha, "HEAD") as resp:
                if resp.status != 200 or resp.content_length is None:
                    raise UpstreamUnavailableError(url, f"answered {resp.status}")
                return int(resp.content_length)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailableError(url, str(exc) or type(exc).__name__) from exc

    async def stream(self, sha: str) -> AsyncGenerator[bytes, None]:
        """The blob from the primary as it arrives, stored on the way (the last chunk held back
        until its sha256 matched, so a client never gets a complete body that fails it)."""
        url = mask_url(f"{self.primary}/+replication/files/{sha}")
        temp = self.local.create_temp()
        try:
            held = b""
            try:
                async with self._get(sha) as resp:
                    if resp.status != 200:
                        raise UpstreamUnavailableError(url, f"answered {resp.status}")
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        await temp.write(chunk)
                        if held:
                            yield held
                        held = chunk
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise UpstreamUnavailableError(url, str(exc) or type(exc).__name__) from exc
            if temp.hexdigest() != sha:
                raise HashMismatchError(url, sha, sha, temp.hexdigest())
            await self.local.commit(temp)
            self._queued.discard(sha)
        except BaseException:
            temp.unlink()
            raise
        if held:
            yield held

    async def fetch(self, sha: str) -> BlobLocation:
        """The blob, copied from the primary now if it is not here yet (one copy per sha)."""
        stored = await self.local.locate(sha)
        if stored is not None:
            return stored
        return await self._flights.run(sha, lambda: self._copy(sha))

    async def _copy(self, sha: str) -> BlobLocation:
        url = f"{self.primary}/+replication/files/{sha}"
        temp = self.local.create_temp()
        try:
            try:
                async with self._get(sha) as resp:
                    if resp.status != 200:
                        raise UpstreamUnavailableError(mask_url(url), f"answered {resp.status}")
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        await temp.write(chunk)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise UpstreamUnavailableError(
                    mask_url(url), str(exc) or type(exc).__name__
                ) from exc
            if temp.hexdigest() != sha:
                raise HashMismatchError(mask_url(url), sha, sha, temp.hexdigest())
            stored = await self.local.commit(temp)
        except BaseException:
            temp.unlink()
            raise
        self._queued.discard(sha)
        return stored


class ReplicaBlobs:
    """The blob store of a replica's private indexes: the local store, filled from the primary.

    A blob not copied yet is a `RemoteObject`: its bytes stream from the primary to the client
    as they arrive, into a temp file at the same time, the last chunk held back until the
    sha256 matched; then it is stored, and the next request gets it with sendfile.
    """

    def __init__(self, local: BlobStore, files: PrimaryFiles) -> None:
        self.local = local
        self.files = files

    def create_temp(self) -> TempBlob:
        return self.local.create_temp()

    async def commit(self, temp: TempBlob, aliases: tuple[str, ...] = ()) -> BlobLocation:
        return await self.local.commit(temp, aliases)

    async def store_bytes(self, data: bytes, aliases: tuple[str, ...] = ()) -> BlobLocation:
        return await self.local.store_bytes(data, aliases)

    async def locate(self, key: str) -> BlobLocation | None:
        stored = await self.local.locate(key)
        if stored is not None or not is_sha256(key):
            return stored
        return RemoteObject(key, await self.files.size_on_primary(key))

    def open_stream(self, blob: RemoteObject) -> AsyncIterator[bytes]:
        """The primary's blob by its sha256; any other key is the store's own (a bucket)."""
        if is_sha256(blob.key):
            return self.files.stream(blob.key)
        return self.local.open_stream(blob)
