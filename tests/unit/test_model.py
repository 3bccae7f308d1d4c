"""proxy.model: names, path safety, file keys and the page dataclasses, as data tables."""

from __future__ import annotations

import hashlib

import pytest

from proxy.errors import InvalidNameError, UnsafePathError
from proxy.model import (
    Distribution,
    ProjectPage,
    check_file_key,
    check_filename,
    file_key,
    is_sha256,
    mask_url,
    normalize,
    parse_index_name,
    project_of,
    version_of,
)

SHA = "0123456789abcdef" * 4
URL_KEY = "u" + "0123456789" * 4


# ---- normalize -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("foo", "foo"),
        ("Foo", "foo"),
        ("FOO_BAR", "foo-bar"),
        ("zope.interface", "zope-interface"),
        ("Foo.Bar_baz--Qux", "foo-bar-baz-qux"),
        ("a", "a"),
        ("A1", "a1"),
        ("1a", "1a"),
        ("a._-b", "a-b"),
        ("a" * 200, "a" * 200),
    ],
)
def test_normalize(name: str, expected: str) -> None:
    assert normalize(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-foo",
        "foo-",
        ".foo",
        "foo.",
        "_foo",
        "foo bar",
        "foo/bar",
        "../foo",
        "..",
        "foo\\bar",
        "foo\x00",
        "foo%2fbar",
        "foo\n",  # `$` also matches before a trailing newline
        "\u017fix",  # LATIN SMALL LETTER LONG S matches [a-z] under IGNORECASE
        "\u212aelvin",  # KELVIN SIGN matches [a-z] under IGNORECASE
    ],
)
def test_normalize_rejects_invalid_names(name: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        normalize(name)
    assert info.value.name == name


def test_normalize_rejects_names_over_200_characters() -> None:
    name = "a" * 201
    with pytest.raises(InvalidNameError) as info:
        normalize(name)
    assert info.value.reason == "longer than 200 characters"
    assert len(str(info.value)) < 120  # the message shortens the name


# ---- index names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "index", "expected"),
    [
        ("root", "pypi", "root/pypi"),
        ("a.b", "c_d-1", "a.b/c_d-1"),
        ("R00t", "Dev", "R00t/Dev"),
        ("u" * 64, "i" * 64, "u" * 64 + "/" + "i" * 64),
    ],
)
def test_parse_index_name(user: str, index: str, expected: str) -> None:
    assert parse_index_name(user, index) == expected


@pytest.mark.parametrize(
    ("user", "index"),
    [
        ("", "pypi"),
        ("root", ""),
        (".", "pypi"),
        ("root", ".."),
        ("-root", "pypi"),
        ("root", "_pypi"),
        ("root/x", "pypi"),
        ("root", "py pi"),
        ("root", "py\\pi"),
        ("root", "pypi\x00"),
        ("u" * 65, "pypi"),
        ("root", "pypi\n"),  # `$` also matches before a trailing newline
    ],
)
def test_parse_index_name_rejects(user: str, index: str) -> None:
    with pytest.raises(InvalidNameError):
        parse_index_name(user, index)


# ---- path safety -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filename",
    [
        "foo-1.0.tar.gz",
        "Foo_Bar-1.0-py3-none-any.whl",
        "foo-1.0+local.1-py3-none-any.whl",
        "foo-1.0-py3-none-any.whl.metadata",
        "foo-1!2.0.zip",
    ],
)
def test_check_filename_accepts_distribution_names(filename: str) -> None:
    assert check_filename(filename) == filename


@pytest.mark.parametrize(
    "filename",
    [
        "",
        ".",
        "..",
        "../foo-1.0.tar.gz",
        "foo/../../etc/passwd",
        "foo/bar.whl",
        "/etc/passwd",
        "%2e%2e",
        "%2e%2e%2fetc%2fpasswd",
        "..%2fpasswd",
        "foo..whl",
        "..\\..\\boot.ini",
        "foo\\bar.whl",
        "foo\x00.whl",
        ".hidden.whl",
        "foo bar.whl",
        "a" * 256,
        "foo-1.0.tar.gz\n",  # `$` also matches before a trailing newline
    ],
)
def test_check_filename_rejects_unsafe(filename: str) -> None:
    with pytest.raises(UnsafePathError) as info:
        check_filename(filename)
    assert info.value.segment == filename


@pytest.mark.parametrize("key", [SHA, URL_KEY])
def test_check_file_key_accepts(key: str) -> None:
    assert check_file_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "..",
        "%2e%2e",
        SHA.upper(),
        SHA[:-1],
        SHA + "0",
        URL_KEY[:-1],
        "x" + URL_KEY[1:],
        SHA[:-2] + "/.",
        SHA[:-1] + "\\",
        SHA[:-1] + "\x00",
        SHA + "\n",  # `$` also matches before a trailing newline
        URL_KEY + "\n",
    ],
)
def test_check_file_key_rejects(key: str) -> None:
    with pytest.raises(UnsafePathError):
        check_file_key(key)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(SHA, True), (SHA.upper(), False), (SHA[:-1], False), ("", False), (SHA + "\n", False)],
)
def test_is_sha256(value: str, expected: bool) -> None:
    assert is_sha256(value) is expected


# ---- file keys -------------------------------------------------------------------------------


def test_file_key_is_the_sha256_when_given() -> None:
    assert file_key(SHA, "https://files.example/foo-1.0.tar.gz") == SHA


@pytest.mark.parametrize("sha256", [None, "", "abc", SHA.upper(), SHA + "\n"])
def test_file_key_falls_back_to_the_url(sha256: str | None) -> None:
    url = "https://files.example/foo-1.0.tar.gz"
    expected = "u" + hashlib.sha256(url.encode()).hexdigest()[:40]
    assert file_key(sha256, url) == expected
    assert check_file_key(file_key(sha256, url)) == expected


def test_file_key_differs_per_url() -> None:
    one = file_key(None, "https://files.example/a/foo-1.0.tar.gz")
    two = file_key(None, "https://files.example/b/foo-1.0.tar.gz")
    assert one != two


@pytest.mark.parametrize(
    ("dist", "sha256", "key"),
    [
        (Distribution("f-1.0.tar.gz", "https://h.example/f", {"sha256": SHA}), SHA, SHA),
        (
            Distribution("f-1.0.tar.gz", "https://h.example/f", {"md5": "0" * 32}),
            None,
            file_key(None, "https://h.example/f"),
        ),
        (
            Distribution("f-1.0.tar.gz", "https://h.example/f", {"sha256": "nothex"}),
            None,
            file_key(None, "https://h.example/f"),
        ),
    ],
)
def test_distribution_sha256_and_key(dist: Distribution, sha256: str | None, key: str) -> None:
    assert dist.sha256 == sha256
    assert dist.key == key


# ---- file names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "project", "version"),
    [
        ("Foo_Bar-1.0-py3-none-any.whl", "foo-bar", "1.0"),
        ("foo-1.0.0-cp311-cp311-manylinux_2_17_x86_64.whl", "foo", "1.0.0"),
        ("foo-1.0+cpu-py3-none-any.whl", "foo", "1.0+cpu"),
        ("foo-bar-1.0.tar.gz", "foo-bar", "1.0"),
        ("foo.bar-2.0.post1.tar.gz", "foo-bar", "2.0.post1"),
        ("foo-1.0.zip", "foo", "1.0"),
        ("foo-1.0.tar.bz2", "foo", "1.0"),
        ("foo-1.0.tgz", "foo", "1.0"),
        ("foo-1.0.tar", "foo", "1.0"),
        ("foo-1.0-py3.8.egg", "foo", None),
        ("foo-notaversion.tar.gz", "foo", None),
        ("foo-bar-baz.whl", "foo", None),
        ("README", "readme", None),
        ("not a dist.whl", None, None),
    ],
)
def test_project_and_version_of(filename: str, project: str | None, version: str | None) -> None:
    assert project_of(filename) == project
    assert version_of(filename) == version


# ---- mask_url --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h.example/simple/", "https://h.example/simple/"),
        ("https://user:secret@h.example/simple/", "https://user:***@h.example/simple/"),
        ("https://user:secret@h.example:8443/s/?q=1", "https://user:***@h.example:8443/s/?q=1"),
        ("https://user:p@ss@h.example/simple/", "https://user:***@h.example/simple/"),
        ("https://:secret@h.example/simple/", "https://***@h.example/simple/"),
        ("http://127.0.0.1:3141/root/pypi/", "http://127.0.0.1:3141/root/pypi/"),
    ],
)
def test_mask_url(url: str, expected: str) -> None:
    assert mask_url(url) == expected
    assert "secret" not in mask_url(url)


# ---- ProjectPage -----------------------------------------------------------------------------


def _dist(filename: str) -> Distribution:
    return Distribution(filename=filename, url=f"https://h.example/{filename}")


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (ProjectPage(name="foo"), ()),
        (ProjectPage(name="foo", versions=("2.0", "1.0")), ("2.0", "1.0")),
        (
            ProjectPage(
                name="foo",
                files=(
                    _dist("foo-1.0.tar.gz"),
                    _dist("foo-1.0-py3-none-any.whl"),
                    _dist("foo-0.9.zip"),
                    _dist("foo-garbage"),
                    _dist("foo-2.0rc1-py3-none-any.whl"),
                ),
            ),
            ("1.0", "0.9", "2.0rc1"),
        ),
        (  # explicit PEP 700 versions win over file names (a release may have no files)
            ProjectPage(name="foo", files=(_dist("foo-1.0.tar.gz"),), versions=("1.0", "3.0")),
            ("1.0", "3.0"),
        ),
    ],
)
def test_all_versions(page: ProjectPage, expected: tuple[str, ...]) -> None:
    assert page.all_versions() == expected


def test_find() -> None:
    wheel = _dist("foo-1.0-py3-none-any.whl")
    page = ProjectPage(name="foo", files=(_dist("foo-1.0.tar.gz"), wheel))
    assert page.find("foo-1.0-py3-none-any.whl") is wheel
    assert page.find("foo-2.0.tar.gz") is None
