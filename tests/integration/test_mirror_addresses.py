"""Users' mirrors and the address policy; error texts that say nothing; health per upstream."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.app import create_app
from proxy.config import Config, IndexConfig, IndexKind, StorageConfig
from tests.fakes.index import JSON_TYPE, FakeIndex
from tests.integration.conftest import (
    ROOT_PASSWORD,
    AiohttpClient,
    AiohttpServer,
    make_config,
    replace_upstream,
)

ROOT = {"Authorization": aiohttp.encode_basic_auth("root", ROOT_PASSWORD)}
App = Callable[..., Awaitable[TestClient[Any, Any]]]


def closed_port() -> int:
    """A loopback port nobody listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def fake_url(fake_index: FakeIndex, aiohttp_server: AiohttpServer) -> str:
    server = await aiohttp_server(fake_index.app)
    return str(server.make_url("/simple/"))


@pytest.fixture
def app(tmp_path: Path, fake_url: str, aiohttp_client: AiohttpClient) -> App:
    """An app mirroring the fake as root/pypi, plus `extra` indexes, with upstream overrides."""

    async def factory(*extra: IndexConfig, **upstream: Any) -> TestClient[Any, Any]:
        cfg = make_config(fake_url, tmp_path / "data", **upstream)
        cfg = dataclasses.replace(cfg, indexes=(*cfg.indexes, *extra))
        return await aiohttp_client(create_app(cfg))

    return factory


def user_mirror(url: str, name: str = "alice/m") -> IndexConfig:
    return IndexConfig(name=name, kind=IndexKind.MIRROR, upstream=url)


async def test_saving_a_users_mirror_at_a_denied_address_is_400(app: App, fake_url: str) -> None:
    client = await app()
    port = fake_url.split(":")[2].split("/")[0]
    for url in (fake_url, f"http://localhost:{port}/simple/", "http://[::1]:9/simple/"):
        resp = await client.put(
            "/alice/m", json={"type": "mirror", "mirror_url": url}, headers=ROOT
        )
        assert resp.status == 400, url
        assert "is denied by upstream.deny / upstream.user_mirror_deny" in await resp.text()
        assert (await client.get("/alice/m")).status == 404  # nothing saved
    root = await client.put(
        "/root/m", json={"type": "mirror", "mirror_url": fake_url}, headers=ROOT
    )
    assert root.status == 201  # root's namespace: only upstream.deny applies


async def test_allow_lets_a_users_mirror_reach_loopback(app: App, fake_url: str) -> None:
    client = await app(allow=("127.0.0.1/32",))
    made = await client.put(
        "/alice/m", json={"type": "mirror", "mirror_url": fake_url}, headers=ROOT
    )
    assert made.status == 201
    page = await client.get("/alice/m/+simple/alpha/")
    assert page.status == 200
    assert "alice/m/+f/" in await page.text()


async def test_a_hostname_resolving_to_loopback_is_refused_at_connect(
    app: App, fake_url: str, fake_index: FakeIndex
) -> None:
    port = fake_url.split(":")[2].split("/")[0]
    # declared in the file, so no save-time check: the connect-time check must catch it
    client = await app(user_mirror(f"http://localhost:{port}/simple/"))
    resp = await client.get("/alice/m/+simple/alpha/")
    assert resp.status == 502
    assert await resp.text() == "502: upstream of index 'alice/m' is unavailable\n"
    assert fake_index.hits("/simple/alpha/") == 0


async def test_a_redirect_to_a_denied_address_is_refused(
    tmp_path: Path,
    fake_index: FakeIndex,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> None:
    target = await aiohttp_server(fake_index.app, host="127.0.0.2")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(str(target.make_url(request.path)))

    redirector = web.Application()
    redirector.router.add_get("/{tail:.*}", redirect)
    front = await aiohttp_server(redirector)
    cfg = make_config(str(front.make_url("/simple/")), tmp_path / "data")

    async def get_alpha(cfg: Config) -> aiohttp.ClientResponse:
        client: TestClient[Any, Any] = await aiohttp_client(create_app(cfg))
        resp = await client.get("/root/pypi/+simple/alpha/")
        await resp.read()
        await client.close()
        return resp

    assert (await get_alpha(cfg)).status == 200  # reachable: the redirect works
    assert fake_index.hits("/simple/alpha/") == 1
    fresh = dataclasses.replace(cfg, storage=StorageConfig(data_dir=tmp_path / "other"))
    denied = await get_alpha(replace_upstream(fresh, deny=("127.0.0.2/32",)))
    assert denied.status == 502
    assert "address 127.0.0.2 is denied by upstream.deny" in await denied.text()
    assert fake_index.hits("/simple/alpha/") == 1  # never connected


async def test_a_dead_users_mirror_does_not_rest_roots_upstream(app: App) -> None:
    client = await app(
        user_mirror(f"http://127.0.0.1:{closed_port()}/simple/"),
        allow=("127.0.0.1/32",),
        failure_threshold=1,
        offline_retry=60.0,
    )
    for project in ("alpha", "beta", "gamma"):
        assert (await client.get(f"/alice/m/+simple/{project}/")).status in (502, 503)
    assert (await client.get("/root/pypi/+simple/alpha/")).status == 200
    status = await (await client.get("/+status")).json()
    assert status["upstream"]["available"] is True
    scopes = {row["scope"]: row for row in status["upstream"]["upstreams"]}
    assert scopes["user"]["available"] is False and "last_error" not in scopes["user"]
    assert scopes["root"]["available"] is True
    metrics = await (await client.get("/+metrics")).text()
    assert 'wheelwell_upstream_available{scope="user",upstream="http://127.0.0.1:' in metrics
    assert "wheelwell_upstream_offline 0.0" in metrics


async def test_a_users_mirror_says_the_same_for_refused_and_hanging_upstreams(
    app: App, fake_url: str, fake_index: FakeIndex
) -> None:
    refused = f"http://127.0.0.1:{closed_port()}/simple/"
    client = await app(
        user_mirror(refused, "alice/refused"),
        user_mirror(fake_url, "alice/hangs"),
        IndexConfig(name="root/refused", kind=IndexKind.MIRROR, upstream=refused),
        allow=("127.0.0.1/32",),
        read_timeout=0.2,
    )
    fake_index.hang = True
    texts: list[tuple[int, str]] = []
    for index in ("alice/refused", "alice/hangs"):
        for accept in ("text/html", JSON_TYPE):
            resp = await client.get(f"/{index}/+simple/alpha/", headers={"Accept": accept})
            body = (await resp.text()).replace(index, "INDEX")
            body = body.split('"request_id"')[0]
            texts.append((resp.status, body))
    assert texts[:2] == texts[2:]
    assert texts[0] == (502, "502: upstream of index 'INDEX' is unavailable\n")
    root = await client.get("/root/refused/+simple/alpha/")
    assert root.status == 502 and "cannot connect" in await root.text()  # root's: the detail


async def test_the_detail_of_a_users_mirror_failure_is_logged_once(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    client = await app(
        user_mirror(f"http://127.0.0.1:{closed_port()}/simple/"), allow=("127.0.0.1/32",)
    )
    assert (await client.get("/alice/m/+simple/alpha/")).status == 502
    lines = [
        r.getMessage() for r in caplog.records if "/alice/m/+simple/alpha/ -> 502" in r.getMessage()
    ]
    assert len(lines) == 1
    assert "cannot connect" in lines[0]
