"""The HTML pages in-process: Accept dispatch, escaping, description sanitizing, snippets."""

from __future__ import annotations

import html
from pathlib import Path

from aiohttp import web

from proxy.web import ui
from tests.fakes.dists import build_wheel
from tests.integration.conftest import AiohttpClient, Mirror
from tests.integration.test_api import upload

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JSON = {"Accept": "application/json"}

EVIL = """# Usage heading

<script>alert("x")</script>

<img src="/logo.png" onerror="alert(1)">

[click](javascript:alert(1)) and [docs](https://docs.example.test/)
"""


async def _get(mirror: Mirror, path: str, headers: dict[str, str]) -> tuple[int, str, str]:
    resp = await mirror.client.get(path, headers=headers)
    return resp.status, resp.content_type, await resp.text()


async def test_home_dispatches_on_accept(mirror: Mirror) -> None:
    status, ctype, body = await _get(mirror, "/", BROWSER)
    assert (status, ctype) == (200, "text/html")
    assert '<form action="/+search" method="get"' in body
    assert 'href="/root/public"' in body
    status, ctype, body = await _get(mirror, "/", JSON)
    assert (status, ctype) == (200, "application/json")
    assert '"default_index"' in body
    resp = await mirror.client.get("/", headers={"Accept": "*/*"})
    assert resp.content_type == "application/json"


async def test_home_snippets_use_the_request_host(mirror: Mirror) -> None:
    headers = {**BROWSER, "Host": "pkgs.internal.test:8080"}
    _, _, page = await _get(mirror, "/?index=root/pypi", headers)
    body = html.unescape(page)
    simple = "http://pkgs.internal.test:8080/root/pypi/+simple/"
    assert f"index-url = {simple}" in body
    assert "trusted-host = pkgs.internal.test" in body
    assert f"pip install --index-url {simple} --trusted-host pkgs.internal.test" in body
    assert f"uv pip install --index-url {simple}" in body
    assert f'url = "{simple}"' in body
    twine = "twine upload --repository-url http://pkgs.internal.test:8080/root/pypi/ dist/*"
    assert twine in body
    _, _, body = await _get(mirror, "/", headers)  # default: root/public
    assert "http://pkgs.internal.test:8080/root/public/+simple/" in body


async def test_status_is_json_unless_html_is_preferred(mirror: Mirror) -> None:
    status, ctype, body = await _get(mirror, "/+status", {})
    assert (status, ctype) == (200, "application/json")
    status, ctype, body = await _get(mirror, "/+status", BROWSER)
    assert (status, ctype) == (200, "text/html")
    assert "Upstream" in body and "root/pypi" in body


async def test_index_page_lists_private_then_cached_mirror_projects(
    mirror: Mirror, tmp_path: Path
) -> None:
    assert await upload(mirror, build_wheel(tmp_path, "ours", "1.0")) == 200
    assert (await mirror.client.get("/root/pypi/+simple/alpha/")).status == 200
    status, ctype, body = await _get(mirror, "/root/public", BROWSER)
    assert (status, ctype) == (200, "text/html")
    assert body.index('href="/root/public/ours"') < body.index('href="/root/public/alpha"')
    status, ctype, body = await _get(mirror, "/root/public", JSON)
    assert ctype == "application/json" and '"indexconfig"' in body
    assert (await mirror.client.get("/root/nope", headers=BROWSER)).status == 404


async def test_project_page_escapes_and_sanitizes(mirror: Mirror, tmp_path: Path) -> None:
    built = build_wheel(tmp_path, "ours", "1.0", summary="<b>bold</b> claim", description=EVIL)
    assert await upload(mirror, built) == 200
    newer = build_wheel(
        tmp_path / "2", "ours", "1.10", summary="<b>bold</b> claim", description=EVIL
    )
    assert await upload(mirror, newer) == 200
    status, ctype, body = await _get(mirror, "/root/public/ours", BROWSER)
    assert (status, ctype) == (200, "text/html")
    assert "&lt;b&gt;bold&lt;/b&gt; claim" in body
    assert "<b>bold</b>" not in body
    assert "<h1>Usage heading</h1>" in body
    assert "<script>" not in body and "alert" not in body.replace("(javascript:alert(1))", "")
    assert "onerror" not in body and 'href="javascript' not in body
    assert 'href="https://docs.example.test/"' in body
    assert body.index(">1.10<") < body.index(">1.0<")  # Version order, not string order
    assert built.sha256 in body
    assert "pip install --index-url http://" in body
    assert 'id="explain"' in body
    status, ctype, body = await _get(mirror, "/root/public/ours", JSON)
    assert ctype == "application/json" and '"releases"' in body


async def test_mirror_only_project_page_uses_the_merged_view(mirror: Mirror) -> None:
    status, ctype, body = await _get(mirror, "/root/public/alpha", BROWSER)
    assert (status, ctype) == (200, "text/html")
    assert "alpha-2.0-py3-none-any.whl" in body
    assert body.index("alpha-2.0") < body.index("alpha-1.0")
    status, _, body = await _get(mirror, "/root/pypi/alpha", BROWSER)
    assert status == 200 and "&gt;=3.8" in body
    assert (await mirror.client.get("/root/public/no-such", headers=BROWSER)).status == 404


async def test_search_results_render_escaped(aiohttp_client: AiohttpClient) -> None:
    results = [
        {
            "name": "ours",
            "index": "root/public",
            "kind": "private",
            "version": "1.0",
            "summary": "<b>bold</b>",
            "url": "/root/public/ours",
        }
    ]

    async def handler(request: web.Request) -> web.Response:
        return ui.render_search(request, request.query.get("q", ""), results)

    app = web.Application()
    ui.setup(app)
    app.router.add_get("/+search", handler)
    client = await aiohttp_client(app)
    body = await (await client.get("/+search", params={"q": "<ou>"})).text()
    assert 'href="/root/public/ours"' in body and "&lt;b&gt;bold&lt;/b&gt;" in body
    assert "&lt;ou&gt;" in body and "<ou>" not in body
    results.clear()
    assert 'id="no-results"' in await (await client.get("/+search?q=zz")).text()
