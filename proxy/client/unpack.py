"""Unpacking a downloaded sdist for `wheelwell test`, refusing what could escape or explode.

An sdist comes from an index anyone with upload rights fills, and tox runs in what it unpacks to,
so a member named `../../.bashrc`, an absolute path, a link out of the tree or a bomb that
inflates to terabytes must fail before anything is written outside the target directory. Tar
uses the standard library's "data" filter (PEP 706); zip members are checked here, as zipfile
has no such filter. Both are bounded in member count and unpacked bytes.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from proxy.client.errors import ClientError

#: most members and bytes an sdist may unpack to (a large sdist is tens of MB)
MAX_MEMBERS = 100_000
MAX_UNPACKED_SIZE = 2 * 1024**3
_CHUNK = 1024 * 1024


class UnsafeArchiveError(ClientError):
    """An sdist that would write outside its directory, or more than the limits allow."""

    def __init__(self, filename: str, reason: str) -> None:
        self.filename = filename
        self.reason = reason
        super().__init__(f"refusing to unpack {filename}: {reason}")


def check_member_name(filename: str, name: str) -> PurePosixPath:
    """A member's path relative to the target; UnsafeArchiveError for absolute or `..` names."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise UnsafeArchiveError(filename, f"member {name!r} points outside the directory")
    return path


def _check_totals(filename: str, count: int, size: int) -> None:
    if count > MAX_MEMBERS:
        raise UnsafeArchiveError(filename, f"more than {MAX_MEMBERS} members")
    if size > MAX_UNPACKED_SIZE:
        raise UnsafeArchiveError(filename, f"it unpacks to more than {MAX_UNPACKED_SIZE} bytes")


def _unpack_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                check_member_name(archive.name, member.name)
            _check_totals(archive.name, len(members), sum(m.size for m in members if m.isfile()))
            tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(archive.name, str(exc)) from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ClientError(f"cannot unpack {archive.name}: {exc}") from exc


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Write one member, counting real bytes: a zip's recorded sizes are the packer's word."""
    written = 0
    with zf.open(info) as source, target.open("wb") as sink:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > budget:
                too_large = f"it unpacks to more than {MAX_UNPACKED_SIZE} bytes"
                raise UnsafeArchiveError(Path(zf.filename or "").name, too_large)
            sink.write(chunk)
    return written


def _unpack_zip(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            _check_totals(archive.name, len(infos), sum(i.file_size for i in infos))
            budget = MAX_UNPACKED_SIZE
            for info in infos:
                relative = check_member_name(archive.name, info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise UnsafeArchiveError(archive.name, f"member {info.filename!r} is a link")
                target = dest.joinpath(*relative.parts)
                if not relative.parts:
                    continue
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                budget -= _copy_member(zf, info, target, budget)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ClientError(f"cannot unpack {archive.name}: {exc}") from exc


def unpack_sdist(archive: Path, dest: Path) -> Path:
    """Unpack into the new directory `dest`; the sdist's top directory (or `dest` if several)."""
    dest.mkdir(parents=True)
    try:
        if archive.name.endswith(".zip"):
            _unpack_zip(archive, dest)
        else:
            _unpack_tar(archive, dest)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    entries = list(dest.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


#: where tox reads its config from, in the order tox itself looks
TOX_CONFIGS = (("tox.ini", ""), ("pyproject.toml", "[tool.tox"), ("setup.cfg", "[tox:tox]"))


def find_tox_config(root: Path) -> Path | None:
    """tox.ini, else a pyproject.toml with [tool.tox…], else a setup.cfg with [tox:tox]."""
    for name, marker in TOX_CONFIGS:
        path = root / name
        if path.is_file() and (not marker or marker in path.read_text(errors="replace")):
            return path
    return None
