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
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
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
#: another writer created the key first (412), or is completing it right now (409, AWS)
_TAKEN = frozenset({"412", "PreconditionFailed", "409", "ConditionalRequestConflict"})
#: a store that does not know conditional writes: put as before, content-addressed anyway
_NO_CONDITIONS = frozenset({"501", "NotImplemented"})
_DELETE_BATCH = 1000  #: the most keys one DeleteObjects takes


@dataclass(frozen=True, slots=True)
class BucketObject:
    """One blob in the bucket, as a listing gives it."""

    sha256: str
    size: int
    modified: float  #: epoch seconds of its put


class S3BlobStore:
    """The `BlobStore` of `storage.backend: s3`: the bucket holds every blob, the disk a copy."""

    def __init__(self, cfg: S3Config, local: LocalBlobStore, metrics: Metrics | None = None):
        self.cfg = cfg
        self.local = local
        self.metrics = metrics
        self.where = where(cfg)  #: names the store in errors and logs
        self._session: AioSession = get_session()
        self._exit: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._conditional = True  #: cleared when the store refuses If-None-Match
        #: who keeps the bucket's accounting (bucket eviction): told of every put and read
        self.on_put: Callable[[str, int, bool], None] | None = None
        self.on_read: Callable[[str], None] | None = None
        self.on_gone: Callable[[str], None] | None = None  #: deleted or quarantined

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

    @property
    def blob_prefix(self) -> str:
        return f"{self.cfg.prefix}blobs/"

    def quarantine_key(self, sha256: str) -> str:
        return f"{self.cfg.prefix}quarantine/{sha256}"

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
        await self.put(stored, hosted=True)
        return stored

    async def store_bytes(self, data: bytes, aliases: tuple[str, ...] = ()) -> BlobLocation:
        stored = await self.local.store_bytes(data, aliases)
        await self.put(stored, hosted=True)
        return stored

    async def locate(self, key: str) -> BlobLocation | None:
        """On this disk: sendfile. Else the bucket's object, streamed or redirected to."""
        stored = await self.local.locate(key)
        if isinstance(stored, LocalFile):
            self._read(stored.path.name)
            return stored
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
        self._read(sha)
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

    def _read(self, sha256: str) -> None:
        if self.on_read is not None:
            self.on_read(sha256)

    async def put(self, stored: LocalFile, *, hosted: bool = False) -> bool:
        """Put a verified local file under its sha256, unless the bucket has it already.

        The put is a conditional create (If-None-Match: *), so of two servers putting the
        same blob at once (a primary and a replica on one bucket) one uploads and the other
        learns it lost; True when this call created the object.
        """
        sha = stored.path.name
        created = False
        if await self.size_of(sha) != stored.size:
            created = await self._create(stored, self.key_for(sha))
        if self.on_put is not None:
            self.on_put(sha, stored.size, hosted)
        if created and self.metrics is not None:
            self.metrics.object_store_bytes_put.inc(stored.size)
        return created

    async def _create(self, stored: LocalFile, key: str) -> bool:
        try:
            try:
                await self._upload(stored, key, self._conditions())
            except ClientError as exc:
                if self._conditional and _code(exc) in _NO_CONDITIONS:
                    self._conditional = False
                    log.info("object store %s takes no conditional puts", self.where)
                    await self._upload(stored, key, {})
                else:
                    raise
        except ClientError as exc:
            if _code(exc) in _TAKEN:
                return False  # another writer made it (or is making it): same bytes
            raise self._error(exc, "put") from exc
        except BotoCoreError as exc:
            raise self._error(exc, "put") from exc
        return True

    def _conditions(self) -> dict[str, str]:
        return {"IfNoneMatch": "*"} if self._conditional else {}

    async def _upload(self, stored: LocalFile, key: str, conditions: dict[str, str]) -> None:
        if stored.size <= self.cfg.part_size:
            body = await asyncio.get_running_loop().run_in_executor(None, stored.path.read_bytes)
            await self._client.put_object(Bucket=self.cfg.bucket, Key=key, Body=body, **conditions)
        else:
            await self._put_multipart(stored.path, key, conditions)

    async def _put_multipart(self, path: Path, key: str, conditions: dict[str, str]) -> None:
        """Parts of `part_size`; the object appears only at completion, aborted otherwise."""
        made = await self._client.create_multipart_upload(Bucket=self.cfg.bucket, Key=key)
        upload_id = made["UploadId"]
        loop = asyncio.get_running_loop()
        try:
            parts = []
            fh = await loop.run_in_executor(None, path.open, "rb")
            try:
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
            finally:
                await loop.run_in_executor(None, fh.close)
            await self._client.complete_multipart_upload(
                Bucket=self.cfg.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **conditions,
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

    # ---- the bucket as a whole: eviction, verify, scrubbing, cleanup ----------------------

    async def objects(self, after: str = "") -> AsyncGenerator[BucketObject, None]:
        """Every blob in the bucket, in key order (pages of 1,000 keys); `after`: only those
        whose sha256 sorts after it (a resumed scrub pass lists from there)."""
        start = {"StartAfter": self.key_for(after)} if after else {}
        try:
            pages = self._client.get_paginator("list_objects_v2")
            listing = pages.paginate(Bucket=self.cfg.bucket, Prefix=self.blob_prefix, **start)
            async for page in listing:
                for item in page.get("Contents", ()):
                    sha = str(item["Key"]).rsplit("/", 1)[-1]
                    if is_sha256(sha):
                        yield BucketObject(sha, int(item["Size"]), item["LastModified"].timestamp())
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list") from exc

    async def delete(self, shas: list[str]) -> None:
        """Remove these blobs from the bucket (not from this disk), 1,000 keys a request."""
        try:
            for start in range(0, len(shas), _DELETE_BATCH):
                batch = shas[start : start + _DELETE_BATCH]
                keys = [{"Key": self.key_for(sha)} for sha in batch]
                await self._client.delete_objects(
                    Bucket=self.cfg.bucket, Delete={"Objects": keys, "Quiet": True}
                )
                if self.on_gone is not None:
                    for sha in batch:
                        self.on_gone(sha)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "delete") from exc

    async def quarantine(self, sha256: str) -> str:
        """Move a corrupt blob to `{prefix}quarantine/`, where no read finds it; its new key."""
        target = self.quarantine_key(sha256)
        try:
            await self._client.copy_object(
                Bucket=self.cfg.bucket,
                Key=target,
                CopySource={"Bucket": self.cfg.bucket, "Key": self.key_for(sha256)},
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "copy") from exc
        await self.delete([sha256])
        return target

    async def digest(
        self, sha256: str, pace: Callable[[int], Awaitable[None]] | None = None
    ) -> str | None:
        """The sha256 of the object's bytes as the bucket returns them; None if it is gone.

        `pace(n)` is awaited after each chunk of n bytes (the scrubber's rate limit).
        """
        digest = hashlib.sha256()
        try:
            got = await self._client.get_object(Bucket=self.cfg.bucket, Key=self.key_for(sha256))
            async with got["Body"] as body:
                while chunk := await body.read(CHUNK):
                    digest.update(chunk)
                    if pace is not None:
                        await pace(len(chunk))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self._error(exc, "get") from exc
        except BotoCoreError as exc:
            raise self._error(exc, "get") from exc
        return digest.hexdigest()

    async def abort_stale_uploads(self, older_than: float) -> int:
        """Abort multipart uploads under our prefix started more than `older_than` seconds
        ago (a server killed mid-put leaves its parts behind, billed); how many."""
        cutoff = time.time() - older_than
        aborted = 0
        try:
            pages = self._client.get_paginator("list_multipart_uploads")
            async for page in pages.paginate(Bucket=self.cfg.bucket, Prefix=self.blob_prefix):
                for upload in page.get("Uploads", ()):
                    if upload["Initiated"].timestamp() > cutoff:
                        continue
                    await self._client.abort_multipart_upload(
                        Bucket=self.cfg.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted += 1
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "abort uploads") from exc
        return aborted


def where(cfg: S3Config) -> str:
    """The store as errors, logs and reports name it."""
    return f"s3://{cfg.bucket}/{cfg.prefix}"


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
            try:
                size = (await loop.run_in_executor(None, path.stat)).st_size
            except FileNotFoundError:
                return  # evicted meanwhile
            if await store.size_of(sha) == size:
                done.present += 1
                return
            if await loop.run_in_executor(None, file_sha256, path) != sha:
                done.corrupt.append(sha)
                return
            await store.put(LocalFile(path, size))
            done.copied += 1
            done.bytes += size

    await asyncio.gather(*(one(sha) for sha in sorted(local.entries)))
    return done


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
