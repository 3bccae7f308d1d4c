"""Single-flight downloads: one upstream GET per file, tee'd to every reader as bytes arrive.

The download writes to a temp file; readers follow it with pread, each at its own pace, so memory
stays flat whatever the file size or client count. The last byte is held back from readers until
the sha256 is verified, so a client can never receive a complete body of a file that fails its
check: on a mismatch its connection drops one byte short.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator

from proxy.errors import (
    HashMismatchError,
    StorageError,
    StorageFullError,
    UpstreamError,
    UpstreamUnavailableError,
)
from proxy.metrics import Metrics
from proxy.mirror.upstream import UpstreamClient, conceal_for
from proxy.model import mask_url
from proxy.storage.blobs import BlobLocation, BlobStore, TempBlob
from proxy.tasks import Background

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024


class Download:
    """One file on its way from upstream to the store; readers join with `stream()`."""

    def __init__(
        self,
        key: str,
        url: str,
        filename: str,
        expected_sha256: str | None,
        upstream: UpstreamClient | None = None,
        metrics: Metrics | None = None,
        index: str = "",
    ) -> None:
        self.key = key
        self.index = index  #: the mirror that started it, for its address policy
        self.url = url
        self.filename = filename
        self.expected_sha256 = expected_sha256
        self.content_length: int | None = None
        self.written = 0
        self.done = False  #: finished, successfully or not
        self.verified = False  #: every byte arrived and the sha256 matched
        self.error: BaseException | None = None
        self.stored: BlobLocation | None = None  #: where the committed blob is, once verified
        self.temp: TempBlob | None = None
        self.started = asyncio.Event()  #: upstream headers arrived, or the download failed
        self.finished = asyncio.Event()  #: committed to the store, or failed
        self._progress = asyncio.Event()
        self._upstream = upstream  #: for readers that go on uncached when the store fails
        self._metrics = metrics
        self._readers = 0  #: streams attached to the temp file; it is closed when none is left

    def notify(self) -> None:
        event, self._progress = self._progress, asyncio.Event()
        event.set()

    @property
    def uncached(self) -> bool:
        """The store could not take the file: readers go on with their own upstream request."""
        return isinstance(self.error, StorageError) and self._upstream is not None

    async def wait_started(self) -> None:
        """Raise the download's error if it failed before sending headers."""
        await self.started.wait()
        if self.error is not None and self.written == 0 and not self.uncached:
            raise self.error

    def release(self) -> None:
        """After a failure, close and delete the temp file as soon as no reader is on it."""
        if self.done and self.error is not None and self._readers == 0 and self.temp is not None:
            self.temp.close()
            self.temp = None

    async def stream(self) -> AsyncGenerator[bytes, None]:
        """The file's bytes as they arrive; raises the download's error instead of ending short."""
        self._readers += 1
        attached = True
        try:
            offset = 0
            async for chunk in self._from_temp():
                offset += len(chunk)
                yield chunk
            if self.verified and offset >= self.written:
                return
            attached = False  # the temp file is not needed any more: let its space go now
            self._readers -= 1
            self.release()
            async for chunk in self._pass_through(offset):
                yield chunk
        finally:
            if attached:
                self._readers -= 1
                self.release()

    async def _from_temp(self) -> AsyncIterator[bytes]:
        """Bytes from the temp file; ends early (unverified) when the reader must go uncached."""
        loop = asyncio.get_running_loop()
        offset = 0
        while True:
            complete = self.verified
            failed = self.error is not None and not complete
            if failed or (self.temp is None and self.done):
                if self.uncached:
                    return
                raise self.error or UpstreamUnavailableError(mask_url(self.url), "temp file gone")
            available = self.written if complete else self.written - 1
            if offset < available and self.temp is not None:
                length = min(available - offset, READ_CHUNK)
                data = await loop.run_in_executor(None, self.temp.read_at, offset, length)
                offset += len(data)
                yield data
                continue
            if complete:
                return
            if self.done:
                raise UpstreamUnavailableError(mask_url(self.url), "download ended early")
            await self._progress.wait()

    async def _pass_through(self, sent: int) -> AsyncIterator[bytes]:
        """The whole file again, straight from upstream; `sent` bytes of it went out already.

        It is hashed on the way and its last byte held back, as for a cached download, so a
        client never receives a complete body that fails its sha256.
        """
        assert self._upstream is not None  # noqa: S101 - checked by `uncached`
        if self._metrics is not None:
            reason = "full" if isinstance(self.error, StorageFullError) else "error"
            self._metrics.uncached_downloads.labels(reason).inc()
        digest = hashlib.sha256()
        seen = 0
        held = b""
        async with self._upstream.open_file(self.url, index=self.index) as resp:
            async for chunk in resp.content.iter_chunked(READ_CHUNK):
                digest.update(chunk)
                begin, seen = seen, seen + len(chunk)
                if seen <= sent:
                    continue
                data = held + chunk[max(0, sent - begin) :]
                held, data = data[-1:], data[:-1]
                if data:
                    yield data
        upstream = mask_url(self.url)
        if seen < sent or (self.content_length is not None and seen != self.content_length):
            raise UpstreamUnavailableError(upstream, f"body ended at {seen} bytes")
        actual = digest.hexdigest()
        if self.expected_sha256 and actual != self.expected_sha256:
            raise HashMismatchError(upstream, self.filename, self.expected_sha256, actual)
        if held:
            yield held


class Fetcher:
    """Owns in-flight downloads, so a client that hangs up does not cancel a cache fill."""

    def __init__(self, upstream: UpstreamClient, blobs: BlobStore, metrics: Metrics) -> None:
        self.upstream = upstream
        self.blobs = blobs
        self.metrics = metrics
        #: not a SingleFlight: readers join the Download object itself, synchronously, and
        #: stream it while it is in flight; the task's result is nobody's concern
        self._inflight: dict[str, Download] = {}
        self._tasks = Background()

    def in_flight(self) -> int:
        return len(self._inflight)

    def find(self, key: str) -> Download | None:
        return self._inflight.get(key)

    def fetch(
        self, key: str, url: str, filename: str, expected_sha256: str | None, *, index: str = ""
    ) -> Download:
        """Join the download of `key`, starting it if nobody has."""
        download = self._inflight.get(key)
        if download is not None:
            self.metrics.file_cache.labels("joined").inc()
            return download
        self.metrics.file_cache.labels("miss").inc()
        download = Download(key, url, filename, expected_sha256, self.upstream, self.metrics, index)
        self._inflight[key] = download
        self._tasks.spawn(self._run(download), f"download {filename}")
        return download

    async def _run(self, download: Download) -> None:
        self.metrics.downloads_in_flight.inc()
        try:
            with conceal_for(download.index):  # a user's mirror: no details, even of the body
                await self._download(download)
            log.info(
                "fetched %s (%d bytes) from %s",
                download.filename,
                download.written,
                mask_url(download.url),
                extra={"file": download.filename, "upstream": mask_url(download.url)},
            )
        except StorageError as exc:
            download.error = exc
            log.warning(
                "cannot store %s (%s): its clients get it uncached from upstream",
                download.filename,
                exc,
                extra={"file": download.filename, "upstream": mask_url(download.url)},
            )
        except UpstreamError as exc:
            download.error = exc
            log.warning("download of %s failed: %s", download.filename, exc)
        except asyncio.CancelledError:
            download.error = UpstreamUnavailableError(
                mask_url(download.url), "download cancelled by shutdown"
            )
            raise
        except Exception as exc:
            download.error = exc
            log.exception("download of %s failed unexpectedly", download.filename)
        finally:
            self._finish(download)

    def _finish(self, download: Download) -> None:
        self.metrics.downloads_in_flight.dec()
        self._inflight.pop(download.key, None)
        download.done = True
        download.started.set()
        download.finished.set()
        if download.error is not None and download.temp is not None:
            download.temp.unlink()  # the name now; the fd once the last reader lets go
        download.release()
        download.notify()

    async def _download(self, download: Download) -> None:
        async with self.upstream.open_file(download.url, index=download.index) as resp:
            download.content_length = resp.content_length
            temp = self.blobs.create_temp()  # after the headers: readers learn the length
            download.temp = temp
            download.started.set()
            async for chunk in resp.content.iter_chunked(READ_CHUNK):
                await temp.write(chunk)
                download.written += len(chunk)
                self.metrics.bytes_from_upstream.inc(len(chunk))
                download.notify()
        if download.content_length is not None and download.written != download.content_length:
            raise UpstreamUnavailableError(
                mask_url(download.url),
                f"body ended at {download.written} of {download.content_length} bytes",
            )
        actual = temp.hexdigest()
        if download.expected_sha256 and actual != download.expected_sha256:
            self.metrics.hash_mismatches.inc()
            raise HashMismatchError(
                mask_url(download.url), download.filename, download.expected_sha256, actual
            )
        download.verified = True  # readers may finish now; the commit below is ours to wait for
        download.notify()
        aliases = () if download.key == actual else (download.key,)
        download.stored = await self.blobs.commit(temp, aliases)

    async def close(self, grace: float) -> None:
        """Let in-flight downloads finish within `grace` seconds, then cancel the rest."""
        await self._tasks.close(grace)
