"""Real wheels and sdists built in-process, so tests need no network and no build backend."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name


@dataclass(frozen=True, slots=True)
class Built:
    """A distribution file on disk plus what an index page needs to describe it."""

    path: Path
    name: str
    version: str
    sha256: str
    size: int
    requires_python: str | None
    metadata: bytes | None  #: core metadata (PEP 658), wheels only

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def metadata_sha256(self) -> str | None:
        return None if self.metadata is None else hashlib.sha256(self.metadata).hexdigest()


def _dist_name(name: str) -> str:
    return canonicalize_name(name).replace("-", "_")


def render_metadata(
    name: str,
    version: str,
    *,
    requires: Sequence[str] = (),
    requires_python: str | None = None,
    summary: str = "",
    description: str = "",
) -> bytes:
    """Core metadata 2.1 text, as a build backend would write it."""
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if summary:
        lines.append(f"Summary: {summary}")
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines.extend(f"Requires-Dist: {req}" for req in requires)
    if description:
        lines.append("Description-Content-Type: text/markdown")
    text = "\n".join(lines) + "\n"
    if description:
        text += "\n" + description + "\n"
    return text.encode()


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def build_wheel(
    dest: Path,
    name: str,
    version: str,
    *,
    requires: Sequence[str] = (),
    requires_python: str | None = None,
    summary: str = "",
    description: str = "",
    payload_size: int = 0,
    tag: str = "py3-none-any",
    metadata_first: bool = False,
) -> Built:
    """Write a real, installable wheel; `payload_size` adds that many incompressible bytes.

    `metadata_first`: METADATA is the first member, far from the central directory at the end.
    """
    dest.mkdir(parents=True, exist_ok=True)
    dist = _dist_name(name)
    info = f"{dist}-{version}.dist-info"
    metadata = render_metadata(
        name,
        version,
        requires=requires,
        requires_python=requires_python,
        summary=summary,
        description=description,
    )
    files: list[tuple[str, bytes]] = [
        (f"{dist}/__init__.py", f'__version__ = "{version}"\n'.encode()),
    ]
    if payload_size:
        files.append((f"{dist}/payload.bin", os.urandom(payload_size)))
    files.insert(0 if metadata_first else len(files), (f"{info}/METADATA", metadata))
    wheel_text = (
        f"Wheel-Version: 1.0\nGenerator: wheelwell-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
    )
    files.append((f"{info}/WHEEL", wheel_text.encode()))
    record = [_record_line(arc, data) for arc, data in files] + [f"{info}/RECORD,,"]
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    path = dest / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, data in files:
            method = zipfile.ZIP_STORED if arcname.endswith(".bin") else zipfile.ZIP_DEFLATED
            zf.writestr(zipfile.ZipInfo(arcname, date_time=(2024, 1, 1, 0, 0, 0)), data, method)
    return _built(path, name, version, requires_python, metadata)


_SETUP_PY = """\
from setuptools import setup
setup(name={name!r}, version={version!r}, packages=[{dist!r}], install_requires={requires!r}{rp})
"""


def build_sdist(
    dest: Path,
    name: str,
    version: str,
    *,
    requires: Sequence[str] = (),
    requires_python: str | None = None,
    summary: str = "",
    extra: Mapping[str, bytes] | None = None,
) -> Built:
    """Write a real sdist (setup.py + PKG-INFO) that pip can build with setuptools; `extra`:
    more files by their path in the sdist's top directory (a tox.ini)."""
    dest.mkdir(parents=True, exist_ok=True)
    dist = _dist_name(name)
    root = f"{dist}-{version}"
    pkg_info = render_metadata(
        name, version, requires=requires, requires_python=requires_python, summary=summary
    )
    rp = f", python_requires={requires_python!r}" if requires_python else ""
    setup_py = _SETUP_PY.format(
        name=name, version=version, dist=dist, requires=list(requires), rp=rp
    )
    pyproject = (
        b'[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    members = {
        f"{root}/PKG-INFO": pkg_info,
        f"{root}/setup.py": setup_py.encode(),
        f"{root}/pyproject.toml": pyproject,
        f"{root}/{dist}/__init__.py": f'__version__ = "{version}"\n'.encode(),
    }
    members.update({f"{root}/{member}": data for member, data in (extra or {}).items()})
    path = dest / f"{root}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for arcname, data in members.items():
            member = tarfile.TarInfo(arcname)
            member.size = len(data)
            member.mtime = 1704067200
            tf.addfile(member, io.BytesIO(data))
    return _built(path, name, version, requires_python, None)


def _built(
    path: Path, name: str, version: str, requires_python: str | None, metadata: bytes | None
) -> Built:
    data = path.read_bytes()
    return Built(
        path=path,
        name=name,
        version=version,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        requires_python=requires_python,
        metadata=metadata,
    )
