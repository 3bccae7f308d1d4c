"""Uploads into private indexes (the legacy API twine and uv publish use), yanks and deletes.

A file is checked completely (name, version, digests, a readable archive whose metadata agrees)
before anything is stored; then the blob is committed and its row and changelog entry land in one
transaction, so nothing partial is ever visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

from packaging.version import InvalidVersion, Version

from proxy.distfiles import (
    DEFAULT_METADATA_LIMIT,
    UPLOAD_SDIST_EXTENSIONS,
    DamagedArchiveError,
    DistFile,
    DistKind,
    InvalidDistFilenameError,
    MetadataTooLargeError,
    NotADistributionError,
    UnreadableArchiveError,
    load_metadata,
    parse_filename,
)
from proxy.errors import ConflictError, InvalidUploadError, UploadMetadataTooLargeError
from proxy.hosted.auth import Identity
from proxy.hosted.private import HostedFile, PrivateIndex
from proxy.metrics import Metrics
from proxy.model import NormalizedName, check_filename, normalize
from proxy.storage.blobs import BlobStore, TempBlob
from proxy.storage.changes import (
    FileDeleted,
    FileUploaded,
    ReleaseDeleted,
    ReleaseYanked,
    UnchangedError,
)
from proxy.storage.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Inspected:
    """What the archive itself says."""

    name: NormalizedName
    version: Version
    metadata: bytes | None  #: wheel METADATA / sdist PKG-INFO
    requires_python: str | None
    summary: str
    description: str
    description_type: str


def parse_dist_filename(filename: str) -> tuple[NormalizedName, Version, bool]:
    """(project, version, is_wheel) from a distribution file name, or InvalidUploadError."""
    dist = _parse_upload_filename(filename)
    return dist.project, dist.version, dist.kind is DistKind.WHEEL


def _parse_upload_filename(filename: str) -> DistFile:
    try:
        return parse_filename(filename, UPLOAD_SDIST_EXTENSIONS)
    except NotADistributionError as exc:
        raise InvalidUploadError(
            f"'{filename}' is neither a wheel nor an sdist (.tar.gz, .zip)"
        ) from exc
    except InvalidDistFilenameError as exc:
        raise InvalidUploadError(
            f"'{filename}' is not a valid distribution file name: {exc.reason}"
        ) from exc


def _read_archive_metadata(path: Path, dist: DistFile, limit: int) -> bytes | None:
    """METADATA or PKG-INFO; any error here means a broken, truncated or inflating archive."""
    try:
        return load_metadata(path, dist, limit=limit)
    except MetadataTooLargeError as exc:
        raise UploadMetadataTooLargeError(dist.filename, exc.member, limit) from exc
    except DamagedArchiveError as exc:
        raise InvalidUploadError(f"'{dist.filename}' is a damaged archive") from exc
    except UnreadableArchiveError as exc:
        raise InvalidUploadError(
            f"'{dist.filename}' is not a readable archive: {exc.reason}"
        ) from exc


def inspect_distribution(
    path: Path, filename: str, *, metadata_limit: int = DEFAULT_METADATA_LIMIT
) -> Inspected:
    """Everything the archive says about itself; InvalidUploadError when it is unusable."""
    dist = _parse_upload_filename(filename)
    name, version, is_wheel = dist.project, dist.version, dist.kind is DistKind.WHEEL
    metadata = _read_archive_metadata(path, dist, metadata_limit)
    if is_wheel and metadata is None:
        raise InvalidUploadError(f"wheel '{filename}' has no .dist-info/METADATA")
    if metadata is None:  # a wheel renamed .zip would pass as an sdist otherwise
        raise InvalidUploadError(f"sdist '{filename}' has no {dist.metadata_dir}/PKG-INFO")
    headers = BytesHeaderParser().parsebytes(metadata or b"")
    if metadata is not None:
        meta_name, meta_version = headers.get("Name", ""), headers.get("Version", "")
        if is_wheel and (not meta_name or normalize(meta_name) != name):
            raise InvalidUploadError(f"METADATA names '{meta_name}', the file name '{name}'")
        try:
            if is_wheel and Version(meta_version) != version:
                raise InvalidUploadError(
                    f"METADATA says version {meta_version}, the file name {version}"
                )
        except InvalidVersion as exc:
            raise InvalidUploadError(f"METADATA has an invalid version {meta_version!r}") from exc
    body = (
        metadata.split(b"\n\n", 1)[1].decode(errors="replace")
        if metadata and b"\n\n" in metadata
        else ""
    )
    return Inspected(
        name=name,
        version=version,
        metadata=metadata if is_wheel else None,
        requires_python=headers.get("Requires-Python") or None,
        summary=headers.get("Summary", "") or "",
        description=body,
        description_type=headers.get("Description-Content-Type", "") or "",
    )


def _digests(path: Path) -> dict[str, str]:
    md5, blake = hashlib.md5(usedforsecurity=False), hashlib.blake2b(digest_size=32)
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            md5.update(chunk)
            blake.update(chunk)
    return {"md5_digest": md5.hexdigest(), "blake2_256_digest": blake.hexdigest()}


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Uploads:
    """Validates and commits uploads; yanks and deletes releases."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        metrics: Metrics,
        *,
        metadata_limit: int = DEFAULT_METADATA_LIMIT,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.metrics = metrics
        self.metadata_limit = metadata_limit  #: limits.max_metadata_size
        #: one upload per (index, filename) at a time, so a losing racer never stores its bytes;
        #: an entry lives only while someone holds or waits for it, with the number of those
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    def _check_form(self, fields: Mapping[str, str], found: Inspected, filename: str) -> None:
        form_name = fields.get("name", "")
        if form_name and normalize(form_name) != found.name:
            raise InvalidUploadError(f"form name '{form_name}' does not match '{filename}'")
        form_version = fields.get("version", "")
        try:
            if form_version and Version(form_version) != found.version:
                raise InvalidUploadError(
                    f"form version '{form_version}' does not match '{filename}'"
                )
        except InvalidVersion as exc:
            raise InvalidUploadError(f"invalid version {form_version!r}") from exc

    async def accept(
        self,
        index: PrivateIndex,
        who: Identity,
        filename: str,
        fields: Mapping[str, str],
        temp: TempBlob,
    ) -> bool:
        """Store an uploaded file; False when the identical file was already there."""
        check_filename(filename)
        loop = asyncio.get_running_loop()
        inspect = functools.partial(
            inspect_distribution, temp.path, filename, metadata_limit=self.metadata_limit
        )
        found = await loop.run_in_executor(None, inspect)
        self._check_form(fields, found, filename)
        sha256 = temp.hexdigest()
        expected = {"sha256_digest": sha256}
        if fields.get("md5_digest") or fields.get("blake2_256_digest"):
            expected.update(await loop.run_in_executor(None, _digests, temp.path))
        for field, actual in expected.items():
            sent = fields.get(field, "").strip().lower()
            if sent and sent != actual:
                raise InvalidUploadError(f"{field} {sent} does not match the uploaded bytes")
        async with self._lock(index.name, filename):
            return await self._store(index, who, filename, found, temp, sha256)

    @contextlib.asynccontextmanager
    async def _lock(self, index: str, filename: str) -> AsyncIterator[None]:
        """The file name's lock, dropped when its last holder or waiter leaves."""
        key = (index, filename)
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def _store(
        self,
        index: PrivateIndex,
        who: Identity,
        filename: str,
        found: Inspected,
        temp: TempBlob,
        sha256: str,
    ) -> bool:
        await self._check_existing(index, filename, sha256)
        await self.blobs.commit(temp)
        metadata_sha = None
        if found.metadata is not None:
            loop = asyncio.get_running_loop()  # up to limits.max_metadata_size: not on the loop
            metadata_sha = await loop.run_in_executor(None, _sha256_hex, found.metadata)
            await self.blobs.store_bytes(found.metadata)  # found by files.metadata_sha256
        change = FileUploaded(
            idx=index.name,
            project=found.name,
            version=str(found.version),
            filename=filename,
            sha256=sha256,
            size=temp.size,
            requires_python=found.requires_python,
            metadata_sha256=metadata_sha,
            summary=found.summary,
            description=found.description,
            description_type=found.description_type,
            uploaded=time.time(),
            uploader=who.user,
        )
        message = "uploaded %s (%d bytes) to %s by %s"
        return await self._commit_file(
            index, change, message, filename, temp.size, index.name, who.user
        )

    async def copy(self, index: PrivateIndex, who: Identity, hosted: HostedFile) -> bool:
        """Store another private index's file here (devpi push): its bytes and metadata as they
        are; False when the identical file was already there."""
        if hosted.path is not None and await self.blobs.locate(hosted.sha256) is None:
            await self._store_wheelhouse_file(Path(hosted.path))  # a wheelhouse file has no blob
        change = FileUploaded(
            idx=index.name,
            project=hosted.project,
            version=hosted.version,
            filename=hosted.filename,
            sha256=hosted.sha256,
            size=hosted.size,
            requires_python=hosted.requires_python,
            metadata_sha256=hosted.metadata_sha256,
            summary=hosted.summary,
            description=hosted.description,
            description_type=hosted.description_type,
            uploaded=time.time(),
            uploader=who.user,
        )
        message = "pushed %s from %s to %s by %s"
        async with self._lock(index.name, hosted.filename):
            await self._check_existing(index, hosted.filename, hosted.sha256)
            return await self._commit_file(
                index, change, message, hosted.filename, hosted.index, index.name, who.user
            )

    async def _commit_file(
        self, index: PrivateIndex, change: FileUploaded, message: str, *args: object
    ) -> bool:
        """The one ending of an upload and a push: commit, refresh the pages, count, log."""
        try:
            await self.db.commit(change)
        except UnchangedError:
            return False
        index.invalidate(change.project)
        self.metrics.uploads.labels(index.name).inc()
        extra = {"index": index.name, "project": change.project, "file": change.filename}
        log.info(message, *args, extra=extra)
        return True

    async def _store_wheelhouse_file(self, path: Path) -> None:
        temp = self.blobs.create_temp()
        try:
            with path.open("rb") as source:
                while chunk := await asyncio.to_thread(source.read, 256 * 1024):
                    await temp.write(chunk)
            await self.blobs.commit(temp)
        finally:
            temp.close()

    async def _check_existing(self, index: PrivateIndex, filename: str, sha256: str) -> None:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT sha256 FROM files WHERE idx = ? AND filename = ?", (index.name, filename)
            ).fetchone()
        )
        if row is not None and row[0] != sha256:
            raise ConflictError(f"file '{filename}' exists in {index.name} with other bytes")

    async def yank(
        self, index: PrivateIndex, project: NormalizedName, version: str, reason: str | None
    ) -> None:
        """PEP 592 yank of every file of a release; `reason` may be None."""
        await self._set_yanked(index, project, version, True, reason)

    async def unyank(self, index: PrivateIndex, project: NormalizedName, version: str) -> None:
        await self._set_yanked(index, project, version, False, None)

    async def _set_yanked(
        self,
        index: PrivateIndex,
        project: NormalizedName,
        version: str,
        yanked: bool,
        reason: str | None,
    ) -> None:
        change = ReleaseYanked(
            idx=index.name, project=project, version=version, yanked=yanked, reason=reason
        )
        await self.db.commit(change)
        index.invalidate(project)

    async def delete_release(
        self, index: PrivateIndex, project: NormalizedName, version: str
    ) -> None:
        self._check_volatile(index)
        await self.db.commit(ReleaseDeleted(idx=index.name, project=project, version=version))
        index.invalidate(project)

    async def delete_file(self, index: PrivateIndex, key: str, filename: str) -> None:
        self._check_volatile(index)
        hosted = await index.find_file(key, filename)
        change = FileDeleted(
            idx=index.name,
            filename=filename,
            sha256=key,
            project=hosted.project,
            version=hosted.version,
        )
        await self.db.commit(change)
        index.invalidate(hosted.project)

    @staticmethod
    def _check_volatile(index: PrivateIndex) -> None:
        if not index.cfg.volatile:
            raise ConflictError(f"index '{index.name}' is not volatile: released files stay")
