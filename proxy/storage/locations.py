"""Where a file's bytes are, for either kind of index: a tagged union, never "a path in a str"."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Cached:
    """The file is on disk: serve it with sendfile."""

    path: Path


@dataclass(frozen=True, slots=True)
class InMemory:
    """A small body (core metadata) just fetched, answered while it is being stored."""

    body: bytes
