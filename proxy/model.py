"""The pure data model of the simple API: projects, distributions, index names."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NewType
from urllib.parse import urlsplit, urlunsplit

from packaging.utils import NormalizedName, canonicalize_name

from proxy.distfiles import InvalidDistFilenameError, parse_filename
from proxy.errors import InvalidNameError, UnsafePathError

__all__ = [
    "Distribution",
    "FileKey",
    "IndexName",
    "NameList",
    "NormalizedName",
    "ProjectList",
    "ProjectPage",
    "check_filename",
    "file_key",
    "normalize",
    "parse_index_name",
    "project_of",
    "version_of",
]

MAX_NAME_LENGTH = 200
# \Z, not $: "$" also matches before a trailing newline. ASCII: no Unicode case folding.
_PROJECT_RE = re.compile(r"([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE | re.ASCII)
_INDEX_PART_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z", re.ASCII)
_SHA256_RE = re.compile(r"[0-9a-f]{64}\Z", re.ASCII)
_URLKEY_RE = re.compile(r"u[0-9a-f]{40}\Z", re.ASCII)
_FILENAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]{0,254}\Z", re.ASCII)

IndexName = NewType("IndexName", str)
"""`user/index`, e.g. `root/pypi`."""

FileKey = NewType("FileKey", str)
"""The `+f/{key}/` segment: a sha256 hex digest, or `u` + 40 hex for files published without one."""


def normalize(name: str) -> NormalizedName:
    """PEP 503 normalization of a valid PEP 508 project name; the only maker of NormalizedName."""
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(name, f"longer than {MAX_NAME_LENGTH} characters")
    if not _PROJECT_RE.match(name):
        raise InvalidNameError(name, "not a valid project name (PEP 508)")
    return canonicalize_name(name)


def parse_index_name(user: str, index: str) -> IndexName:
    """Validate both parts so that an index name is always safe in paths and URLs."""
    for part in (user, index):
        if not _INDEX_PART_RE.match(part) or part in {".", ".."}:
            raise InvalidNameError(f"{user}/{index}", "not a valid user/index name")
    return IndexName(f"{user}/{index}")


def check_filename(filename: str) -> str:
    """Reject anything that is not a plain distribution file name (no separators, no traversal)."""
    if not _FILENAME_RE.match(filename) or ".." in filename:
        raise UnsafePathError(filename)
    return filename


def check_file_key(key: str) -> FileKey:
    if _SHA256_RE.match(key) or _URLKEY_RE.match(key):
        return FileKey(key)
    raise UnsafePathError(key)


def file_key(sha256: str | None, url: str) -> FileKey:
    """A stable key: the sha256 when the index gives one, else derived from the upstream URL."""
    if sha256 and _SHA256_RE.match(sha256):
        return FileKey(sha256)
    return FileKey("u" + hashlib.sha256(url.encode()).hexdigest()[:40])


def is_sha256(key: str) -> bool:
    return bool(_SHA256_RE.match(key))


def project_of(filename: str) -> NormalizedName | None:
    """The project a distribution file belongs to, or None when the name does not parse."""
    try:
        return parse_filename(filename).project
    except InvalidDistFilenameError:
        pass
    name = filename.split("-", 1)[0]
    return canonicalize_name(name) if _PROJECT_RE.match(name) else None


def version_of(filename: str) -> str | None:
    """The version in a distribution's file name (used for PEP 700 `versions`)."""
    try:
        return str(parse_filename(filename).version)
    except InvalidDistFilenameError:
        return None


@dataclass(frozen=True, slots=True)
class Distribution:
    """One file of a project as a simple page describes it."""

    filename: str
    url: str  #: absolute upstream URL when parsed; server-root-relative path when served
    hashes: dict[str, str] = field(default_factory=dict)
    requires_python: str | None = None
    yanked: bool = False  #: PEP 592
    yanked_reason: str | None = None
    metadata: bool = False  #: PEP 658/714: core metadata available at url + ".metadata"
    metadata_hashes: dict[str, str] = field(default_factory=dict)  #: hashes of the .metadata file
    size: int | None = None  #: PEP 700
    upload_time: str | None = None  #: PEP 700, ISO 8601
    gpg_sig: bool | None = None

    @property
    def sha256(self) -> str | None:
        value = self.hashes.get("sha256")
        return value if value and _SHA256_RE.match(value) else None

    @property
    def key(self) -> FileKey:
        return file_key(self.sha256, self.url)


@dataclass(frozen=True, slots=True)
class ProjectPage:
    """A project's files plus the page-level facts clients use."""

    name: str  #: the name as the index spells it
    files: tuple[Distribution, ...] = ()
    versions: tuple[str, ...] = ()  #: PEP 700; computed from file names when absent
    last_serial: int | None = None  #: the upstream's X-PyPI-Last-Serial

    def all_versions(self) -> tuple[str, ...]:
        if self.versions:
            return self.versions
        seen: dict[str, None] = {}
        for dist in self.files:
            version = version_of(dist.filename)
            if version is not None:
                seen.setdefault(version, None)
        return tuple(seen)

    def find(self, filename: str) -> Distribution | None:
        for dist in self.files:
            if dist.filename == filename:
                return dist
        return None


@dataclass(frozen=True, slots=True)
class ProjectList:
    """The root page: every project name the index knows."""

    names: tuple[str, ...] = ()
    last_serial: int | None = None


@dataclass(frozen=True, slots=True)
class NameList:
    """An index's root list without its names in memory when it is large: a names file.

    `path` (one name a line, UTF-8, written once and never changed: a new list is a new file)
    for a mirror; `names` for a private index's few. Two lists are the same when `same` says so.
    """

    names: tuple[str, ...] = ()
    path: Path | None = None
    count: int = 0
    serial: int | None = None

    def same(self, other: NameList) -> bool:
        """Identity of the tuple, equality of the file: both are replaced on every change."""
        return self.names is other.names and self.path == other.path and self.serial == other.serial


def mask_url(url: str) -> str:
    """The one place credentials in URLs are hidden before logging or showing a URL."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    # a lone user name is often a token itself, so only a user beside a password is shown
    masked = f"{user}:***@{host}" if user and parts.password is not None else f"***@{host}"
    return urlunsplit(parts._replace(netloc=masked))
