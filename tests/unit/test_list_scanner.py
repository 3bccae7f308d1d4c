"""ListScanner reads a root page in chunks of any size as the whole-body parsers read it."""

from __future__ import annotations

import html
import json

import pytest
from packaging.utils import canonicalize_name

from proxy.errors import UpstreamProtocolError
from proxy.model import ProjectList
from proxy.simple_api import (
    MAX_CARRY,
    Format,
    ListScanner,
    parse_html_list,
    parse_json_list,
    render_list,
    render_list_chunks,
)

BASE = "https://h.example/simple/"
NAMES = ("Foo.Bar", "a&b", "zope.interface", "x_y", "ünï", *(f"p{i}" for i in range(300)))


def scan(body: bytes, size: int, *, is_json: bool) -> tuple[list[str], int | None]:
    scanner = ListScanner(BASE, is_json=is_json)
    names: list[str] = []
    for start in range(0, len(body), size):
        names += scanner.feed(body[start : start + size])
    names += scanner.close()
    return names, scanner.last_serial


@pytest.mark.parametrize("size", [1, 7, 64, 1000, 10**6])
def test_html_in_chunks_reads_what_the_parser_reads(size: int) -> None:
    body = render_list(ProjectList(NAMES), Format.HTML)
    body = body.replace(b"<a href", b'<!-- x --><A  class="c" href', 3)
    assert scan(body, size, is_json=False) == (list(parse_html_list(body, BASE).names), None)


@pytest.mark.parametrize("size", [1, 5, 333, 10**6])
def test_json_in_chunks_reads_what_the_parser_reads(size: int) -> None:
    doc = {
        "meta": {"api-version": "1.1", "_last-serial": 42},
        "projects": [{"name": n} for n in NAMES] + [{"_x": [1, {"y": "]"}], "name": "odd"}],
    }
    for body in (json.dumps(doc).encode(), json.dumps(doc, indent=2).encode()):
        expected = parse_json_list(body, BASE)
        assert scan(body, size, is_json=True) == (list(expected.names), 42)


def test_meta_after_the_projects_gives_the_serial() -> None:
    body = b'{"projects": [{"name": "a"}], "meta": {"_last-serial": 7}}'
    assert scan(body, 3, is_json=True) == (["a"], 7)


@pytest.mark.parametrize(
    "body",
    [b'{"meta": {}}', b'{"projects": [{"name": "a"}, {"name": "b', b"[1, 2]"],
)
def test_broken_json_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        scan(body, 4, is_json=True)


def test_an_endless_anchor_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        scan(b'<a href="x/">' + b"x" * (MAX_CARRY + 10), 4096, is_json=False)


def _old_render(names: tuple[str, ...], fmt: Format, serial: int | None) -> bytes:
    """render_list as it was when it built the whole body at once."""
    if fmt is Format.JSON:
        meta: dict[str, object] = {"api-version": "1.0"}
        if serial is not None:
            meta["_last-serial"] = serial
        data = {"meta": meta, "projects": [{"name": n} for n in names]}
        return json.dumps(data, separators=(",", ":")).encode()
    out = [
        "<!DOCTYPE html>\n<html>\n  <head>\n",
        '    <meta name="pypi:repository-version" content="1.0">\n',
        "    <title>Simple index</title>\n  </head>\n  <body>\n",
    ]
    out.extend(
        f'    <a href="{html.escape(canonicalize_name(n))}/">{html.escape(n)}</a><br/>\n'
        for n in names
    )
    out.append("  </body>\n</html>\n")
    return "".join(out).encode()


@pytest.mark.parametrize("fmt", list(Format))
@pytest.mark.parametrize("serial", [None, 9])
def test_chunks_join_to_the_whole_body_rendering(fmt: Format, serial: int | None) -> None:
    names = NAMES * 10
    joined = b"".join(render_list_chunks(iter(names), fmt, serial))
    assert joined == _old_render(names, fmt, serial)
    assert render_list(ProjectList(names, serial), fmt) == joined
