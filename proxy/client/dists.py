"""Distribution files on disk as twine sees them: name, version, metadata, digests, form fields."""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.metadata import RawMetadata, parse_email
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from proxy.client.errors import ClientError

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
    project: NormalizedName
    version: Version
    filetype: str  #: "bdist_wheel" or "sdist", the legacy upload API's names
    pyversion: str  #: the wheel's Python tag, or "source"

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass(frozen=True, slots=True)
class Digests:
    """The digests the upload form carries, computed in one pass over the file."""

    sha256: str
    md5: str
    blake2_256: str
    size: int


def parse_dist_path(path: Path) -> DistFile | None:
    """Describe a wheel or sdist from its name; None for names that are neither."""
    name = path.name
    try:
        if name.endswith(".whl"):
            project, version, _, _ = parse_wheel_filename(name)
            return DistFile(path, project, version, "bdist_wheel", name[:-4].split("-")[-3])
        if name.endswith((".tar.gz", ".zip")):
            project, version = parse_sdist_filename(name)
            return DistFile(path, project, version, "sdist", "source")
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        if name.endswith(".whl"):
            raise InvalidDistError(name, "not a valid wheel file name") from None
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


def _read_zip_member(path: Path, suffix: str, expected_dir: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(suffix)]
        names.sort(key=lambda n: n.split("/")[0].lower() != expected_dir.lower())
        if not names:
            raise InvalidDistError(path.name, f"no top-level *{suffix} inside")
        info = archive.getinfo(names[0])
        if info.file_size > _METADATA_LIMIT:
            raise InvalidDistError(path.name, f"{names[0]} is too large")
        return archive.read(info)


def _read_tar_member(path: Path, suffix: str) -> bytes:
    with tarfile.open(path, "r:gz") as archive:
        for member in archive:
            if member.isfile() and member.name.count("/") == 1 and member.name.endswith(suffix):
                if member.size > _METADATA_LIMIT:
                    raise InvalidDistError(path.name, f"{member.name} is too large")
                stream = archive.extractfile(member)
                if stream is not None:
                    return stream.read()
    raise InvalidDistError(path.name, f"no top-level *{suffix} inside")


def load_metadata(dist: DistFile) -> bytes:
    """The core metadata file: the wheel's METADATA or the sdist's PKG-INFO."""
    name = dist.filename
    try:
        if dist.filetype == "bdist_wheel":
            dist_info = "-".join(name.split("-")[:2]) + ".dist-info"
            return _read_zip_member(dist.path, "/METADATA", dist_info)
        if name.endswith(".zip"):
            return _read_zip_member(dist.path, "/PKG-INFO", name[: -len(".zip")])
        return _read_tar_member(dist.path, "/PKG-INFO")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidDistError(name, f"cannot read it ({exc})") from exc


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
