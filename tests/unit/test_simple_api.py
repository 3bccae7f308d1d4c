"""proxy.simple_api: Accept negotiation, parsing awkward real-world pages, rendering rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proxy.errors import NotAcceptableError, UpstreamProtocolError
from proxy.model import Distribution, ProjectList, ProjectPage
from proxy.simple_api import (
    Format,
    api_version,
    negotiate,
    parse_html,
    parse_html_list,
    parse_json,
    parse_json_list,
    render_html,
    render_json,
    render_list,
    render_page,
)

FIXTURES = Path(__file__).parent / "fixtures"
BASE = "https://mirror.example/simple/awkward/"

A = "a1" * 32
M = "b2" * 32
C = "c3" * 32
D = "d4" * 32
E = "e5" * 32
F = "f6" * 32
MD5 = "0f" * 16

JSON = Format.JSON
HTML = Format.HTML
LEGACY = Format.LEGACY_HTML
PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def load_json(body: bytes) -> dict[str, Any]:
    data = json.loads(body)
    assert isinstance(data, dict)
    return data


# ---- negotiation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, LEGACY),
        ("", LEGACY),
        ("   ", LEGACY),
        ("text/html", LEGACY),
        ("TEXT/HTML", LEGACY),
        ("text/html; charset=utf-8", LEGACY),
        ("text/*", LEGACY),
        ("*/*", LEGACY),
        ("application/vnd.pypi.simple.v1+json", JSON),
        ("application/vnd.pypi.simple.v1+html", HTML),
        (PIP_ACCEPT, JSON),
        ("application/vnd.pypi.simple.v1+html, application/vnd.pypi.simple.v1+json;q=0.9", HTML),
        # q-values decide, not order
        ("text/html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.6", JSON),
        ("application/vnd.pypi.simple.v1+json;q=0.4, text/html", LEGACY),
        # ties go to the server's preference: legacy HTML, then v1 HTML, then JSON
        ("application/vnd.pypi.simple.v1+json;q=0.5, text/html;q=0.5", LEGACY),
        ("application/*", HTML),
        ("application/*;q=0.2, application/vnd.pypi.simple.v1+json;q=0.3", JSON),
        # the most specific range sets the q-value, even when a wildcard rates higher
        ("application/vnd.pypi.simple.v1+json;q=0, application/*", HTML),
        ("*/*;q=0.1, application/vnd.pypi.simple.v1+json", JSON),
        ("*/*, text/html;q=0", HTML),
        ("*/*, text/html;q=0, application/vnd.pypi.simple.v1+html;q=0", JSON),
        ("text/html;level=1;q=0.5, application/vnd.pypi.simple.v1+json;q=0.4", LEGACY),
        ("text/html ; q = 0.7 , application/vnd.pypi.simple.v1+json ; q = 0.8", JSON),
        ("application/json, text/html;q=0.1", LEGACY),
        ("text/html;q=2, application/vnd.pypi.simple.v1+json;q=0.9", LEGACY),  # q clamped to 1
        ("text/html;q=nonsense, application/vnd.pypi.simple.v1+json;q=0.1", JSON),
        (",,text/html,", LEGACY),
        # PEP 691's meta version `latest` names the newest version the server speaks
        ("application/vnd.pypi.simple.latest+json", JSON),
        ("application/vnd.pypi.simple.latest+html", HTML),
    ],
)
def test_negotiate_accept(accept: str | None, expected: Format) -> None:
    assert negotiate(accept) is expected


@pytest.mark.parametrize(
    "accept",
    [
        "application/json",
        "image/png, text/plain",
        "text/html;q=0",
        "application/vnd.pypi.simple.v1+json;q=0",
        "*/*;q=0",
        "application/*;q=0, text/html;q=0",
        "application/vnd.pypi.simple.v2+json",
    ],
)
def test_negotiate_not_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptableError) as info:
        negotiate(accept)
    assert info.value.accept == accept
    assert info.value.offered == [LEGACY.value, HTML.value, JSON.value]


@pytest.mark.parametrize(
    ("param", "accept", "expected"),
    [
        ("json", None, JSON),
        ("JSON", "text/html", JSON),
        ("html", PIP_ACCEPT, HTML),
        (" html ", None, HTML),
        ("text/html", "application/vnd.pypi.simple.v1+json", LEGACY),
        ("application/vnd.pypi.simple.v1+json", "text/html;q=0", JSON),
        ("application/vnd.pypi.simple.v1+html", None, HTML),
        ("", "application/vnd.pypi.simple.v1+json", JSON),  # empty parameter: Accept decides
        (None, "application/vnd.pypi.simple.v1+json", JSON),
    ],
)
def test_negotiate_format_parameter_wins(
    param: str | None, accept: str | None, expected: Format
) -> None:
    assert negotiate(accept, param) is expected


@pytest.mark.parametrize("param", ["xml", "application/json", "v1+json", "text"])
def test_negotiate_unknown_format_parameter(param: str) -> None:
    with pytest.raises(NotAcceptableError) as info:
        negotiate("*/*", param)
    assert info.value.accept == f"format={param}"


# ---- parsing HTML ----------------------------------------------------------------------------


AWKWARD_HTML = ProjectPage(
    name="awkward",
    files=(
        Distribution(
            filename="awkward-1.0-py3-none-any.whl",
            url="https://mirror.example/packages/a1/b2/awkward-1.0-py3-none-any.whl",
            hashes={"sha256": A},
            requires_python=">=3.8",
            metadata=True,
            metadata_hashes={"sha256": M},
        ),
        Distribution(
            filename="awkward-1.0.tar.gz",
            url="https://files.example/packages/awkward-1.0.tar.gz",
            hashes={"md5": MD5},
        ),
        Distribution(
            filename="awkward-0.9-py3-none-any.whl",
            url="https://mirror.example/packages/awkward-0.9-py3-none-any.whl",
            yanked=True,
        ),
        Distribution(
            filename="awkward-0.8.tar.gz",
            url="https://mirror.example/simple/awkward/awkward-0.8.tar.gz",
            hashes={"sha256": C},
            requires_python=">=3.6, <4",
            yanked=True,
            yanked_reason='broken <build> & "bad"',
            metadata=True,
        ),
        Distribution(
            filename="awkward-0.7-py3-none-any.whl",
            url="https://mirror.example/packages/awkward-0.7-py3-none-any.whl",
            hashes={"sha256": D},
            metadata=True,
            metadata_hashes={"sha256": F},
            gpg_sig=True,
        ),
        Distribution(
            filename="awkward-0.6+cpu-py3-none-any.whl",
            url="https://mirror.example/simple/awkward/awkward-0.6%2Bcpu-py3-none-any.whl",
            yanked=True,
            gpg_sig=False,
        ),
    ),
)


def test_parse_html_awkward_fixture() -> None:
    assert parse_html(fixture("awkward.html"), BASE, "awkward") == AWKWARD_HTML


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "based.html",
            ProjectPage(
                name="",
                files=(
                    Distribution(
                        filename="based-1.0.tar.gz",
                        url="https://cdn.example/root/files/based-1.0.tar.gz",
                        hashes={"sha256": A},
                    ),
                    Distribution(
                        filename="based-1.1.tar.gz", url="https://cdn.example/top/based-1.1.tar.gz"
                    ),
                    Distribution(
                        filename="based-1.2.tar.gz", url="https://other.example/based-1.2.tar.gz"
                    ),
                ),
            ),
        ),
        (
            "relative_base.html",
            ProjectPage(
                name="",
                files=(
                    Distribution(
                        filename="relbase-1.0.tar.gz",
                        url="https://mirror.example/mirror/relbase-1.0.tar.gz",
                    ),
                ),
            ),
        ),
    ],
)
def test_parse_html_base_href(name: str, expected: ProjectPage) -> None:
    assert parse_html(fixture(name), BASE) == expected


def _one_anchor(attrs: str) -> bytes:
    return f"<html><body><a {attrs}>x</a></body></html>".encode()


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        (
            'href="f-1.0.tar.gz"',
            Distribution(filename="f-1.0.tar.gz", url=BASE + "f-1.0.tar.gz"),
        ),
        (
            f'href="f-1.0.tar.gz#sha256={A}" data-dist-info-metadata="sha256={M}"',
            Distribution(
                filename="f-1.0.tar.gz",
                url=BASE + "f-1.0.tar.gz",
                hashes={"sha256": A},
                metadata=True,
                metadata_hashes={"sha256": M},
            ),
        ),
        (
            f'href="f-1.0.tar.gz" data-core-metadata="sha256={M}"',
            Distribution(
                filename="f-1.0.tar.gz",
                url=BASE + "f-1.0.tar.gz",
                metadata=True,
                metadata_hashes={"sha256": M},
            ),
        ),
        (
            'href="f-1.0.tar.gz" data-dist-info-metadata="true"',
            Distribution(filename="f-1.0.tar.gz", url=BASE + "f-1.0.tar.gz", metadata=True),
        ),
        (
            'href="f-1.0.tar.gz" data-core-metadata',
            Distribution(filename="f-1.0.tar.gz", url=BASE + "f-1.0.tar.gz", metadata=True),
        ),
        (
            f'href="f-1.0.tar.gz" data-core-metadata="sha256={F}" '
            f'data-dist-info-metadata="sha256={E}"',
            Distribution(
                filename="f-1.0.tar.gz",
                url=BASE + "f-1.0.tar.gz",
                metadata=True,
                metadata_hashes={"sha256": F},
            ),
        ),
        (
            'href="f-1.0.tar.gz" data-yanked="reason &amp; more"',
            Distribution(
                filename="f-1.0.tar.gz",
                url=BASE + "f-1.0.tar.gz",
                yanked=True,
                yanked_reason="reason & more",
            ),
        ),
        (
            'href="f-1.0.tar.gz" data-requires-python="&gt;=3.8,!=3.9.*"',
            Distribution(
                filename="f-1.0.tar.gz", url=BASE + "f-1.0.tar.gz", requires_python=">=3.8,!=3.9.*"
            ),
        ),
        (
            'HREF="F-1.0.TAR.GZ#MD5=ABCDEF" DATA-YANKED',
            Distribution(
                filename="F-1.0.TAR.GZ",
                url=BASE + "F-1.0.TAR.GZ",
                hashes={"md5": "abcdef"},
                yanked=True,
            ),
        ),
        pytest.param(  # pip fails with "Unknown hash name" on hashes it cannot compute
            'href="f-1.0.tar.gz#egg=f-1.0"',
            Distribution(filename="f-1.0.tar.gz", url=BASE + "f-1.0.tar.gz"),
            id="egg fragment is not a hash",
        ),
    ],
)
def test_parse_html_anchor(attrs: str, expected: Distribution) -> None:
    assert parse_html(_one_anchor(attrs), BASE, "f") == ProjectPage(name="f", files=(expected,))


@pytest.mark.parametrize(
    "body",
    [b"", b"<html><body>no links</body></html>", b'<a href="../">up</a><a href="#top">top</a>'],
)
def test_parse_html_without_files(body: bytes) -> None:
    assert parse_html(body, BASE, "x") == ProjectPage(name="x")


def test_parse_html_tolerates_invalid_utf8() -> None:
    body = b'<a href="f-1.0.tar.gz" data-yanked="\xff">x</a>'
    page = parse_html(body, BASE)
    assert [d.filename for d in page.files] == ["f-1.0.tar.gz"]
    assert page.files[0].yanked


# ---- parsing JSON ----------------------------------------------------------------------------


AWKWARD_JSON = ProjectPage(
    name="awkward",
    files=(
        Distribution(
            filename="awkward-1.0-py3-none-any.whl",
            url="https://mirror.example/packages/a1/b2/awkward-1.0-py3-none-any.whl",
            hashes={"sha256": A},
            requires_python=">=3.8",
            metadata=True,
            metadata_hashes={"sha256": M},
            size=1234,
            upload_time="2024-01-02T03:04:05.678901Z",
        ),
        Distribution(
            filename="awkward-1.0.tar.gz",
            url="https://files.example/packages/awkward-1.0.tar.gz",
            hashes={"md5": MD5},
            yanked=True,
            yanked_reason="broken <build>",
            metadata=True,
            size=999,
        ),
        Distribution(
            filename="awkward-0.9-py3-none-any.whl",
            url="https://mirror.example/packages/awkward-0.9-py3-none-any.whl",
            yanked=True,
            size=0,
            gpg_sig=False,
        ),
        Distribution(  # core-metadata: false wins over the legacy spelling
            filename="awkward-0.8.tar.gz",
            url="https://mirror.example/simple/awkward/awkward-0.8.tar.gz",
            hashes={"sha256": C},
        ),
        Distribution(
            filename="awkward-0.7-py3-none-any.whl",
            url="https://mirror.example/packages/awkward-0.7-py3-none-any.whl",
            hashes={"sha256": D},
            metadata=True,
            metadata_hashes={"sha256": F, "md5": MD5},
        ),
        Distribution(  # no filename: taken from the URL, unquoted
            filename="awkward-0.6+cpu.zip",
            url="https://files.example/x/awkward-0.6%2Bcpu.zip",
        ),
    ),
    versions=("0.7", "0.8", "0.9", "1.0"),
    last_serial=12345,
)


def test_parse_json_awkward_fixture() -> None:
    assert parse_json(fixture("awkward.json"), BASE) == AWKWARD_JSON


def _json_page(meta: dict[str, Any], *files: dict[str, Any]) -> bytes:
    return json.dumps({"meta": meta, "name": "f", "files": list(files)}).encode()


@pytest.mark.parametrize(
    ("meta", "serial"),
    [
        ({"api-version": "1.0", "_last-serial": 42}, 42),
        ({"api-version": "1.0", "_last-serial": "42"}, 42),
        ({"api-version": "1.0", "_last-serial": "forty-two"}, None),
        ({"api-version": "1.0", "_last-serial": True}, None),
        ({"api-version": "1.0", "_last-serial": None}, None),
        ({"api-version": "1.0"}, None),
    ],
)
def test_parse_json_last_serial(meta: dict[str, Any], serial: int | None) -> None:
    assert parse_json(_json_page(meta), BASE) == ProjectPage(name="f", last_serial=serial)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"url": "f-1.0.tar.gz", "hashes": {}, "yanked": "reason"},
            Distribution(
                "f-1.0.tar.gz", BASE + "f-1.0.tar.gz", yanked=True, yanked_reason="reason"
            ),
        ),
        (
            {"url": "f-1.0.tar.gz", "hashes": {}, "yanked": True},
            Distribution("f-1.0.tar.gz", BASE + "f-1.0.tar.gz", yanked=True),
        ),
        (
            {"url": "f-1.0.tar.gz", "hashes": {}, "yanked": False},
            Distribution("f-1.0.tar.gz", BASE + "f-1.0.tar.gz"),
        ),
        (
            {"url": "f-1.0.tar.gz", "hashes": {}, "dist-info-metadata": {"sha256": M}},
            Distribution(
                "f-1.0.tar.gz", BASE + "f-1.0.tar.gz", metadata=True, metadata_hashes={"sha256": M}
            ),
        ),
        (
            {"url": "f-1.0.tar.gz", "hashes": {}, "core-metadata": True},
            Distribution("f-1.0.tar.gz", BASE + "f-1.0.tar.gz", metadata=True),
        ),
        (
            {"url": "f-1.0.tar.gz", "hashes": {"sha256": A, "md5": MD5, "bogus": 3}},
            Distribution("f-1.0.tar.gz", BASE + "f-1.0.tar.gz", hashes={"sha256": A, "md5": MD5}),
        ),
        (
            {"url": "f-1.0.tar.gz", "hashes": "nope", "size": -1, "requires-python": 3},
            Distribution("f-1.0.tar.gz", BASE + "f-1.0.tar.gz"),
        ),
        pytest.param(
            {"url": "f-1.0.tar.gz", "hashes": {}, "size": True},
            Distribution("f-1.0.tar.gz", BASE + "f-1.0.tar.gz"),
            id="a JSON boolean is not a size",
        ),
        (
            {"filename": "f-1.0.tar.gz", "url": "https://cdn.example/blob/123", "hashes": {}},
            Distribution("f-1.0.tar.gz", "https://cdn.example/blob/123"),
        ),
    ],
)
def test_parse_json_file(raw: dict[str, Any], expected: Distribution) -> None:
    page = parse_json(_json_page({"api-version": "1.0"}, raw), BASE)
    assert page == ProjectPage(name="f", files=(expected,))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"string"',
        b'{"meta": {}, "name": "f"}',
        b'{"meta": {}, "name": "f", "files": {}}',
    ],
)
def test_parse_json_rejects_broken_pages(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError) as info:
        parse_json(body, BASE)
    assert info.value.upstream == BASE


# ---- parsing the root page -------------------------------------------------------------------


def test_parse_html_list_fixture() -> None:
    expected = ProjectList(names=("Foo.Bar", "zope.interface", "a&b"))
    assert parse_html_list(fixture("index.html"), "https://mirror.example/simple/") == expected


def test_parse_json_list_fixture() -> None:
    expected = ProjectList(names=("Foo.Bar", "zope.interface"), last_serial=678)
    assert parse_json_list(fixture("index.json"), "https://mirror.example/simple/") == expected


@pytest.mark.parametrize("body", [b"{}", b'{"projects": {}}', b"[1]", b"{"])
def test_parse_json_list_rejects_broken_pages(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        parse_json_list(body, BASE)


# ---- rendering -------------------------------------------------------------------------------


SIZED = ProjectPage(
    name="awkward",
    files=(
        Distribution(
            "awkward-1.0-py3-none-any.whl",
            "https://files.example/awkward-1.0-py3-none-any.whl",
            hashes={"md5": MD5, "sha256": A},
            requires_python=">=3.8",
            metadata=True,
            metadata_hashes={"md5": MD5, "sha256": M},
            size=10,
            upload_time="2024-01-02T03:04:05Z",
        ),
        Distribution(
            "awkward-0.9.tar.gz",
            "https://files.example/awkward-0.9.tar.gz",
            hashes={"sha256": C},
            yanked=True,
            yanked_reason='broken <build> & "bad"',
            size=20,
        ),
    ),
    last_serial=7,
)
UNSIZED = ProjectPage(
    name="awkward",
    files=(
        *SIZED.files,
        Distribution(
            "awkward-0.8.tar.gz",
            "https://files.example/awkward-0.8.tar.gz",
            hashes={"md5": MD5},
            yanked=True,
            metadata=True,
            gpg_sig=True,
        ),
    ),
)


@pytest.mark.parametrize(
    ("page", "version"),
    [(SIZED, "1.1"), (UNSIZED, "1.0"), (ProjectPage(name="empty"), "1.1")],
)
def test_api_version(page: ProjectPage, version: str) -> None:
    assert api_version(page) == version
    assert f'<meta name="pypi:repository-version" content="{version}">'.encode() in render_html(
        page
    )
    assert load_json(render_json(page))["meta"]["api-version"] == version


def test_render_html_anchors() -> None:
    body = render_html(UNSIZED, url_prefix="/root/pypi/+f/").decode()
    anchors = [line.strip() for line in body.splitlines() if line.strip().startswith("<a ")]
    assert anchors == [
        f'<a href="/root/pypi/+f/https://files.example/awkward-1.0-py3-none-any.whl#sha256={A}" '
        'data-requires-python="&gt;=3.8" '
        f'data-dist-info-metadata="sha256={M}" data-core-metadata="sha256={M}">'
        "awkward-1.0-py3-none-any.whl</a><br/>",
        f'<a href="/root/pypi/+f/https://files.example/awkward-0.9.tar.gz#sha256={C}" '
        'data-yanked="broken &lt;build&gt; &amp; &quot;bad&quot;">awkward-0.9.tar.gz</a><br/>',
        f'<a href="/root/pypi/+f/https://files.example/awkward-0.8.tar.gz#md5={MD5}" '
        'data-dist-info-metadata="true" data-core-metadata="true" data-yanked="" '
        'data-gpg-sig="true">awkward-0.8.tar.gz</a><br/>',
    ]
    assert "<title>Links for awkward</title>" in body
    assert "<h1>Links for awkward</h1>" in body


def test_render_html_escapes_the_name() -> None:
    body = render_html(ProjectPage(name="<script>")).decode()
    assert "<script>" not in body
    assert "Links for &lt;script&gt;" in body


def test_render_json() -> None:
    data = load_json(render_json(UNSIZED, url_prefix="/p/"))
    assert data == {
        "meta": {"api-version": "1.0"},
        "name": "awkward",
        "files": [
            {
                "filename": "awkward-1.0-py3-none-any.whl",
                "url": "/p/https://files.example/awkward-1.0-py3-none-any.whl",
                "hashes": {"md5": MD5, "sha256": A},
                "requires-python": ">=3.8",
                "core-metadata": {"md5": MD5, "sha256": M},
                "size": 10,
                "upload-time": "2024-01-02T03:04:05Z",
            },
            {
                "filename": "awkward-0.9.tar.gz",
                "url": "/p/https://files.example/awkward-0.9.tar.gz",
                "hashes": {"sha256": C},
                "yanked": 'broken <build> & "bad"',
                "size": 20,
            },
            {
                "filename": "awkward-0.8.tar.gz",
                "url": "/p/https://files.example/awkward-0.8.tar.gz",
                "hashes": {"md5": MD5},
                "core-metadata": True,
                "yanked": True,
                "gpg-sig": True,
            },
        ],
        "versions": ["1.0", "0.9", "0.8"],
    }


@pytest.mark.parametrize("page", [SIZED, UNSIZED, AWKWARD_JSON, AWKWARD_HTML])
def test_render_json_uses_core_metadata_only(page: ProjectPage) -> None:
    body = render_json(page)
    assert b"dist-info-metadata" not in body
    data = load_json(body)
    assert "versions" in data
    assert data["meta"]["api-version"] == api_version(page)
    assert data["meta"].get("_last-serial") == page.last_serial
    for item in data["files"]:
        assert isinstance(item["hashes"], dict)


@pytest.mark.parametrize("page", [SIZED, UNSIZED, AWKWARD_JSON, AWKWARD_HTML])
def test_json_round_trip(page: ProjectPage) -> None:
    """Absolute URLs survive render → parse unchanged; `versions` is filled in on the way."""
    expected = ProjectPage(
        name=page.name,
        files=page.files,
        versions=page.all_versions(),
        last_serial=page.last_serial,
    )
    assert parse_json(render_json(page), "https://elsewhere.example/") == expected


def test_html_round_trip() -> None:
    """HTML carries one hash and no sizes, so a page made of exactly that survives."""
    page = ProjectPage(
        name="awkward",
        files=tuple(
            Distribution(
                filename=d.filename,
                url=d.url,
                hashes=d.hashes,
                requires_python=d.requires_python,
                yanked=d.yanked,
                yanked_reason=d.yanked_reason,
                metadata=d.metadata,
                metadata_hashes=d.metadata_hashes,
                gpg_sig=d.gpg_sig,
            )
            for d in AWKWARD_HTML.files
        ),
    )
    assert parse_html(render_html(page), "https://elsewhere.example/", "awkward") == page
    assert parse_html(render_html(AWKWARD_HTML), BASE, "awkward") == AWKWARD_HTML


@pytest.mark.parametrize(
    ("fmt", "render"),
    [(JSON, render_json), (HTML, render_html), (LEGACY, render_html)],
)
def test_render_page_dispatches(fmt: Format, render: Any) -> None:
    assert render_page(SIZED, fmt, "/x/") == render(SIZED, "/x/")


# ---- rendering the root page -----------------------------------------------------------------


PROJECTS = ProjectList(names=("Foo.Bar", "a&b"), last_serial=9)


def test_render_list_html() -> None:
    body = render_list(PROJECTS, LEGACY).decode()
    assert '<a href="foo-bar/">Foo.Bar</a><br/>' in body
    assert '<a href="a&amp;b/">a&amp;b</a><br/>' in body
    assert parse_html_list(body.encode(), "https://h.example/simple/") == ProjectList(
        names=PROJECTS.names
    )


def test_render_list_json() -> None:
    assert load_json(render_list(PROJECTS, JSON)) == {
        "meta": {"api-version": "1.0", "_last-serial": 9},
        "projects": [{"name": "Foo.Bar"}, {"name": "a&b"}],
    }
    assert parse_json_list(render_list(PROJECTS, JSON), "https://h.example/simple/") == PROJECTS
    assert load_json(render_list(ProjectList(), JSON)) == {
        "meta": {"api-version": "1.0"},
        "projects": [],
    }
