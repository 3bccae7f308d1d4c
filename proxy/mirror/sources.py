"""Where a mirror file's bytes come from: the store, a download in flight, or the upstream."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from proxy.distfiles import (
    DEFAULT_METADATA_LIMIT,
    InvalidDistFilenameError,
    MetadataTooLargeError,
    UnreadableArchiveError,
    load_metadata,
    parse_filename,
)
from proxy.errors import DistributionNotFoundError
from proxy.mirror.fetch import Download
from proxy.storage.blobs import BlobLocation


@dataclass(frozen=True, slots=True)
class InFlight:
    """The file is streaming in from upstream: follow the download."""

    download: Download


@dataclass(frozen=True, slots=True)
class Passthrough:
    """Not cached and not worth caching now (a Range or HEAD probe): ask upstream directly."""

    url: str
    size: int | None
    index: str = ""  #: the mirror asking, for its address policy and error wording


@dataclass(frozen=True, slots=True)
class KnownSize:
    """A HEAD answered here: the page (or an earlier answer) gave the file's size."""

    size: int


@dataclass(frozen=True, slots=True)
class CachedRange:
    """A Range request answered from bytes already read from upstream."""

    start: int
    data: bytes
    total: int


FileSource = BlobLocation | InFlight | Passthrough | KnownSize | CachedRange


def read_wheel_metadata(path: Path, filename: str, limit: int = DEFAULT_METADATA_LIMIT) -> bytes:
    """The wheel's own .dist-info/METADATA (blocking; run it on a worker thread)."""
    try:
        dist = parse_filename(filename)
    except InvalidDistFilenameError as exc:
        raise DistributionNotFoundError(filename + ".metadata", exc.reason) from exc
    try:
        # capped: an upstream wheel may be a zip bomb too
        metadata = load_metadata(path, dist, limit=limit)
    except (MetadataTooLargeError, UnreadableArchiveError) as exc:
        raise DistributionNotFoundError(filename + ".metadata", exc.reason) from exc
    if metadata is None:
        raise DistributionNotFoundError(filename + ".metadata", "wheel has no METADATA")
    return metadata
