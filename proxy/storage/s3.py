"""Blobs on an S3-compatible object store, with the local store as their disk cache.

Bytes are written as today: to a local temp file, hashed as they arrive, fsynced and renamed
once verified. Only then are they put into the bucket under their sha256
(`{prefix}blobs/{sha[:2]}/{sha}`), so an object there is always complete and verified: a
download whose hash does not match never reaches the store, and a put of a large file is a
multipart upload that S3 makes visible only when it completes (aborted on any failure). A
file not on this disk is a `RemoteObject` streamed from the bucket (into the local cache on
the way, the last chunk held back until the sha256 matched), or with `redirect` a `Redirect`
to a short-lived presigned URL. Credentials come from the AWS chain (environment, shared
config, instance roles), never from wheelwell's config.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from proxy.config import S3Config
from proxy.errors import HashMismatchError, ObjectStoreError
from proxy.metrics import Metrics
from proxy.model import is_sha256
from proxy.storage.blobs import (
    BlobLocation,
    LocalBlobStore,
    LocalFile,
    Redirect,
    RemoteObject,
    TempBlob,
)

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


class S3BlobStore:
    """The `BlobStore` of `storage.backend: s3`: the bucket holds every blob, the disk a copy."""

    def __init__(self, cfg: S3Config, local: LocalBlobStore, metrics: Metrics | None = None):
        self.cfg = cfg
        self.local = local
        self.metrics = metrics
        self.where = f"s3://{cfg.bucket}/{cfg.prefix}"  #: names the store in errors and logs
        self._session: AioSession = get_session()
        self._exit: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the client; a store that cannot be reached now is logged, not fatal."""
        config = AioConfig(
            connect_timeout=self.cfg.connect_timeout,
            read_timeout=self.cfg.read_timeout,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": self.cfg.addressing.value},
            signature_version="s3v4",
        )
        self._exit = contextlib.AsyncExitStack()
        self._client = await self._exit.enter_async_context(
            self._session.create_client(
                "s3",
                endpoint_url=self.cfg.endpoint or None,
                region_name=self.cfg.region or None,
                config=config,
            )
        )
        try:
            await self._client.head_bucket(Bucket=self.cfg.bucket)
        except (ClientError, BotoCoreError) as exc:
            log.warning("object store %s cannot be used yet: %s", self.where, _reason(exc))

    async def close(self) -> None:
        if self._exit is not None:
            await self._exit.aclose()
            self._exit = None

    # ---- keys ------------------------------------------------------------------------------

    def key_for(self, sha256: str) -> str:
        return f"{self.cfg.prefix}blobs/{sha256[:2]}/{sha256}"

    def _error(self, exc: BaseException, what: str) -> ObjectStoreError:
        if self.metrics is not None:
            self.metrics.object_store_errors.labels(what).inc()
        return ObjectStoreError(self.where, f"{what}: {_reason(exc)}")

    # ---- the BlobStore protocol ------------------------------------------------------------

    def create_temp(self) -> TempBlob:
        return self.local.create_temp()

    async def commit(self, temp: TempBlob, aliases: tuple[str, ...] = ()) -> BlobLocation:
        """Verified on disk first (the local commit), then put into the bucket."""
        stored = await self.local.commit(temp, aliases)
        await self.put(stored)
        return stored

    async def store_bytes(self, data: bytes, aliases: tuple[str, ...] = ()) -> BlobLocation:
        stored = await self.local.store_bytes(data, aliases)
        await self.put(stored)
        return stored

    async def locate(self, key: str) -> BlobLocation | None:
        """On this disk: sendfile. Else the bucket's object, streamed or redirected to."""
        stored = await self.local.locate(key)
        if stored is not None:
            return stored
        sha = key if is_sha256(key) else None
        if sha is None and self.local.aliases is not None:
            sha = await self.local.aliases.lookup(key)
        if sha is None:
            return None
        size = await self.size_of(sha)
        if size is None:
            return None
        if self.cfg.redirect:
            return Redirect(await self.presign(sha), size)
        return RemoteObject(self.key_for(sha), size, ranged=True)

    def open_stream(self, blob: RemoteObject) -> AsyncIterator[bytes]:
        """`blob.key` is the object's key in the bucket: its last part is the sha256. A part
        (`first`..`last`) is read as it is, not kept: only whole files go to the disk."""
        if blob.first is not None and blob.last is not None:
            return self.stream_part(blob.key, blob.first, blob.last)
        return self.stream(blob.key.rsplit("/", 1)[-1])

    async def stream_part(self, key: str, first: int, last: int) -> AsyncGenerator[bytes, None]:
        try:
            got = await self._client.get_object(
                Bucket=self.cfg.bucket, Key=key, Range=f"bytes={first}-{last}"
            )
            async with got["Body"] as body:
                while chunk := await body.read(CHUNK):
                    yield chunk
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "get") from exc

    # ---- object operations -----------------------------------------------------------------

    async def size_of(self, sha256: str) -> int | None:
        """The object's size, None when the bucket has no such object."""
        try:
            head = await self._client.head_object(Bucket=self.cfg.bucket, Key=self.key_for(sha256))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self._error(exc, "head") from exc
        except BotoCoreError as exc:
            raise self._error(exc, "head") from exc
        return int(head["ContentLength"])

    async def presign(self, sha256: str) -> str:
        url: str = await self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.cfg.bucket, "Key": self.key_for(sha256)},
            ExpiresIn=int(self.cfg.redirect_ttl),
        )
        return url

    async def put(self, stored: LocalFile) -> None:
        """Put a verified local file under its sha256, unless the bucket has it already."""
        sha = stored.path.name
        if await self.size_of(sha) == stored.size:
            return  # content-addressed: the same bytes (another replica, an earlier put)
        key = self.key_for(sha)
        try:
            if stored.size <= self.cfg.part_size:
                body = await asyncio.get_running_loop().run_in_executor(
                    None, stored.path.read_bytes
                )
                await self._client.put_object(Bucket=self.cfg.bucket, Key=key, Body=body)
            else:
                await self._put_multipart(stored.path, key)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "put") from exc
        if self.metrics is not None:
            self.metrics.object_store_bytes_put.inc(stored.size)

    async def _put_multipart(self, path: Path, key: str) -> None:
        """Parts of `part_size`; the object appears only at completion, aborted otherwise."""
        made = await self._client.create_multipart_upload(Bucket=self.cfg.bucket, Key=key)
        upload_id = made["UploadId"]
        loop = asyncio.get_running_loop()
        try:
            parts = []
            with path.open("rb") as fh:
                number = 1
                while data := await loop.run_in_executor(None, fh.read, self.cfg.part_size):
                    done = await self._client.upload_part(
                        Bucket=self.cfg.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                    )
                    parts.append({"ETag": done["ETag"], "PartNumber": number})
                    number += 1
            await self._client.complete_multipart_upload(
                Bucket=self.cfg.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            with contextlib.suppress(ClientError, BotoCoreError):
                await self._client.abort_multipart_upload(
                    Bucket=self.cfg.bucket, Key=key, UploadId=upload_id
                )
            raise

    async def stream(self, sha256: str) -> AsyncGenerator[bytes, None]:
        """The object as it arrives, into the disk cache on the way (the last chunk held back
        until its sha256 matched, so a client never gets a complete body that fails it)."""
        temp = self.local.create_temp()
        try:
            held = b""
            try:
                got = await self._client.get_object(
                    Bucket=self.cfg.bucket, Key=self.key_for(sha256)
                )
                async with got["Body"] as body:
                    while chunk := await body.read(CHUNK):
                        await temp.write(chunk)
                        if held:
                            yield held
                        held = chunk
            except (ClientError, BotoCoreError) as exc:
                raise self._error(exc, "get") from exc
            if temp.hexdigest() != sha256:
                raise HashMismatchError(self.where, sha256, sha256, temp.hexdigest())
            await self.local.commit(temp)
        except BaseException:
            temp.unlink()
            raise
        if held:
            yield held


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _reason(exc: BaseException) -> str:
    """The store's error in one line; botocore's messages carry no credentials."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")
    return str(exc) or type(exc).__name__


class MirrorView:
    """The object store as mirror indexes use it: a cache, so a store that is down is a miss.

    A mirror file can always be fetched again: when the bucket cannot be read it is looked
    for on this disk only (else fetched from upstream), and when it cannot be written the
    verified copy on this disk is used; each failure is logged and counted, none fails a
    download. Hosted files use the store itself, where a failure is the client's 503.
    """

    def __init__(self, store: S3BlobStore) -> None:
        self.store = store

    def create_temp(self) -> TempBlob:
        return self.store.create_temp()

    async def commit(self, temp: TempBlob, aliases: tuple[str, ...] = ()) -> BlobLocation:
        stored = await self.store.local.commit(temp, aliases)
        await self._put(stored)
        return stored

    async def store_bytes(self, data: bytes, aliases: tuple[str, ...] = ()) -> BlobLocation:
        stored = await self.store.local.store_bytes(data, aliases)
        await self._put(stored)
        return stored

    async def _put(self, stored: LocalFile) -> None:
        try:
            await self.store.put(stored)
        except ObjectStoreError as exc:
            log.warning("mirror file %s kept on this disk only: %s", stored.path.name, exc)

    async def locate(self, key: str) -> BlobLocation | None:
        try:
            return await self.store.locate(key)
        except ObjectStoreError as exc:
            log.warning("looking for %s on this disk only: %s", key, exc)
            return await self.store.local.locate(key)

    def open_stream(self, blob: RemoteObject) -> AsyncIterator[bytes]:
        return self.store.open_stream(blob)


@dataclass(slots=True)
class Migration:
    """What `wheelwell storage migrate --to s3` did."""

    copied: int = 0
    present: int = 0  #: in the bucket already (an earlier run, another server)
    corrupt: list[str] = field(default_factory=list)  #: failed their sha256: not copied
    bytes: int = 0

    def lines(self, where: str) -> list[str]:
        lines = [
            f"copied {self.copied} files ({self.bytes} bytes) to {where}; "
            f"{self.present} were there already"
        ]
        lines += [f"not copied, fails its sha256: {sha}" for sha in self.corrupt]
        return lines


async def migrate(store: S3BlobStore, *, parallel: int = 4) -> Migration:
    """Put every blob of the local store into the bucket, each re-hashed first.

    Safe while a server runs on the data dir (it only reads the files) and idempotent: a run
    after switching to `backend: s3` copies what was written in between.
    """
    local = store.local
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, local.scan)
    done = Migration()
    gate = asyncio.Semaphore(parallel)

    async def one(sha: str) -> None:
        async with gate:
            path = local.find(sha)
            if path is None:
                return  # evicted meanwhile
            size = path.stat().st_size
            if await store.size_of(sha) == size:
                done.present += 1
                return
            if await loop.run_in_executor(None, _file_sha256, path) != sha:
                done.corrupt.append(sha)
                return
            await store.put(LocalFile(path, size))
            done.copied += 1
            done.bytes += size

    await asyncio.gather(*(one(sha) for sha in sorted(local.entries)))
    return done


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
