"""Security headers on every response, and X-Forwarded-* believed only from trusted proxies."""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.app import create_app
from proxy.config import Config, ServerConfig
from tests.fakes.index import FakeIndex
from tests.integration.conftest import (
    AiohttpClient,
    AiohttpServer,
    Mirror,
    add_test_route,
    make_config,
)

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
FORWARDED = {
    **BROWSER,
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "pkgs.example.test",
    "X-Forwarded-For": "203.0.113.7",
}


async def test_html_carries_a_strict_csp(mirror: Mirror) -> None:
    resp = await mirror.client.get("/", headers=BROWSER)
    assert resp.content_type == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    for directive in (
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp
    body = await resp.text()
    assert "<style" not in body and "<script" not in body and "style=" not in body


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/", BROWSER), ("/+health", {}), ("/root/pypi/+simple/", {}), ("/no/such/+f/x/y", {})],
)
async def test_every_response_has_nosniff_and_a_bare_server(
    mirror: Mirror, path: str, headers: dict[str, str]
) -> None:
    resp = await mirror.client.get(path, headers=headers)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Server"] == "wheelwell"
    assert resp.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in resp.headers  # plain http: HSTS means nothing


async def test_stylesheet_and_icon_are_served(mirror: Mirror) -> None:
    css = await mirror.client.get("/+static/wheelwell.css")
    assert (css.status, css.content_type) == (200, "text/css")
    assert "--accent" in await css.text()
    icon = await mirror.client.get("/+static/favicon.svg")
    assert (icon.status, icon.content_type) == (200, "image/svg+xml")
    assert (await mirror.client.get("/+static/../config.py")).status == 404


async def _app(
    tmp_path: Path,
    fake_index: FakeIndex,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    **server: Any,
) -> TestClient[Any, Any]:
    upstream = await aiohttp_server(fake_index.app)
    cfg: Config = make_config(str(upstream.make_url("/simple/")), tmp_path / "data")
    cfg = dataclasses.replace(cfg, server=ServerConfig(**server))
    return await aiohttp_client(create_app(cfg))


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    tmp_path: Path,
    fake_index: FakeIndex,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    client = await _app(
        tmp_path, fake_index, aiohttp_server, aiohttp_client, trusted_proxies=("10.0.0.0/8",)
    )
    resp = await client.get("/", headers=FORWARDED)
    body = html.unescape(await resp.text())
    assert "https://pkgs.example.test" not in body
    assert f"--index-url http://127.0.0.1:{client.port}/root/public/+simple/" in body
    assert "Strict-Transport-Security" not in resp.headers


async def test_forwarded_headers_from_a_trusted_proxy_are_honoured(
    tmp_path: Path,
    fake_index: FakeIndex,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    client = await _app(
        tmp_path, fake_index, aiohttp_server, aiohttp_client, trusted_proxies=("127.0.0.0/8",)
    )
    resp = await client.get("/", headers=FORWARDED)
    body = html.unescape(await resp.text())
    assert "pip install --index-url https://pkgs.example.test/root/public/+simple/ PROJECT" in body
    assert "--trusted-host" not in body and "trusted-host =" not in body
    assert "twine upload --repository-url https://pkgs.example.test/root/public/ dist/*" in body
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


async def _remote(request: web.Request) -> web.Response:
    return web.Response(text=f"{request.remote} {request.scheme} {request.host}")


@pytest.mark.parametrize(
    ("trusted", "forwarded_for", "expected"),
    [
        (("127.0.0.0/8",), "203.0.113.7", "203.0.113.7 https pkgs.example.test"),
        (("127.0.0.0/8",), "198.51.100.9, 203.0.113.7", "203.0.113.7 https pkgs.example.test"),
        (("10.0.0.0/8",), "203.0.113.7", "127.0.0.1 http 127.0.0.1:{port}"),
        ((), "203.0.113.7", "127.0.0.1 http 127.0.0.1:{port}"),
    ],
)
async def test_handlers_see_the_client_behind_trusted_proxies_only(
    tmp_path: Path,
    fake_index: FakeIndex,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    trusted: tuple[str, ...],
    forwarded_for: str,
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`request.remote` is what login throttling counts: a client must not pick it."""
    upstream = await aiohttp_server(fake_index.app)
    cfg: Config = make_config(str(upstream.make_url("/simple/")), tmp_path / "data")
    cfg = dataclasses.replace(cfg, server=ServerConfig(trusted_proxies=trusted))
    app = create_app(cfg)
    add_test_route(app, "/+test-remote", _remote, monkeypatch)
    client = await aiohttp_client(app)
    headers = {**FORWARDED, "X-Forwarded-For": forwarded_for}
    resp = await client.get("/+test-remote", headers=headers)
    assert await resp.text() == expected.format(port=client.port)
