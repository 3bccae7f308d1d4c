"""What an uploaded archive says about itself, read from real wheels and sdists."""

from __future__ import annotations

import io
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.utils import NormalizedName
from packaging.version import Version

from proxy.errors import InvalidUploadError
from proxy.hosted.uploads import Inspected, inspect_distribution, parse_dist_filename
from tests.fakes.dists import build_sdist, build_wheel, render_metadata


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("Alpha_Beta-1.0-py3-none-any.whl", ("alpha-beta", "1.0", True)),
        ("alpha-1.0.post1-cp311-cp311-manylinux_2_17_x86_64.whl", ("alpha", "1.0.post1", True)),
        ("alpha-2.0rc1.tar.gz", ("alpha", "2.0rc1", False)),
        ("alpha.beta-1.0.zip", ("alpha-beta", "1.0", False)),
    ],
)
def test_parse_dist_filename(filename: str, expected: tuple[str, str, bool]) -> None:
    name, version, is_wheel = parse_dist_filename(filename)
    assert (name, str(version), is_wheel) == expected


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("alpha-1.0.exe", "'alpha-1.0.exe' is neither a wheel nor an sdist (.tar.gz, .zip)"),
        (
            "alpha-1.0.tar.bz2",
            "'alpha-1.0.tar.bz2' is neither a wheel nor an sdist (.tar.gz, .zip)",
        ),
        ("alpha-1.0.egg", "'alpha-1.0.egg' is neither a wheel nor an sdist (.tar.gz, .zip)"),
        ("alpha.whl", "'alpha.whl' is not a valid distribution file name: "),
        ("alpha-x!y-py3-none-any.whl", "'alpha-x!y-py3-none-any.whl' is not a valid distribution"),
        ("alpha.tar.gz", "'alpha.tar.gz' is not a valid distribution file name: "),
        (
            "alpha-notaversion.zip",
            "'alpha-notaversion.zip' is not a valid distribution file name: ",
        ),
    ],
)
def test_bad_file_names(filename: str, message: str) -> None:
    with pytest.raises(InvalidUploadError, match=f"^{re.escape(message)}"):
        parse_dist_filename(filename)


# ---- inspect_distribution ----------------------------------------------------------------------


def test_a_wheel_says_everything(tmp_path: Path) -> None:
    built = build_wheel(
        tmp_path,
        "Alpha",
        "1.0",
        requires_python=">=3.9",
        summary="the first",
        description="# Alpha\n\nhello",
    )
    assert inspect_distribution(built.path, built.filename) == Inspected(
        name=NormalizedName("alpha"),
        version=Version("1.0"),
        metadata=built.metadata,
        requires_python=">=3.9",
        summary="the first",
        description="# Alpha\n\nhello\n",
        description_type="text/markdown",
    )


def test_an_sdist_says_what_pkg_info_says_and_keeps_no_metadata(tmp_path: Path) -> None:
    built = build_sdist(tmp_path, "alpha", "2.0", summary="source", requires_python=">=3.10")
    assert inspect_distribution(built.path, built.filename) == Inspected(
        name=NormalizedName("alpha"),
        version=Version("2.0"),
        metadata=None,  # PEP 658 metadata is served for wheels only
        requires_python=">=3.10",
        summary="source",
        description="",
        description_type="",
    )


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_a_zip_sdist(tmp_path: Path) -> None:
    pkg_info = render_metadata("alpha", "1.0", summary="zipped")
    path = _zip(tmp_path / "alpha-1.0.zip", {"alpha-1.0/PKG-INFO": pkg_info})
    found = inspect_distribution(path, path.name)
    assert (found.name, found.version, found.summary) == ("alpha", Version("1.0"), "zipped")


def test_an_sdist_without_pkg_info_is_refused(tmp_path: Path) -> None:
    """issue 9: an sdist must carry PKG-INFO (a wheel renamed .zip passed as one before)."""
    path = tmp_path / "alpha-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo("alpha-1.0/setup.py")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"#\n"))
    with pytest.raises(InvalidUploadError, match=r"has no alpha-1\.0/PKG-INFO"):
        inspect_distribution(path, path.name)


def test_a_wheel_renamed_zip_is_not_an_sdist(tmp_path: Path) -> None:
    built = build_wheel(tmp_path, "alpha", "1.0")
    path = _renamed(built.path, tmp_path, "alpha-1.0.zip")
    with pytest.raises(
        InvalidUploadError, match=r"^sdist 'alpha-1\.0\.zip' has no alpha-1\.0/PKG-INFO$"
    ):
        inspect_distribution(path, path.name)


def _renamed(built_path: Path, tmp_path: Path, filename: str) -> Path:
    target = tmp_path / "renamed" / filename
    target.parent.mkdir(exist_ok=True)
    shutil.copy(built_path, target)
    return target


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("beta-1.0-py3-none-any.whl", "METADATA names 'alpha', the file name 'beta'"),
        ("alpha-2.0-py3-none-any.whl", "METADATA says version 1.0, the file name 2.0"),
    ],
)
def test_wheel_metadata_must_agree_with_the_name(
    tmp_path: Path, filename: str, message: str
) -> None:
    built = build_wheel(tmp_path, "alpha", "1.0")
    path = _renamed(built.path, tmp_path, filename)
    with pytest.raises(InvalidUploadError, match=f"^{re.escape(message)}$"):
        inspect_distribution(path, filename)


def test_a_renamed_sdist_is_described_by_its_name(tmp_path: Path) -> None:
    """sdist metadata may be dynamic or stale, so only a wheel's is held to its name."""
    built = build_sdist(tmp_path, "alpha", "1.0")
    path = _renamed(built.path, tmp_path, "beta-2.0.tar.gz")
    found = inspect_distribution(path, path.name)
    assert (found.name, found.version) == ("beta", Version("2.0"))


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (b"Metadata-Version: 2.1\nVersion: 1.0\n", "METADATA names '', the file name 'alpha'"),
        (
            b"Metadata-Version: 2.1\nName: alpha\nVersion: one\n",
            "METADATA has an invalid version 'one'",
        ),
        (b"Metadata-Version: 2.1\nName: alpha\n", "METADATA has an invalid version ''"),
    ],
)
def test_wheel_metadata_must_be_complete(tmp_path: Path, metadata: bytes, message: str) -> None:
    path = _zip(tmp_path / "alpha-1.0-py3-none-any.whl", {"alpha-1.0.dist-info/METADATA": metadata})
    with pytest.raises(InvalidUploadError, match=f"^{re.escape(message)}$"):
        inspect_distribution(path, path.name)


@pytest.mark.parametrize(
    "members",
    [
        {"alpha/__init__.py": b""},
        {"alpha-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\n"},
        {"alpha-1.0.dist-info/sub/METADATA": render_metadata("alpha", "1.0")},
        {"alpha/METADATA": render_metadata("alpha", "1.0")},
    ],
)
def test_a_wheel_without_metadata(tmp_path: Path, members: dict[str, bytes]) -> None:
    path = _zip(tmp_path / "alpha-1.0-py3-none-any.whl", members)
    message = "wheel 'alpha-1.0-py3-none-any.whl' has no .dist-info/METADATA"
    with pytest.raises(InvalidUploadError, match=f"^{re.escape(message)}$"):
        inspect_distribution(path, path.name)


def _truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.9])
def test_truncated_archives_are_refused(tmp_path: Path, kind: str, fraction: float) -> None:
    if kind == "wheel":
        built = build_wheel(tmp_path, "alpha", "1.0", payload_size=8192)
    else:
        built = build_sdist(tmp_path, "alpha", "1.0")
    _truncate(built.path, fraction)
    pattern = f"^'{re.escape(built.filename)}' is not a readable archive: "
    with pytest.raises(InvalidUploadError, match=pattern):
        inspect_distribution(built.path, built.filename)


@pytest.mark.parametrize(
    "filename", ["alpha-1.0-py3-none-any.whl", "alpha-1.0.tar.gz", "alpha-1.0.zip"]
)
def test_garbage_is_refused(tmp_path: Path, filename: str) -> None:
    path = tmp_path / filename
    path.write_bytes(b"<html>not an archive</html>" * 50)
    with pytest.raises(InvalidUploadError, match=f"^'{re.escape(filename)}' is not a readable"):
        inspect_distribution(path, filename)


def test_a_damaged_wheel_without_metadata(tmp_path: Path) -> None:
    path = _zip(tmp_path / "alpha-1.0-py3-none-any.whl", {"alpha/data.bin": b"A" * 1000})
    data = bytearray(path.read_bytes())
    start = data.index(b"A" * 100)
    data[start : start + 10] = b"B" * 10
    path.write_bytes(bytes(data))
    message = "'alpha-1.0-py3-none-any.whl' is a damaged archive"
    with pytest.raises(InvalidUploadError, match=f"^{re.escape(message)}$"):
        inspect_distribution(path, path.name)
