"""The one Accept negotiator, and the three uses of it: simple API, UI pages, error bodies."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import make_mocked_request

from proxy.accept import MediaRange, choose, parse_accept, quality
from proxy.simple_api import LATEST_ALIASES, Format
from proxy.web import keys, ui
from proxy.web.middleware import error_response

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
UV_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
ANY = (MediaRange("*", "*"),)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, ANY),
        ("", ANY),
        ("  ", ANY),
        (",,", ANY),
        ("text/html", (MediaRange("text", "html"),)),
        ("Text/HTML;Q=0.5", (MediaRange("text", "html", 0.5),)),
        ("text/*;q=0.3, */*;q=0.1", (MediaRange("text", "*", 0.3), MediaRange("*", "*", 0.1))),
        ("text/html;level=1;q=0.4;ext=x", (MediaRange("text", "html", 0.4),)),
        ("text/html ; q = 0.7", (MediaRange("text", "html", 0.7),)),
        ("text/html;q=0", (MediaRange("text", "html", 0.0),)),
        ("text/html;q=2", (MediaRange("text", "html", 1.0),)),
        ("text/html;q=-1", (MediaRange("text", "html", 0.0),)),
        ("text/html;q=nonsense", (MediaRange("text", "html", 0.0),)),
        ("text/html;q=nan", (MediaRange("text", "html", 0.0),)),
        ("text/html;q=", (MediaRange("text", "html", 0.0),)),
        # malformed ranges are skipped; nothing left means no preference
        ("html, */json, text/, /x", ANY),
        ("html, text/plain", (MediaRange("text", "plain"),)),
    ],
)
def test_parse_accept(header: str | None, expected: tuple[MediaRange, ...]) -> None:
    assert parse_accept(header) == expected


def test_parse_accept_aliases() -> None:
    ranges = parse_accept("application/vnd.pypi.simple.latest+json;q=0.5", LATEST_ALIASES)
    assert ranges == (MediaRange("application", "vnd.pypi.simple.v1+json", 0.5),)


@pytest.mark.parametrize(
    ("header", "media_type", "expected"),
    [
        ("text/html;q=0.2, text/*;q=0.5, */*;q=0.9", "text/html", 0.2),
        ("text/html;q=0.2, text/*;q=0.5, */*;q=0.9", "text/plain", 0.5),
        ("text/html;q=0.2, text/*;q=0.5, */*;q=0.9", "image/png", 0.9),
        ("text/*;q=0.5, text/html;q=0.2", "text/html", 0.2),  # order does not matter
        ("text/html", "image/png", 0.0),
        ("*/*;q=0", "text/html", 0.0),
        ("TEXT/HTML", "text/html", 1.0),
    ],
)
def test_quality_is_most_specific_match(header: str, media_type: str, expected: float) -> None:
    assert quality(parse_accept(header), media_type) == expected


OFFERS = ("text/html", "application/json")


@pytest.mark.parametrize(
    ("header", "offers", "expected"),
    [
        (None, OFFERS, "text/html"),
        ("", OFFERS, "text/html"),
        ("*/*", OFFERS, "text/html"),
        ("*/*", OFFERS[::-1], "application/json"),  # a tie: the server's order decides
        ("application/json", OFFERS, "application/json"),
        ("text/html;q=0.5, application/json;q=0.6", OFFERS, "application/json"),
        ("text/html;q=0.5, application/json;q=0.5", OFFERS[::-1], "application/json"),
        ("text/*", OFFERS, "text/html"),
        ("text/*, application/json", OFFERS[::-1], "application/json"),
        ("*/*, text/html;q=0", OFFERS, "application/json"),
        ("text/html;q=nonsense, application/json;q=0.1", OFFERS, "application/json"),
        ("image/png", OFFERS, None),
        ("*/*;q=0", OFFERS, None),
        ("text/html;q=0, application/json;q=0", OFFERS, None),
        ("text/html", (), None),
    ],
)
def test_choose(header: str | None, offers: tuple[str, ...], expected: str | None) -> None:
    assert choose(header, offers) == expected


def test_choose_keeps_the_offer_type() -> None:
    assert choose(PIP_ACCEPT, tuple(Format)) is Format.JSON
    assert choose("application/vnd.pypi.simple.latest+html", tuple(Format)) is None
    latest = choose(
        "application/vnd.pypi.simple.latest+html", tuple(Format), aliases=LATEST_ALIASES
    )
    assert latest is Format.HTML


# ---- the UI: JSON on ties, so curl gets JSON; a browser names text/html -----------------------


@pytest.mark.parametrize(
    ("headers", "path", "expected"),
    [
        ({}, "/", False),
        ({"Accept": "*/*"}, "/", False),
        ({"Accept": ""}, "/", False),
        ({"Accept": BROWSER}, "/", True),
        ({"Accept": "text/html"}, "/", True),
        ({"Accept": "application/xhtml+xml"}, "/", True),
        ({"Accept": "application/json"}, "/", False),
        ({"Accept": "text/html, application/json"}, "/", False),
        ({"Accept": "text/html;q=0.5, */*;q=0.9"}, "/", False),
        ({"Accept": "application/json;q=0.5, text/html"}, "/", True),
        ({"Accept": "image/png"}, "/", False),
        ({"Accept": BROWSER}, "/?format=json", False),
        ({"Accept": "application/json"}, "/?format=html", True),
        ({"Accept": BROWSER}, "/?format=xml", True),
    ],
)
def test_wants_html(headers: dict[str, str], path: str, expected: bool) -> None:
    assert ui.wants_html(make_mocked_request("GET", path, headers=headers)) is expected


# ---- error bodies: text on ties; pip, uv and API clients get JSON -----------------------------


@pytest.mark.parametrize(
    ("accept", "is_json"),
    [
        (None, False),
        ("*/*", False),
        (BROWSER, False),
        ("text/html", False),
        ("text/plain", False),
        (PIP_ACCEPT, True),
        (UV_ACCEPT, True),
        ("application/json", True),
        ("application/vnd.pypi.simple.v1+json", True),
        ("application/vnd.pypi.simple.latest+json", True),
        ("application/vnd.pypi.simple.v1+html, application/vnd.pypi.simple.v1+json;q=0.5", False),
        ("text/html, application/json;q=0.9", False),
        ("application/json;q=0", False),
    ],
)
def test_error_body_format(accept: str | None, is_json: bool) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    request = make_mocked_request("GET", "/x", headers=headers)
    request[keys.REQUEST_ID] = "r1"
    response = error_response(request, 404, "project 'x' not found")
    assert response.text is not None
    if is_json:
        assert response.content_type == "application/json"
        assert json.loads(response.text) == {
            "status": 404,
            "error": "project 'x' not found",
            "message": "project 'x' not found",  # devpi-client prints `message`
            "request_id": "r1",
        }
    else:
        assert response.content_type == "text/plain"
        assert response.text == "404: project 'x' not found\n"
