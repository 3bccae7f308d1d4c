"""acl_read in-process: every way to read an index answers 401/403, and lists leave it out."""

from __future__ import annotations

import dataclasses
import xmlrpc.client
from pathlib import Path
from typing import Any

import pytest

from proxy.app import create_app
from proxy.config import IndexConfig
from tests.fakes.dists import Built, build_wheel
from tests.fakes.index import FakeIndex
from tests.integration.conftest import AiohttpClient, AiohttpServer, Mirror, make_config
from tests.integration.test_api import form
from tests.integration.test_permissions import PW, ROOT, basic

HTML = {"Accept": "text/html"}


async def _setup(mirror: Mirror, tmp_path: Path) -> Built:
    c = mirror.client
    for user in ("alice", "bob", "carol"):
        assert (await c.put(f"/{user}", json={"password": PW[user]}, headers=ROOT)).status == 201
    secret = {"acl_read": ["bob"], "bases": ["root/pypi"]}
    assert (await c.put("/alice/secret", json=secret, headers=ROOT)).status == 201
    child = {"bases": ["alice/secret"]}  # acl_read defaults to anonymous, yet it inherits
    assert (await c.put("/alice/child", json=child, headers=ROOT)).status == 201
    built = build_wheel(tmp_path, "hidden-pkg", "1.0", summary="very secret")
    resp = await c.post("/alice/secret/", data=form(built), headers=ROOT)
    assert resp.status == 200, await resp.text()
    return built


def _reads(built: Built, index: str) -> list[tuple[str, dict[str, str]]]:
    f = f"/alice/secret/+f/{built.sha256}/{built.filename}"
    return [
        (f"/{index}/+simple/", {}),
        (f"/{index}/+simple/hidden-pkg/", {}),
        (f"/{index}/+simple/hidden-pkg/", {"Accept": "application/vnd.pypi.simple.v1+json"}),
        (f, {}),
        (f + ".metadata", {}),
        (f"/{index}", {}),
        (f"/{index}", HTML),
        (f"/{index}/hidden-pkg", {}),
        (f"/{index}/hidden-pkg", HTML),
        (f"/{index}/+explain/hidden-pkg", {}),
    ]


@pytest.mark.parametrize("index", ["alice/secret", "alice/child"])
async def test_every_read_is_protected(mirror: Mirror, tmp_path: Path, index: str) -> None:
    built = await _setup(mirror, tmp_path)
    c = mirror.client
    for path, headers in _reads(built, index):
        anon = await c.get(path, headers=headers)
        assert anon.status == 401, path
        assert anon.headers["WWW-Authenticate"] == 'Basic realm="wheelwell"'
        assert "very secret" not in await anon.text()
        carol = await c.get(path, headers={**headers, **basic("carol", PW["carol"])})
        assert carol.status == 403, path
        for user in ("bob", "alice", "root"):
            ok = await c.get(path, headers={**headers, **basic(user, PW[user])})
            want = 404 if path.endswith("/hidden-pkg") and index == "alice/child" else 200
            assert ok.status in (200, want), (path, user, ok.status)


async def test_search_and_listings_hide_what_the_caller_may_not_read(
    mirror: Mirror, tmp_path: Path
) -> None:
    await _setup(mirror, tmp_path)
    c = mirror.client
    bob = basic("bob", PW["bob"])
    carol = basic("carol", PW["carol"])

    async def hits(headers: dict[str, str], **params: str) -> list[str]:
        resp = await c.get("/+search", params={"q": "hidden", **params}, headers=headers)
        assert resp.status == 200
        return [r["index"] for r in (await resp.json())["results"]]

    assert await hits({}) == []
    assert await hits(carol) == []
    assert "alice/secret" in await hits(bob)
    assert (await c.get("/+search", params={"q": "hidden", "index": "alice/child"})).status == 401

    async def listed(path: str, headers: dict[str, str]) -> Any:
        resp = await c.get(path, headers=headers)
        assert resp.status == 200
        return await resp.json()

    for headers in ({}, carol):
        names = [i["name"] for i in (await listed("/", headers))["indexes"]]
        assert "alice/secret" not in names and "alice/child" not in names
        assert "root/public" in names
        assert (await listed("/alice", headers))["indexes"] == []
        status = [i["name"] for i in (await listed("/+status", headers))["indexes"]]
        assert "alice/secret" not in status
        home = await c.get("/", headers={**headers, **HTML})
        assert "alice/secret" not in await home.text()
    assert (await listed("/alice", bob))["indexes"] == ["alice/child", "alice/secret"]


async def test_xmlrpc_search_of_a_protected_index(mirror: Mirror, tmp_path: Path) -> None:
    await _setup(mirror, tmp_path)
    body = xmlrpc.client.dumps(({"name": "hidden"}, "or"), "search")
    xml = {"Content-Type": "text/xml"}
    c = mirror.client
    assert (await c.post("/alice/secret/", data=body, headers=xml)).status == 401
    carol = {**xml, **basic("carol", PW["carol"])}
    assert (await c.post("/alice/child/", data=body, headers=carol)).status == 403
    resp = await c.post("/alice/child/", data=body, headers={**xml, **basic("bob", PW["bob"])})
    assert resp.status == 200
    assert "hidden-pkg" in await resp.text()


async def test_read_token_reads_its_index_and_its_bases_files(
    mirror: Mirror, tmp_path: Path
) -> None:
    built = await _setup(mirror, tmp_path)
    c = mirror.client
    made = await c.post(
        "/+tokens",
        json={"index": "alice/child", "scopes": ["read"]},
        headers=basic("alice", PW["alice"]),
    )
    token = basic("__token__", (await made.json())["token"])
    assert (await c.get("/alice/child/+simple/hidden-pkg/", headers=token)).status == 200
    f = f"/alice/secret/+f/{built.sha256}/{built.filename}"
    assert (await c.get(f, headers=token)).status == 200  # a base of its index
    assert (await c.get("/root/public/+simple/", headers=token)).status == 200  # anyone may
    assert (await c.post("/alice/child/", data=form(built), headers=token)).status == 403


async def test_default_index_simple_pages_are_protected(
    fake_index: FakeIndex,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
) -> None:
    server = await aiohttp_server(fake_index.app)
    cfg = make_config(str(server.make_url("/simple/")), tmp_path / "data")
    members = IndexConfig(name="root/members", bases=("root/pypi",), acl_read=(":AUTHENTICATED:",))
    cfg = dataclasses.replace(
        cfg,
        indexes=(*cfg.indexes, members),
        server=dataclasses.replace(cfg.server, default_index="root/members"),
    )
    client = await aiohttp_client(create_app(cfg))
    for path in ("/simple/", "/simple/alpha/"):
        assert (await client.get(path)).status == 401
        assert (await client.get(path, headers=ROOT)).status == 200


async def test_protecting_a_base_later_protects_what_inherits_it(mirror: Mirror) -> None:
    """Anonymous reads of public indexes take a cached fast path; a change must reach it."""
    c = mirror.client
    assert (await c.put("/alice", json={"password": PW["alice"]}, headers=ROOT)).status == 201
    assert (await c.put("/alice/base", json={"bases": ["root/pypi"]}, headers=ROOT)).status == 201
    assert (await c.put("/alice/kid", json={"bases": ["alice/base"]}, headers=ROOT)).status == 201
    assert (await c.get("/alice/kid/+simple/")).status == 200  # public, and now cached so
    resp = await c.patch("/alice/base", json={"acl_read": ["alice"]}, headers=ROOT)
    assert resp.status == 200, await resp.text()
    assert (await c.get("/alice/kid/+simple/")).status == 401
    assert (await c.get("/alice/kid/+simple/", headers=basic("alice", PW["alice"]))).status == 200
    resp = await c.patch("/alice/base", json={"acl_read": [":ANONYMOUS:"]}, headers=ROOT)
    assert resp.status == 200, await resp.text()
    assert (await c.get("/alice/kid/+simple/")).status == 200
