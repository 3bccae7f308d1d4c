"""Distribution file names and core metadata read from real archives."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.utils import NormalizedName
from packaging.version import Version

from proxy.distfiles import (
    DEFAULT_METADATA_LIMIT,
    UPLOAD_SDIST_EXTENSIONS,
    ArchiveTooLargeError,
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
from tests.fakes.dists import build_sdist, build_wheel, render_metadata

WHEEL, SDIST = DistKind.WHEEL, DistKind.SDIST


def _dist(filename: str, project: str, version: str, kind: DistKind, ext: str) -> DistFile:
    return DistFile(filename, NormalizedName(project), Version(version), kind, ext)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        (
            "Foo_Bar-1.0-py3-none-any.whl",
            _dist("Foo_Bar-1.0-py3-none-any.whl", "foo-bar", "1.0", WHEEL, ".whl"),
        ),
        (
            "foo-1.0.0-1-cp311-cp311-manylinux_2_17_x86_64.whl",
            _dist(
                "foo-1.0.0-1-cp311-cp311-manylinux_2_17_x86_64.whl", "foo", "1.0.0", WHEEL, ".whl"
            ),
        ),
        ("foo-bar-1.0.tar.gz", _dist("foo-bar-1.0.tar.gz", "foo-bar", "1.0", SDIST, ".tar.gz")),
        (
            "foo.bar-2.0.post1.zip",
            _dist("foo.bar-2.0.post1.zip", "foo-bar", "2.0.post1", SDIST, ".zip"),
        ),
        ("foo-1.0.tar.bz2", _dist("foo-1.0.tar.bz2", "foo", "1.0", SDIST, ".tar.bz2")),
        ("foo-1.0.tgz", _dist("foo-1.0.tgz", "foo", "1.0", SDIST, ".tgz")),
        ("foo-1.0.tar", _dist("foo-1.0.tar", "foo", "1.0", SDIST, ".tar")),
    ],
)
def test_parse_filename(filename: str, expected: DistFile) -> None:
    assert parse_filename(filename) == expected


@pytest.mark.parametrize(
    ("filename", "error"),
    [
        ("foo-notaversion.tar.gz", InvalidDistFilenameError),
        ("foo.tar.gz", InvalidDistFilenameError),
        ("foo-bar-baz.whl", InvalidDistFilenameError),
        ("foo-1.0-py3-none.whl", InvalidDistFilenameError),
        ("not a dist.whl", InvalidDistFilenameError),
        ("foo-1.0-py3.8.egg", NotADistributionError),
        ("README", NotADistributionError),
        ("", NotADistributionError),
    ],
)
def test_parse_filename_errors(filename: str, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        parse_filename(filename)
    assert type(info.value) is error
    assert info.value.filename == filename  # type: ignore[attr-defined]


def test_upload_extensions_exclude_legacy_tarballs() -> None:
    with pytest.raises(NotADistributionError):
        parse_filename("foo-1.0.tar.bz2", UPLOAD_SDIST_EXTENSIONS)
    assert parse_filename("foo-1.0.zip", UPLOAD_SDIST_EXTENSIONS).kind is SDIST


def test_packaging_message_is_the_reason() -> None:
    with pytest.raises(InvalidDistFilenameError) as info:
        parse_filename("foo-notaversion.tar.gz")
    assert "foo-notaversion.tar.gz" in info.value.reason
    assert str(info.value) == f"foo-notaversion.tar.gz: {info.value.reason}"


@pytest.mark.parametrize(
    ("filename", "python_tag", "metadata_dir"),
    [
        ("Foo_Bar-1.0-py3-none-any.whl", "py3", "Foo_Bar-1.0.dist-info"),
        ("foo-1.0-1-cp311-cp311-linux_x86_64.whl", "cp311", "foo-1.0.dist-info"),
        ("foo-1.0-py2.py3-none-any.whl", "py2.py3", "foo-1.0.dist-info"),
        ("foo_bar-1.0.tar.gz", "source", "foo_bar-1.0"),
        ("foo_bar-1.0.zip", "source", "foo_bar-1.0"),
    ],
)
def test_python_tag_and_metadata_dir(filename: str, python_tag: str, metadata_dir: str) -> None:
    dist = parse_filename(filename)
    assert (dist.python_tag, dist.metadata_dir) == (python_tag, metadata_dir)


# ---- metadata from archives ------------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_wheel_metadata(tmp_path: Path) -> None:
    built = build_wheel(tmp_path, "alpha", "1.0", summary="first")
    assert load_metadata(built.path, parse_filename(built.filename)) == built.metadata


def test_sdist_pkg_info(tmp_path: Path) -> None:
    built = build_sdist(tmp_path, "alpha", "1.0", summary="first")
    expected = render_metadata("alpha", "1.0", summary="first")
    assert load_metadata(built.path, parse_filename(built.filename)) == expected


@pytest.mark.parametrize(
    ("filename", "members", "expected"),
    [
        # only one level deep, and a wheel's only in a .dist-info directory
        ("a-1.0-py3-none-any.whl", {"a-1.0.dist-info/sub/METADATA": b"x"}, None),
        ("a-1.0-py3-none-any.whl", {"a/METADATA": b"x"}, None),
        ("a-1.0-py3-none-any.whl", {"METADATA": b"x"}, None),
        ("a-1.0-py3-none-any.whl", {"a-1.0.dist-info/WHEEL": b"x"}, None),
        ("a-1.0-py3-none-any.whl", {"a-1.0.dist-info/METADATA": b"ok"}, b"ok"),
        # the directory the file name implies wins, then archive order
        (
            "a-1.0-py3-none-any.whl",
            {"other-2.0.dist-info/METADATA": b"other", "A-1.0.dist-info/METADATA": b"ok"},
            b"ok",
        ),
        (
            "a-1.0-py3-none-any.whl",
            {"x-1.dist-info/METADATA": b"first", "y-1.dist-info/METADATA": b"second"},
            b"first",
        ),
        ("a-1.0.zip", {"a-1.0/PKG-INFO": b"ok", "a-1.0/setup.py": b""}, b"ok"),
        ("a-1.0.zip", {"b-2.0/PKG-INFO": b"other", "a-1.0/PKG-INFO": b"ok"}, b"ok"),
        ("a-1.0.zip", {"a-1.0/sub/PKG-INFO": b"x"}, None),
    ],
)
def test_zip_member_lookup(
    tmp_path: Path, filename: str, members: dict[str, bytes], expected: bytes | None
) -> None:
    path = _zip(tmp_path / filename, members)
    assert load_metadata(path, parse_filename(filename)) == expected


@pytest.mark.parametrize(
    ("filename", "mode", "members", "expected"),
    [
        ("a-1.0.tar.gz", "w:gz", {"a-1.0/PKG-INFO": b"ok", "a-1.0/setup.py": b""}, b"ok"),
        ("a-1.0.tar.gz", "w:gz", {"b-2/PKG-INFO": b"other", "a-1.0/PKG-INFO": b"ok"}, b"ok"),
        ("a-1.0.tar.gz", "w:gz", {"x/PKG-INFO": b"first", "y/PKG-INFO": b"second"}, b"first"),
        ("a-1.0.tar.gz", "w:gz", {"a-1.0/a/PKG-INFO": b"x", "PKG-INFO": b"x"}, None),
        ("a-1.0.tgz", "w:gz", {"a-1.0/PKG-INFO": b"ok"}, b"ok"),
        ("a-1.0.tar.bz2", "w:bz2", {"a-1.0/PKG-INFO": b"ok"}, b"ok"),
        ("a-1.0.tar", "w", {"a-1.0/PKG-INFO": b"ok"}, b"ok"),
    ],
)
def test_tar_member_lookup(
    tmp_path: Path, filename: str, mode: str, members: dict[str, bytes], expected: bytes | None
) -> None:
    path = _tar(tmp_path / filename, members, mode)
    assert load_metadata(path, parse_filename(filename)) == expected


def test_truncated_sdist_is_unreadable_even_after_pkg_info(tmp_path: Path) -> None:
    built = build_sdist(tmp_path, "alpha", "1.0")
    data = built.path.read_bytes()
    built.path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(UnreadableArchiveError) as info:
        load_metadata(built.path, parse_filename(built.filename))
    assert info.value.filename == built.filename


@pytest.mark.parametrize("filename", ["a-1.0-py3-none-any.whl", "a-1.0.zip", "a-1.0.tar.gz"])
def test_garbage_is_unreadable(tmp_path: Path, filename: str) -> None:
    path = tmp_path / filename
    path.write_bytes(b"this is no archive" * 100)
    with pytest.raises(UnreadableArchiveError):
        load_metadata(path, parse_filename(filename))


def test_truncated_wheel_is_unreadable(tmp_path: Path) -> None:
    built = build_wheel(tmp_path, "alpha", "1.0", payload_size=4096)
    data = built.path.read_bytes()
    built.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableArchiveError):
        load_metadata(built.path, parse_filename(built.filename))


def test_damaged_zip_without_metadata(tmp_path: Path) -> None:
    """No metadata member: the archive is checked, so a CRC failure is named as damage."""
    path = _zip(tmp_path / "a-1.0-py3-none-any.whl", {"a/data.bin": b"A" * 1000})
    data = bytearray(path.read_bytes())
    start = data.index(b"A" * 100)
    data[start : start + 10] = b"B" * 10
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedArchiveError):
        load_metadata(path, parse_filename(path.name))


def test_metadata_limit(tmp_path: Path) -> None:
    built = build_wheel(tmp_path, "alpha", "1.0")
    dist = parse_filename(built.filename)
    assert built.metadata is not None
    assert load_metadata(built.path, dist, limit=len(built.metadata)) == built.metadata
    with pytest.raises(MetadataTooLargeError, match=r"alpha-1\.0\.dist-info/METADATA is too large"):
        load_metadata(built.path, dist, limit=len(built.metadata) - 1)
    sdist = build_sdist(tmp_path, "alpha", "1.0")
    with pytest.raises(MetadataTooLargeError):
        load_metadata(sdist.path, parse_filename(sdist.filename), limit=10)


def test_metadata_is_capped_by_default(tmp_path: Path) -> None:
    """issue 9: a small wheel inflating to more than 16 MiB is refused without being read whole."""
    from tests.integration.test_limits import build_zip_bomb

    bomb = build_zip_bomb(tmp_path, "bomb", "1.0", DEFAULT_METADATA_LIMIT + 1)
    with pytest.raises(MetadataTooLargeError, match=r"over 16777216 bytes"):
        load_metadata(bomb.path, parse_filename(bomb.path.name))
    exact = build_zip_bomb(tmp_path, "exact", "1.0", DEFAULT_METADATA_LIMIT)
    assert len(load_metadata(exact.path, parse_filename(exact.path.name)) or b"") == (
        DEFAULT_METADATA_LIMIT
    )


@pytest.mark.parametrize("extension", [".tar.gz", ".zip"])
def test_scanning_an_archive_is_bounded(tmp_path: Path, extension: str) -> None:
    """A tar is read to its end and a zip without metadata CRC-checked: within a budget."""
    path = tmp_path / f"a-1.0{extension}"
    big = b"\0" * 4096
    if extension == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("a-1.0/big", big)
    else:
        with tarfile.open(path, "w:gz") as tf:
            info = tarfile.TarInfo("a-1.0/big")
            info.size = len(big)
            tf.addfile(info, io.BytesIO(big))
    dist = parse_filename(path.name)
    assert load_metadata(path, dist, max_scanned=4096) is None
    with pytest.raises(ArchiveTooLargeError, match="unpacks to more than 4095 bytes"):
        load_metadata(path, dist, max_scanned=4095)
