"""The permission table, cell by cell, through the real app; and issue 9's findings as tests.

The world: users alice (owner of alice/dev and alice/other), bob (in alice/dev's acl_read and
acl_upload), carol (no role) and root. alice/dev is read-protected. Each operation is tried by
each principal; EXPECTED says who may, everyone else is refused (401 without credentials,
403 with them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.app import create_app
from proxy.hosted.permissions import Operation
from tests.fakes.dists import build_wheel
from tests.fakes.index import FakeIndex
from tests.integration.conftest import (
    ROOT_PASSWORD,
    AiohttpClient,
    AiohttpServer,
    Mirror,
    MirrorFactory,
    make_config,
)
from tests.integration.test_api import form

PW = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "root": ROOT_PASSWORD}
ALL_SCOPES = ["upload", "yank", "delete", "read"]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


ROOT = basic("root", ROOT_PASSWORD)


@dataclass
class World:
    mirror: Mirror
    tmp: Path
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def c(self) -> Any:
        return self.mirror.client

    async def token(self, headers: dict[str, str], **body: Any) -> str:
        resp = await self.c.post("/+tokens", json=body, headers=headers)
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["token"])

    async def upload(self, index: str, version: str, headers: dict[str, str] = ROOT) -> int:
        built = build_wheel(self.tmp / f"w{next(self.counter)}", "pkg", version)
        resp = await self.c.post(f"/{index}/", data=form(built), headers=headers)
        await resp.read()
        return int(resp.status)


async def make_world(mirror: Mirror, tmp: Path) -> World:
    world = World(mirror, tmp)
    c = mirror.client
    for user in ("alice", "bob", "carol"):
        assert (await c.put(f"/{user}", json={"password": PW[user]}, headers=ROOT)).status == 201
    dev = {"acl_read": ["bob"], "acl_upload": ["alice", "bob"], "bases": ["root/pypi"]}
    assert (await c.put("/alice/dev", json=dev, headers=ROOT)).status == 201
    assert (await c.put("/alice/other", json={}, headers=ROOT)).status == 201
    assert await world.upload("alice/dev", "1.0") == 200
    alice = basic("alice", PW["alice"])
    h = world.headers
    h["anon"] = {}
    h["alice"] = alice
    h["bob"] = basic("bob", PW["bob"])
    h["carol"] = basic("carol", PW["carol"])
    h["root"] = ROOT
    h["alice_token"] = basic("__token__", await world.token(alice))
    scoped = await world.token(alice, index="alice/dev", scopes=ALL_SCOPES)
    h["alice_scoped"] = basic("__token__", scoped)
    h["alice_read"] = basic(
        "__token__", await world.token(alice, index="alice/dev", scopes=["read"])
    )
    h["alice_upload"] = basic("__token__", await world.token(alice, index="alice/dev"))
    h["alice_other"] = basic("__token__", await world.token(alice, index="alice/other"))
    root_scoped = await world.token(ROOT, index="alice/dev", scopes=ALL_SCOPES)
    h["root_scoped"] = basic("__token__", root_scoped)
    return world


#: refused principals go first (they change nothing); alice_token precedes alice, whose
#: password change would revoke it
PRINCIPALS = (
    "anon",
    "carol",
    "bob",
    "alice_other",
    "alice_read",
    "alice_upload",
    "root_scoped",
    "alice_scoped",
    "alice_token",
    "alice",
    "root",
)
OWNER = {"alice", "alice_token", "root"}
WRITERS = {"alice", "alice_token", "alice_scoped", "bob", "root", "root_scoped"}
ACCOUNTS = {"alice", "alice_token", "bob", "carol", "root"}
EVERYONE = set(PRINCIPALS)

EXPECTED: dict[Operation, set[str]] = {
    Operation.READ: WRITERS | {"alice_read", "alice_upload"},
    Operation.UPLOAD: WRITERS | {"alice_upload"},
    Operation.YANK: WRITERS,
    Operation.DELETE_FILES: WRITERS,
    Operation.INDEX_CREATE: OWNER,
    Operation.INDEX_CHANGE: OWNER,
    Operation.INDEX_DELETE: OWNER,
    Operation.MIRROR_URL: {"root"},
    Operation.USER_CREATE: {"root"},
    Operation.USER_CHANGE: OWNER,
    Operation.USER_DELETE: {"root"},
    Operation.TOKEN_CREATE: ACCOUNTS,
    Operation.TOKEN_LIST: ACCOUNTS,
    Operation.TOKEN_REVOKE: OWNER,
    Operation.CHANGELOG: {"root"},
    Operation.LOGIN: EVERYONE,
    Operation.OPS_READ: EVERYONE,
    Operation.REPLICATE: set(),  #: the replication secret only (tests/e2e/test_replication.py)
    #: reading alice/dev and uploading to alice/other, the target (tokens for alice/dev do not)
    Operation.PUSH: OWNER,
    #: acl_toxresult_upload is anyone (devpi's default), but the index must be readable and a
    #: scoped token needs `upload`
    Operation.TOXRESULT_UPLOAD: WRITERS | {"alice_upload"},
}

#: one request for operation and principal number n; `prepare` makes its target (as root)
Attempt = Callable[[World, int, dict[str, str]], Awaitable[int]]


async def _status(resp: Any) -> int:
    await resp.read()
    return int(resp.status)


async def read(w: World, n: int, h: dict[str, str]) -> int:
    return await _status(await w.c.get("/alice/dev/+simple/pkg/", headers=h))


async def upload(w: World, n: int, h: dict[str, str]) -> int:
    return await w.upload("alice/dev", f"2.{n}", h)


async def yank(w: World, n: int, h: dict[str, str]) -> int:
    body = {"yanked": True, "reason": f"by {n}"}
    return await _status(await w.c.patch("/alice/dev/pkg/1.0", json=body, headers=h))


async def delete_files(w: World, n: int, h: dict[str, str]) -> int:
    assert await w.upload("alice/dev", f"3.{n}") == 200
    return await _status(await w.c.delete(f"/alice/dev/pkg/3.{n}", headers=h))


async def index_create(w: World, n: int, h: dict[str, str]) -> int:
    return await _status(await w.c.put(f"/alice/new{n}", json={"type": "private"}, headers=h))


async def index_change(w: World, n: int, h: dict[str, str]) -> int:
    body = {"volatile": n % 2 == 0}
    return await _status(await w.c.patch("/alice/dev", json=body, headers=h))


async def index_delete(w: World, n: int, h: dict[str, str]) -> int:
    assert (await w.c.put(f"/alice/gone{n}", json={}, headers=ROOT)).status == 201
    return await _status(await w.c.delete(f"/alice/gone{n}", headers=h))


#: the fake upstream is on loopback, which user mirrors may not reach unless allowed
LOOPBACK = ("127.0.0.0/8",)


@pytest.fixture
async def mirror(mirror_factory: MirrorFactory) -> Mirror:
    return await mirror_factory(allow=LOOPBACK)


async def mirror_url(w: World, n: int, h: dict[str, str]) -> int:
    url = str(w.mirror.server.make_url("/simple/"))
    body = {"type": "mirror", "mirror_url": url}
    return await _status(await w.c.put(f"/alice/mirror{n}", json=body, headers=h))


async def user_create(w: World, n: int, h: dict[str, str]) -> int:
    return await _status(await w.c.put(f"/dave{n}", json={"password": "d-pw"}, headers=h))


async def user_change(w: World, n: int, h: dict[str, str]) -> int:
    body = {"password": PW["alice"]}  # the same one: later principals still log in
    return await _status(await w.c.patch("/alice", json=body, headers=h))


async def user_delete(w: World, n: int, h: dict[str, str]) -> int:
    assert (await w.c.put(f"/erin{n}", json={"password": "e-pw"}, headers=ROOT)).status == 201
    return await _status(await w.c.delete(f"/erin{n}", headers=h))


async def token_create(w: World, n: int, h: dict[str, str]) -> int:
    return await _status(await w.c.post("/+tokens", json={}, headers=h))


async def token_list(w: World, n: int, h: dict[str, str]) -> int:
    return await _status(await w.c.get("/+tokens", headers=h))


async def token_revoke(w: World, n: int, h: dict[str, str]) -> int:
    made = await w.c.post("/+tokens", json={"description": "victim"}, headers=w.headers["alice"])
    token_id = (await made.json())["id"]
    return await _status(await w.c.delete(f"/+tokens/{token_id}", headers=h))


async def changelog(w: World, n: int, h: dict[str, str]) -> int:
    return await _status(await w.c.get("/+changelog", headers=h))


async def login(w: World, n: int, h: dict[str, str]) -> int:
    body = {"user": "carol", "password": PW["carol"]}
    return await _status(await w.c.post("/+login", json=body, headers=h))


async def ops_read(w: World, n: int, h: dict[str, str]) -> int:
    return await _status(await w.c.get("/+status", headers=h))


async def replicate(w: World, n: int, h: dict[str, str]) -> int:
    return await _status(await w.c.get("/+replication/changes?since=0", headers=h))


async def push(w: World, n: int, h: dict[str, str]) -> int:
    """devpi push as devpi-server also takes it: the JSON body POSTed (the test client's parser
    cannot send PUSH; tests/e2e/test_devpi_push.py does)."""
    body = {"name": "pkg", "version": "1.0", "targetindex": "alice/other"}
    return await _status(await w.c.post("/alice/dev", json=body, headers=h))


REPORT = {"testenvs": {"py": {"test": [{"command": ["pytest"], "retcode": 0, "output": "ok"}]}}}


async def file_url(w: World, index: str = "alice/dev") -> str:
    resp = await w.c.get(f"/{index}/pkg", headers=ROOT)
    assert resp.status == 200, await resp.text()
    (first, *_) = (await resp.json())["releases"]["1.0"]
    return str(first["url"])


async def toxresult_upload(w: World, n: int, h: dict[str, str]) -> int:
    return await _status(await w.c.post(await file_url(w), json=REPORT, headers=h))


ATTEMPTS: dict[Operation, Attempt] = {
    Operation.READ: read,
    Operation.UPLOAD: upload,
    Operation.YANK: yank,
    Operation.DELETE_FILES: delete_files,
    Operation.INDEX_CREATE: index_create,
    Operation.INDEX_CHANGE: index_change,
    Operation.INDEX_DELETE: index_delete,
    Operation.MIRROR_URL: mirror_url,
    Operation.USER_CREATE: user_create,
    Operation.USER_CHANGE: user_change,
    Operation.USER_DELETE: user_delete,
    Operation.TOKEN_CREATE: token_create,
    Operation.TOKEN_LIST: token_list,
    Operation.TOKEN_REVOKE: token_revoke,
    Operation.CHANGELOG: changelog,
    Operation.LOGIN: login,
    Operation.OPS_READ: ops_read,
    Operation.REPLICATE: replicate,
    Operation.PUSH: push,
    Operation.TOXRESULT_UPLOAD: toxresult_upload,
}


def test_every_operation_is_tried() -> None:
    assert set(ATTEMPTS) == set(Operation) == set(EXPECTED)


@pytest.mark.parametrize("op", list(Operation), ids=str)
async def test_permission_table(op: Operation, mirror: Mirror, tmp_path: Path) -> None:
    """Every cell of one operation's row: allowed ones succeed (2xx), refused ones 401/403."""
    world = await make_world(mirror, tmp_path)
    got: dict[str, int] = {}
    for n, principal in enumerate(PRINCIPALS):
        got[principal] = await ATTEMPTS[op](world, n, world.headers[principal])
    want = {p: "2xx" if p in EXPECTED[op] else (401 if p == "anon" else 403) for p in PRINCIPALS}
    if op is Operation.REPLICATE:  # no user's credential is the replication secret
        want = dict.fromkeys(PRINCIPALS, 401)
    seen = {p: "2xx" if 200 <= s < 300 else s for p, s in got.items()}
    assert seen == want


async def test_user_mirrors_lets_owners_set_mirror_urls(
    fake_index: FakeIndex,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
) -> None:
    server = await aiohttp_server(fake_index.app)
    cfg = make_config(str(server.make_url("/simple/")), tmp_path / "data")
    cfg = dataclasses.replace(cfg, auth=dataclasses.replace(cfg.auth, user_mirrors=True))
    cfg = dataclasses.replace(cfg, upstream=dataclasses.replace(cfg.upstream, allow=LOOPBACK))
    client = await aiohttp_client(create_app(cfg))
    mirror = Mirror(client, fake_index, server, tmp_path / "data")
    world = await make_world(mirror, tmp_path)
    assert await mirror_url(world, 0, world.headers["alice"]) == 201
    assert await mirror_url(world, 1, world.headers["bob"]) == 403
    assert await mirror_url(world, 2, world.headers["alice_scoped"]) == 403


# ---- the findings of issue 9 ---------------------------------------------------------------


async def _scoped_root(mirror: Mirror) -> dict[str, str]:
    made = await mirror.client.post("/+tokens", json={"index": "root/public"}, headers=ROOT)
    return basic("__token__", (await made.json())["token"])


async def test_scoped_token_cannot_change_password(mirror: Mirror, tmp_path: Path) -> None:
    world = await make_world(mirror, tmp_path)
    token = world.headers["alice_scoped"]
    resp = await mirror.client.patch("/alice", json={"password": "stolen"}, headers=token)
    assert resp.status == 403
    assert (await mirror.client.get("/+tokens", headers=basic("alice", PW["alice"]))).status == 200


async def test_roots_scoped_token_cannot_reset_roots_password(mirror: Mirror) -> None:
    token = await _scoped_root(mirror)
    resp = await mirror.client.patch("/root", json={"password": "owned"}, headers=token)
    assert resp.status == 403
    assert (await mirror.client.get("/+changelog", headers=ROOT)).status == 200


async def test_scoped_token_cannot_create_or_delete_users(mirror: Mirror) -> None:
    token = await _scoped_root(mirror)
    c = mirror.client
    assert (await c.put("/mallory", json={"password": "m-pw"}, headers=token)).status == 403
    assert (await c.put("/victim", json={"password": "v-pw"}, headers=ROOT)).status == 201
    assert (await c.delete("/victim", headers=token)).status == 403
    assert (await c.get("/victim")).status == 200


async def test_scoped_token_cannot_list_or_revoke_tokens(mirror: Mirror) -> None:
    token = await _scoped_root(mirror)
    c = mirror.client
    assert (await c.get("/+tokens", headers=token)).status == 403
    made = await c.post("/+tokens", json={}, headers=ROOT)
    other = (await made.json())["id"]
    assert (await c.delete(f"/+tokens/{other}", headers=token)).status == 403
    assert (await c.post("/+tokens", json={"index": "root/public"}, headers=token)).status == 403


async def test_scoped_token_cannot_read_changelog(mirror: Mirror) -> None:
    token = await _scoped_root(mirror)
    assert (await mirror.client.get("/+changelog", headers=token)).status == 403


async def test_scoped_token_cannot_delete_its_index(mirror: Mirror) -> None:
    c = mirror.client
    assert (await c.put("/root/scratch", json={}, headers=ROOT)).status == 201
    made = await c.post("/+tokens", json={"index": "root/scratch"}, headers=ROOT)
    token = basic("__token__", (await made.json())["token"])
    assert (await c.delete("/root/scratch", headers=token)).status == 403
    assert (await c.patch("/root/scratch", json={"volatile": False}, headers=token)).status == 403
    assert (await c.get("/root/scratch")).status == 200


async def test_tokens_die_on_password_change(mirror: Mirror) -> None:
    c = mirror.client
    assert (await c.put("/alice", json={"password": "a-pw"}, headers=ROOT)).status == 201
    alice = basic("alice", "a-pw")
    login = await c.post("/+login", json={"user": "alice", "password": "a-pw"})
    token = basic("__token__", (await login.json())["token"])
    assert (await c.get("/+tokens", headers=token)).status == 200
    assert (await c.patch("/alice", json={"password": "a-pw-2"}, headers=alice)).status == 200
    assert (await c.get("/+tokens", headers=token)).status == 401
    assert (await c.get("/+tokens", headers=basic("alice", "a-pw-2"))).status == 200


async def test_deleted_user_with_indexes_is_refused(mirror: Mirror) -> None:
    c = mirror.client
    assert (await c.put("/alice", json={"password": "a-pw"}, headers=ROOT)).status == 201
    assert (await c.put("/alice/dev", json={}, headers=ROOT)).status == 201
    refused = await c.delete("/alice", headers=ROOT)
    assert refused.status == 409
    assert "alice/dev" in await refused.text()
    assert (await c.get("/alice")).status == 200
    assert (await c.delete("/alice/dev", headers=ROOT)).status == 200
    assert (await c.delete("/alice", headers=ROOT)).status == 200
    assert (await c.delete("/root", headers=ROOT)).status == 403


async def test_no_response_contains_a_password_or_token_hash(
    mirror: Mirror, tmp_path: Path
) -> None:
    world = await make_world(mirror, tmp_path)
    c = mirror.client
    secret = world.headers["alice_token"]["Authorization"]
    token = aiohttp.BasicAuth.decode(secret).password
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    bodies = []
    for path in ("/+changelog", "/+tokens", "/alice", "/alice/dev", "/", "/+status", "/root"):
        resp = await c.get(path, headers=ROOT)
        assert resp.status == 200, path
        bodies.append(await resp.text())
    for path in ("/+tokens", "/alice"):
        bodies.append(await (await c.get(path, headers=world.headers["alice"])).text())
    for body in bodies:
        assert "scrypt$" not in body
        assert token_hash not in body
        assert token not in body


@pytest.mark.parametrize("value", [1e309, 1e300, 10 * 365 * 86400 + 1, "1e309"])
async def test_expires_in_must_be_finite_and_bounded(mirror: Mirror, value: object) -> None:
    resp = await mirror.client.post("/+tokens", json={"expires_in": value}, headers=ROOT)
    assert resp.status == 400
    login = {"user": "root", "password": ROOT_PASSWORD, "expires_in": value}
    assert (await mirror.client.post("/+login", json=login)).status == 400


@pytest.mark.parametrize(
    "body",
    [
        {"acl_upload": ["not a user"]},
        {"acl_upload": [":ANYONE:"]},
        {"acl_read": ["../etc"]},
        {"acl_read": [""]},
        {"acl_read": "bob,:nobody:"},
    ],
)
async def test_acl_entries_are_validated(mirror: Mirror, body: dict[str, Any]) -> None:
    resp = await mirror.client.put("/root/acl", json=body, headers=ROOT)
    assert resp.status == 400
    patched = await mirror.client.patch("/root/public", json=body, headers=ROOT)
    assert patched.status == 400


async def test_token_scopes_are_validated_and_shown(mirror: Mirror) -> None:
    c = mirror.client
    bad = await c.post("/+tokens", json={"index": "root/public", "scopes": ["admin"]}, headers=ROOT)
    assert bad.status == 400
    empty = await c.post("/+tokens", json={"index": "root/public", "scopes": []}, headers=ROOT)
    assert empty.status == 400
    made = await c.post("/+tokens", json={"index": "root/public"}, headers=ROOT)
    assert (await made.json())["scopes"] == ["upload"]
    listed = await (await c.get("/+tokens", headers=ROOT)).json()
    assert [t["scopes"] for t in listed["tokens"]] == [["upload"]]


async def test_hook_status_takes_index_change(mirror: Mirror, tmp_path: Path) -> None:
    """`GET /{user}/{index}/+hooks` (receivers' answers) shows to whom may change the index."""
    world = await make_world(mirror, tmp_path)
    got = {}
    for principal in PRINCIPALS:
        resp = await world.c.get("/alice/dev/+hooks", headers=world.headers[principal])
        got[principal] = await _status(resp)
    allowed = EXPECTED[Operation.INDEX_CHANGE]
    want = {p: 200 if p in allowed else (401 if p == "anon" else 403) for p in PRINCIPALS}
    assert got == want
