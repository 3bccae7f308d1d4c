"""Distribution files on disk as twine sees them: name, version, metadata, digests, form fields."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.metadata import RawMetadata, parse_email
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from proxy import distfiles
from proxy.client.errors import ClientError
from proxy.distfiles import UPLOAD_SDIST_EXTENSIONS

CHUNK = 1024 * 1024
_METADATA_LIMIT = 16 * 1024 * 1024
#: packaging's RawMetadata keys → legacy upload form fields, as twine names them
FORM_FIELDS = {
    "metadata_version": "metadata_version",
    "summary": "summary",
    "description": "description",
    "description_content_type": "description_content_type",
    "keywords": "keywords",
    "home_page": "home_page",
    "download_url": "download_url",
    "author": "author",
    "author_email": "author_email",
    "maintainer": "maintainer",
    "maintainer_email": "maintainer_email",
    "license": "license",
    "license_expression": "license_expression",
    "license_files": "license_file",
    "platforms": "platform",
    "supported_platforms": "supported_platform",
    "classifiers": "classifiers",
    "requires": "requires",
    "provides": "provides",
    "obsoletes": "obsoletes",
    "requires_dist": "requires_dist",
    "provides_dist": "provides_dist",
    "obsoletes_dist": "obsoletes_dist",
    "requires_python": "requires_python",
    "requires_external": "requires_external",
    "project_urls": "project_urls",
    "provides_extra": "provides_extra",
    "dynamic": "dynamic",
}


class InvalidDistError(ClientError):
    """A file named like a distribution that cannot be read as one."""

    def __init__(self, filename: str, reason: str) -> None:
        self.filename = filename
        self.reason = reason
        super().__init__(f"{filename}: {reason}")


@dataclass(frozen=True, slots=True)
class DistFile:
    """A wheel or sdist found on disk, described by its file name alone."""

    path: Path
    file: distfiles.DistFile

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def project(self) -> NormalizedName:
        return self.file.project

    @property
    def version(self) -> Version:
        return self.file.version

    @property
    def filetype(self) -> str:
        """The legacy upload API's name for the kind: `bdist_wheel` or `sdist`."""
        return "bdist_wheel" if self.file.kind is distfiles.DistKind.WHEEL else "sdist"

    @property
    def pyversion(self) -> str:
        """The wheel's Python tag, or `source`."""
        return self.file.python_tag


@dataclass(frozen=True, slots=True)
class Digests:
    """The digests the upload form carries, computed in one pass over the file."""

    sha256: str
    md5: str
    blake2_256: str
    size: int


def parse_dist_path(path: Path) -> DistFile | None:
    """Describe a wheel or sdist from its name; None for names that are neither."""
    try:
        return DistFile(path, distfiles.parse_filename(path.name, UPLOAD_SDIST_EXTENSIONS))
    except distfiles.InvalidDistFilenameError:
        if path.name.endswith(".whl"):
            raise InvalidDistError(path.name, "not a valid wheel file name") from None
    return None


def find_dists(directory: Path, recursive: bool) -> list[DistFile]:
    """Every wheel and sdist in `directory` (and below it when `recursive`), sorted by name."""
    if not directory.is_dir():
        raise ClientError(f"not a directory: {directory}")
    found = directory.rglob("*") if recursive else directory.iterdir()
    dists = [d for p in found if p.is_file() and (d := parse_dist_path(p)) is not None]
    return sorted(dists, key=lambda d: (d.filename, str(d.path)))


def compute_digests(path: Path) -> Digests:
    """sha256, md5 and blake2b-256 of a file, read in chunks."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    blake2 = hashlib.blake2b(digest_size=32)
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            for digest in (sha256, md5, blake2):
                digest.update(chunk)
    return Digests(sha256.hexdigest(), md5.hexdigest(), blake2.hexdigest(), size)


def load_metadata(dist: DistFile) -> bytes:
    """The core metadata file: the wheel's METADATA or the sdist's PKG-INFO."""
    try:
        data = distfiles.load_metadata(dist.path, dist.file, limit=_METADATA_LIMIT)
    except distfiles.MetadataTooLargeError as exc:
        raise InvalidDistError(dist.filename, exc.reason) from exc
    except distfiles.UnreadableArchiveError as exc:
        raise InvalidDistError(dist.filename, f"cannot read it ({exc.reason})") from exc
    if data is None:
        member = "METADATA" if dist.filetype == "bdist_wheel" else "PKG-INFO"
        raise InvalidDistError(dist.filename, f"no top-level */{member} inside")
    return data


def parse_metadata(dist: DistFile, data: bytes) -> RawMetadata:
    """Core metadata, checked against the file name so mistakes show before the upload."""
    raw, _ = parse_email(data)
    name, version = raw.get("name"), raw.get("version")
    if name is None or version is None:
        raise InvalidDistError(dist.filename, "metadata has no Name or Version")
    if canonicalize_name(name) != dist.project:
        raise InvalidDistError(dist.filename, f"metadata names project {name!r}")
    try:
        same_version = Version(version) == dist.version
    except InvalidVersion:
        same_version = False
    if not same_version:
        raise InvalidDistError(dist.filename, f"metadata says version {version!r}")
    return raw


def render_form(dist: DistFile, raw: RawMetadata, digests: Digests) -> list[tuple[str, str]]:
    """The legacy upload form fields (without the file), in the shape twine sends them."""
    fields = [
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("name", raw.get("name", dist.project)),
        ("version", raw.get("version", str(dist.version))),
        ("filetype", dist.filetype),
        ("pyversion", dist.pyversion),
        ("sha256_digest", digests.sha256),
        ("md5_digest", digests.md5),
        ("blake2_256_digest", digests.blake2_256),
    ]
    data = dict(raw)
    if not _at_least(raw.get("metadata_version", "0"), "2.4"):
        data.pop("license_files", None)  # setuptools writes it into 2.1 metadata; twine drops it
    for key, value in data.items():
        field = FORM_FIELDS.get(key)
        if field is not None:
            fields.extend((field, item) for item in _form_values(key, value))
    return fields


def _at_least(version: str, minimum: str) -> bool:
    try:
        return Version(version) >= Version(minimum)
    except InvalidVersion:
        return False


def _form_values(key: str, value: object) -> Iterator[str]:
    if isinstance(value, dict):
        yield from (f"{label}, {url}" for label, url in value.items())
    elif isinstance(value, list) and key == "keywords":
        yield ", ".join(str(v) for v in value)
    elif isinstance(value, list):
        yield from (str(v) for v in value)
    else:
        yield str(value)
