"""Distribution files: what a wheel's or sdist's name says, and its core metadata from disk.

The one place for both, used by uploads, the mirror, the model and the upload client. Callers
turn these errors into their own (InvalidUploadError, InvalidDistError, ...). The metadata
readers block: run them on a worker thread.

Member lookup: a wheel's metadata is `<dir>.dist-info/METADATA` and an sdist's `<dir>/PKG-INFO`,
exactly one level deep; the directory the file name implies wins over others, otherwise the first
in archive order. A `.tar.gz` sdist is read to its end, so a truncated one fails here.

The metadata member is streamed and read to at most `limit` bytes: a zip's recorded sizes are
the uploader's word, so a small file whose METADATA inflates to gigabytes fails with
MetadataTooLargeError after `limit` bytes instead of filling memory.
"""

from __future__ import annotations

import lzma
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from proxy.errors import WheelwellError

#: every sdist extension a mirror page may list
SDIST_EXTENSIONS = (".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar")
#: the sdist extensions an upload may have (PEP 625 allows only .tar.gz; .zip is legacy)
UPLOAD_SDIST_EXTENSIONS = (".tar.gz", ".zip")
#: the default cap on a METADATA / PKG-INFO member (limits.max_metadata_size)
DEFAULT_METADATA_LIMIT = 16 * 1024 * 1024
#: most bytes an archive may unpack to while it is scanned (tar to its end, zip CRCs): a 1 GiB
#: upload of compressed zeros would otherwise keep a thread inflating a terabyte
MAX_SCANNED_SIZE = 4 * 1024**3


class DistKind(StrEnum):
    WHEEL = "wheel"
    SDIST = "sdist"


class DistFileError(WheelwellError):
    """A distribution file that is not what its name or contents should be."""

    def __init__(self, filename: str, reason: str) -> None:
        self.filename = filename
        self.reason = reason
        super().__init__(f"{filename}: {reason}")


class InvalidDistFilenameError(DistFileError):
    """Named like a wheel or sdist, but the name does not parse (reason: packaging's message)."""


class NotADistributionError(InvalidDistFilenameError):
    """The name has neither the wheel extension nor one of the sdist extensions accepted."""


class UnreadableArchiveError(DistFileError):
    """The archive cannot be opened or read to its end (broken or truncated)."""


class DamagedArchiveError(UnreadableArchiveError):
    """The zip opens but a member fails its CRC check."""


class ArchiveTooLargeError(UnreadableArchiveError):
    """Scanning the archive would unpack more than MAX_SCANNED_SIZE bytes."""


class MetadataTooLargeError(DistFileError):
    """The metadata member is larger than the caller's limit."""

    def __init__(self, filename: str, member: str, limit: int) -> None:
        self.member = member
        self.limit = limit
        super().__init__(filename, f"{member} is too large (over {limit} bytes)")


@dataclass(frozen=True, slots=True)
class DistFile:
    """A wheel or sdist as its file name describes it."""

    filename: str
    project: NormalizedName
    version: Version
    kind: DistKind
    extension: str  #: ".whl" or the sdist extension, e.g. ".tar.gz"

    @property
    def python_tag(self) -> str:
        """The wheel's Python tag as written (`py3`, `cp311`), or `source` for an sdist."""
        if self.kind is DistKind.SDIST:
            return "source"
        return self.filename[: -len(".whl")].split("-")[-3]

    @property
    def metadata_dir(self) -> str:
        """The archive directory the metadata should be in, by the file name."""
        stem = self.filename[: -len(self.extension)]
        if self.kind is DistKind.WHEEL:
            return "-".join(stem.split("-")[:2]) + ".dist-info"
        return stem


def parse_filename(filename: str, sdist_extensions: tuple[str, ...] = SDIST_EXTENSIONS) -> DistFile:
    """Project, version and kind from a file name; InvalidDistFilenameError when it does not say."""
    try:
        if filename.endswith(".whl"):
            project, version, _, _ = parse_wheel_filename(filename)
            return DistFile(filename, project, version, DistKind.WHEEL, ".whl")
        for ext in sdist_extensions:
            if filename.endswith(ext):
                stem = filename if ext in (".tar.gz", ".zip") else filename[: -len(ext)] + ".tar.gz"
                project, version = parse_sdist_filename(stem)
                return DistFile(filename, project, version, DistKind.SDIST, ext)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise InvalidDistFilenameError(filename, str(exc)) from exc
    raise NotADistributionError(filename, "neither a wheel nor an sdist")


def _pick(candidates: list[str], expected_dir: str) -> str | None:
    for name in candidates:
        if name.split("/")[0].lower() == expected_dir.lower():
            return name
    return candidates[0] if candidates else None


def _is_metadata_member(dist: DistFile, member: str) -> bool:
    parts = member.split("/")
    if len(parts) != 2:
        return False
    if dist.kind is DistKind.WHEEL:
        return parts[0].endswith(".dist-info") and parts[1] == "METADATA"
    return parts[1] == "PKG-INFO"


def _check_size(dist: DistFile, member: str, size: int, limit: int | None) -> None:
    if limit is not None and size > limit:
        raise MetadataTooLargeError(dist.filename, member, limit)


def _read_capped(stream: IO[bytes], dist: DistFile, member: str, limit: int | None) -> bytes:
    """At most `limit` bytes of a member, whatever its header claims; one byte more fails."""
    if limit is None:
        return stream.read()
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise MetadataTooLargeError(dist.filename, member, limit)
    return data


def _read_zip(
    source: Path | IO[bytes], dist: DistFile, limit: int | None, budget: int | None
) -> bytes | None:
    """The metadata member; without one, the CRCs are checked within `budget` (None: not)."""
    with zipfile.ZipFile(source) as zf:
        names = [n for n in zf.namelist() if _is_metadata_member(dist, n)]
        member = _pick(names, dist.metadata_dir)
        if member is not None:
            info = zf.getinfo(member)
            _check_size(dist, member, info.file_size, limit)
            with zf.open(info) as stream:
                return _read_capped(stream, dist, member, limit)
        if budget is not None:
            _check_crcs(zf, dist, budget)
    return None


def read_wheel_member(
    source: IO[bytes], dist: DistFile, *, limit: int | None = DEFAULT_METADATA_LIMIT
) -> bytes | None:
    """A wheel's METADATA from a seekable file object that may hold only parts of the wheel.

    Only the central directory and the member are read; exceptions of `source` itself (such as
    a request for bytes it does not have yet) pass through unchanged.
    """
    try:
        return _read_zip(source, dist, limit, None)
    except (
        zipfile.BadZipFile,
        EOFError,
        ValueError,
        zlib.error,
        NotImplementedError,
        RuntimeError,
        OSError,
    ) as exc:
        raise UnreadableArchiveError(dist.filename, str(exc) or type(exc).__name__) from exc


def _check_crcs(zf: zipfile.ZipFile, dist: DistFile, budget: int) -> None:
    """zipfile.testzip within `budget` bytes (a member is read no further than its size)."""
    left = budget
    for info in zf.infolist():
        left -= info.file_size
        if left < 0:
            raise ArchiveTooLargeError(dist.filename, f"unpacks to more than {budget} bytes")
        try:
            with zf.open(info) as member:
                while member.read(1024 * 1024):
                    pass
        except zipfile.BadZipFile as exc:
            raise DamagedArchiveError(dist.filename, "a damaged archive") from exc


def _open_tar(path: Path, extension: str) -> tarfile.TarFile:
    if extension == ".tar.bz2":
        return tarfile.open(path, "r:bz2")
    if extension == ".tar":
        return tarfile.open(path, "r:")
    return tarfile.open(path, "r:gz")


def _read_tar(path: Path, dist: DistFile, limit: int | None, budget: int) -> bytes | None:
    found: dict[str, bytes] = {}
    scanned = 0
    with _open_tar(path, dist.extension) as tf:
        for info in tf:  # reads the whole stream: a truncated file fails here
            scanned += info.size
            if scanned > budget:
                raise ArchiveTooLargeError(dist.filename, f"unpacks to more than {budget} bytes")
            if info.isfile() and _is_metadata_member(dist, info.name):
                _check_size(dist, info.name, info.size, limit)
                extracted = tf.extractfile(info)
                if extracted is not None and info.name not in found:
                    found[info.name] = _read_capped(extracted, dist, info.name, limit)
    member = _pick(list(found), dist.metadata_dir)
    return None if member is None else found[member]


def load_metadata(
    path: Path,
    dist: DistFile,
    *,
    limit: int | None = DEFAULT_METADATA_LIMIT,
    max_scanned: int = MAX_SCANNED_SIZE,
) -> bytes | None:
    """A wheel's METADATA or an sdist's PKG-INFO; None when the archive has none."""
    try:
        if dist.kind is DistKind.WHEEL or dist.extension == ".zip":
            return _read_zip(path, dist, limit, max_scanned)
        return _read_tar(path, dist, limit, max_scanned)
    except OSError as exc:  # the strerror only: the message must not carry a server path
        raise UnreadableArchiveError(dist.filename, exc.strerror or str(exc)) from exc
    except (
        zipfile.BadZipFile,
        tarfile.TarError,
        EOFError,
        ValueError,
        zlib.error,
        lzma.LZMAError,
    ) as exc:
        raise UnreadableArchiveError(dist.filename, str(exc)) from exc
