"""Where a requested file's bytes come from: a tagged union, never "a path or a URL in a str"."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from proxy.distfiles import InvalidDistFilenameError, load_metadata, parse_filename
from proxy.errors import DistributionNotFoundError
from proxy.mirror.fetch import Download


@dataclass(frozen=True, slots=True)
class Cached:
    """The file is on disk: serve it with sendfile."""

    path: Path


@dataclass(frozen=True, slots=True)
class InFlight:
    """The file is streaming in from upstream: follow the download."""

    download: Download


@dataclass(frozen=True, slots=True)
class Passthrough:
    """Not cached and not worth caching now (a Range or HEAD probe): ask upstream directly."""

    url: str
    size: int | None


@dataclass(frozen=True, slots=True)
class InMemory:
    """A small body (core metadata) just fetched, answered while it is being stored."""

    body: bytes


FileSource = Cached | InFlight | Passthrough


def read_wheel_metadata(path: Path, filename: str) -> bytes:
    """The wheel's own .dist-info/METADATA (blocking; run it on a worker thread)."""
    try:
        dist = parse_filename(filename)
    except InvalidDistFilenameError as exc:
        raise DistributionNotFoundError(filename + ".metadata", exc.reason) from exc
    metadata = load_metadata(path, dist)
    if metadata is None:
        raise DistributionNotFoundError(filename + ".metadata", "wheel has no METADATA")
    return metadata
