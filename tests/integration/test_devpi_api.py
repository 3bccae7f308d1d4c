"""devpi's JSON shapes and headers through the real app (issue 14); the client is tests/e2e."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from proxy.hosted.permissions import Operation
from proxy.web.authz import ROUTE_OPERATIONS
from tests.fakes.dists import build_wheel
from tests.integration.conftest import ROOT_PASSWORD, Mirror
from tests.integration.test_api import form
from tests.integration.test_permissions import (
    EXPECTED,
    PRINCIPALS,
    ROOT,
    World,
    basic,
    make_world,
)

AGENT = {"User-Agent": "devpi-client/7.3.0 (py3.11.7; linux)", "Accept": "application/json"}


def devpi_auth(user: str, secret: str) -> dict[str, str]:
    return {"X-Devpi-Auth": base64.b64encode(f"{user}:{secret}".encode()).decode()}


async def devpi_login(m: Mirror, user: str = "root", password: str = ROOT_PASSWORD) -> str:
    resp = await m.client.post("/+login", json={"user": user, "password": password}, headers=AGENT)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["type"] == "proxyauth"
    return str(body["result"]["password"])


async def upload(m: Mirror, tmp: Path, index: str, name: str, version: str) -> None:
    built = build_wheel(tmp / f"{name}-{version}", name, version, summary=f"{name} here")
    resp = await m.client.post(f"/{index}/", data=form(built), headers=ROOT)
    assert resp.status == 200, await resp.text()


async def test_api_at_root_user_and_index(mirror: Mirror) -> None:
    c = mirror.client
    root = await (await c.get("/+api", headers=AGENT)).json()
    assert root["type"] == "apiconfig"
    base = str(mirror.client.make_url("")).rstrip("/")
    assert root["result"]["login"] == f"{base}/+login"
    assert root["result"]["authstatus"] == ["noauth", "", []]
    assert "server-keyvalue-parsing" in root["result"]["features"]
    assert "index" not in root["result"]
    user = await (await c.get("/root/+api", headers=AGENT)).json()
    assert user["result"]["login"] == f"{base}/+login"
    index = (await (await c.get("/root/public/+api", headers=AGENT)).json())["result"]
    assert index["index"] == f"{base}/root/public"
    assert index["simpleindex"] == f"{base}/root/public/+simple/"
    assert index["pypisubmit"] == f"{base}/root/public/"
    mirror_api = (await (await c.get("/root/pypi/+api", headers=AGENT)).json())["result"]
    assert "pypisubmit" not in mirror_api  # devpi-client: "Most likely, it is a mirror."
    missing = await c.get("/root/nope/+api", headers=AGENT)
    assert missing.status == 404
    assert "root/nope" in (await missing.json())["message"]


async def test_api_authstatus_ok_and_expired(mirror: Mirror) -> None:
    token = await devpi_login(mirror)
    ok = await mirror.client.get("/+api", headers={**AGENT, **devpi_auth("root", token)})
    assert (await ok.json())["result"]["authstatus"] == ["ok", "root", []]
    bad = await mirror.client.get("/+api", headers={**AGENT, **devpi_auth("root", "ww_gone")})
    assert bad.status == 200  # devpi-client then forgets the login instead of failing
    assert (await bad.json())["result"]["authstatus"] == ["expired", "root", []]


async def test_login_gives_devpi_proxyauth_and_keeps_wheelwell_keys(mirror: Mirror) -> None:
    resp = await mirror.client.post(
        "/+login", json={"user": "root", "password": ROOT_PASSWORD}, headers=AGENT
    )
    body = await resp.json()
    assert body["result"]["password"] == body["token"]
    assert body["result"]["expiration"] == 36000  # devpi's 10 hours for devpi-client
    assert body["expires"] - body["created"] == pytest.approx(36000)
    plain = await mirror.client.post("/+login", json={"user": "root", "password": ROOT_PASSWORD})
    plain_body = await plain.json()
    assert plain_body["result"]["expiration"] == 90 * 86400  # wheelwell's token_lifetime


async def test_wrong_password_answers_devpis_message(mirror: Mirror) -> None:
    body = {"user": "root", "password": "wrong"}
    resp = await mirror.client.post("/+login", json=body, headers=AGENT)
    assert resp.status == 401
    assert resp.headers["Content-Type"] == "application/json"  # exactly: devpi-client checks
    assert (await resp.json())["message"] == "user 'root' could not be authenticated"
    plain = await mirror.client.post("/+login", json=body, headers={"Accept": "application/json"})
    assert (await plain.json())["error"] == "invalid credentials"  # wheelwell's own words


async def test_devpi_headers_on_every_answer(mirror: Mirror) -> None:
    resp = await mirror.client.get("/+health")
    assert resp.headers["X-Devpi-Api-Version"] == "2"
    assert resp.headers["X-Devpi-Serial"] == resp.headers["X-Wheelwell-Serial"]


async def test_x_devpi_auth_is_accepted_where_basic_is(mirror: Mirror) -> None:
    token = await devpi_login(mirror)
    resp = await mirror.client.put(
        "/carol", json={"password": "carol-pw"}, headers={**AGENT, **devpi_auth("root", token)}
    )
    assert resp.status == 201, await resp.text()
    wrong_user = await mirror.client.put(
        "/dave", json={"password": "x"}, headers=devpi_auth("carol", token)
    )
    assert wrong_user.status == 401  # a token is its owner's only
    malformed = await mirror.client.put("/erin", json={"password": "x"}, headers=devpi_auth("", ""))
    assert malformed.status == 401


async def test_login_token_works_as_the_users_basic_password(mirror: Mirror) -> None:
    """devpi install puts user:token into pip's index URL."""
    token = await devpi_login(mirror)
    resp = await mirror.client.get("/+tokens", headers=basic("root", token))
    assert resp.status == 200
    assert (await mirror.client.get("/+tokens", headers=basic("carol", token))).status == 401


async def test_user_list_and_user_config(mirror: Mirror) -> None:
    c = mirror.client
    assert (await c.put("/alice", json={"password": "pw"}, headers=ROOT)).status == 201
    assert (await c.put("/alice/dev", json={}, headers=ROOT)).status == 201
    listed = await (await c.get("/", headers=AGENT)).json()
    assert listed["type"] == "list:userconfig"
    assert sorted(listed["result"]) == ["alice", "root"]
    assert listed["result"]["root"]["indexes"]["public"]["bases"] == ["root/pypi"]
    assert "indexes" in listed and "default_index" in listed  # wheelwell's keys stay
    alice = await (await c.get("/alice", headers=AGENT)).json()
    assert alice["type"] == "userconfig"
    assert alice["result"]["username"] == "alice"
    assert alice["result"]["indexes"]["dev"]["volatile"] is True
    assert alice["indexes"] == ["alice/dev"]  # wheelwell's shape stays


async def test_patch_user_without_password_names_what_is_kept(mirror: Mirror) -> None:
    resp = await mirror.client.patch("/root", json={"email": "x@y"}, headers={**ROOT, **AGENT})
    assert resp.status == 400
    assert "email" in (await resp.json())["message"]


async def test_index_projects_and_no_projects(mirror: Mirror, tmp_path: Path) -> None:
    await upload(mirror, tmp_path, "root/public", "hello", "1.0")
    got = await (await mirror.client.get("/root/public", headers=AGENT)).json()
    assert got["result"]["projects"] == ["hello"]
    bare = await (await mirror.client.get("/root/public?no_projects=", headers=AGENT)).json()
    assert "projects" not in bare["result"]
    pypi = await (await mirror.client.get("/root/pypi", headers=AGENT)).json()
    assert pypi["result"]["projects"] == []


async def test_patch_accepts_what_get_returns(mirror: Mirror, tmp_path: Path) -> None:
    await upload(mirror, tmp_path, "root/public", "hello", "1.0")
    got = await (await mirror.client.get("/root/public", headers=AGENT)).json()
    got["result"]["volatile"] = False
    resp = await mirror.client.patch("/root/public", json=got["result"], headers=ROOT)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["result"]["volatile"] is False
    envelope = {"type": "indexconfig", "result": {**got["result"], "volatile": True}}
    resp = await mirror.client.patch("/root/public", json=envelope, headers=ROOT)
    assert (await resp.json())["result"]["volatile"] is True
    renamed = await mirror.client.patch("/root/public", json={"name": "root/x"}, headers=ROOT)
    assert renamed.status == 400
    mirror_cfg = (await (await mirror.client.get("/root/pypi", headers=AGENT)).json())["result"]
    resp = await mirror.client.patch("/root/pypi", json=mirror_cfg, headers=ROOT)
    assert resp.status == 200, await resp.text()  # the masked mirror_url sent back is no change


async def test_keyvalue_edits(mirror: Mirror) -> None:
    c = mirror.client
    edits = ["volatile=False", "acl_upload+=alice", "acl_upload+=bob", "acl_upload-=alice"]
    resp = await c.patch("/root/public", json=edits, headers={**ROOT, **AGENT})
    assert resp.status == 200, await resp.text()
    result = (await resp.json())["result"]
    assert (result["volatile"], result["acl_upload"]) == (False, ["bob"])
    missing = await c.patch("/root/public", json=["acl_upload-=carol"], headers={**ROOT, **AGENT})
    assert missing.status == 400
    assert "doesn't have value 'carol'" in (await missing.json())["message"]
    dropped = await c.patch("/root/public", json=["acl_upload-="], headers=ROOT)
    assert (await dropped.json())["result"]["acl_upload"] == []
    not_list = await c.patch("/root/public", json=["volatile+=x"], headers=ROOT)
    assert not_list.status == 400


async def test_devpi_client_strings_and_stage_type(mirror: Mirror) -> None:
    body = {"type": "stage", "bases": "root/public", "volatile": "False"}
    resp = await mirror.client.put("/root/dev", json=body, headers={**ROOT, **AGENT})
    assert resp.status == 201, await resp.text()
    result = (await resp.json())["result"]
    assert (result["type"], result["bases"], result["volatile"]) == (
        "private",
        ["root/public"],
        False,
    )
    strict = await mirror.client.patch("/root/dev", json={"volatile": "True"}, headers=ROOT)
    assert strict.status == 400  # wheelwell's own API keeps its types


async def test_project_config_with_and_without_bases(mirror: Mirror, tmp_path: Path) -> None:
    c = mirror.client
    assert (await c.put("/root/dev", json={"bases": ["root/public"]}, headers=ROOT)).status == 201
    await upload(mirror, tmp_path, "root/public", "hello", "1.0")
    await upload(mirror, tmp_path, "root/dev", "hello", "1.1")
    full = await (await c.get("/root/dev/hello/", headers=AGENT)).json()
    assert full["type"] == "projectconfig"
    assert sorted(full["result"]) == ["1.0", "1.1"]
    link = full["result"]["1.1"]["+links"][0]
    base = str(mirror.client.make_url("")).rstrip("/")
    assert link["rel"] == "releasefile"
    assert link["href"].startswith(f"{base}/root/dev/+f/")
    assert full["result"]["1.1"]["name"] == "hello"
    fetched = await c.get(link["href"].removeprefix(base))
    assert fetched.status == 200
    own = await (await c.get("/root/dev/hello/?ignore_bases=", headers=AGENT)).json()
    assert sorted(own["result"]) == ["1.1"]
    assert (await c.get("/root/dev/nothing/", headers=AGENT)).status == 404
    wheelwell = await (await c.get("/root/dev/hello", headers=AGENT)).json()
    assert "releases" in wheelwell  # no trailing slash: wheelwell's shape, unchanged


async def test_delete_project(mirror: Mirror, tmp_path: Path) -> None:
    await upload(mirror, tmp_path, "root/public", "hello", "1.0")
    await upload(mirror, tmp_path, "root/public", "hello", "1.1")
    resp = await mirror.client.delete("/root/public/hello/", headers=ROOT)
    assert resp.status == 200, await resp.text()
    assert (await mirror.client.get("/root/public/hello/", headers=AGENT)).status == 404
    again = await mirror.client.delete("/root/public/hello/", headers=ROOT)
    assert again.status == 404


async def test_delete_project_on_non_volatile_index_is_refused(
    mirror: Mirror, tmp_path: Path
) -> None:
    await upload(mirror, tmp_path, "root/public", "hello", "1.0")
    patched = await mirror.client.patch("/root/public", json={"volatile": False}, headers=ROOT)
    assert patched.status == 200
    resp = await mirror.client.delete("/root/public/hello/", headers=ROOT)
    assert resp.status == 409
    assert (await mirror.client.get("/root/public/hello/", headers=AGENT)).status == 200


async def test_refresh_fetches_the_mirror_page_again(mirror: Mirror) -> None:
    c = mirror.client
    assert (await c.get("/root/public/+simple/beta/")).status == 200
    assert (await c.get("/root/public/+simple/beta/")).status == 200  # fresh: from memory
    assert mirror.fake.hits("/simple/beta/") == 1
    resp = await c.post("/root/public/+simple/beta/refresh", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/root/public/+simple/beta/"
    assert mirror.fake.hits("/simple/beta/") == 2


# ---- the new routes, cell by cell of their operation's row (tests/integration/test_permissions)


async def _status(resp: Any) -> int:
    await resp.read()
    return int(resp.status)


async def _upload_project(w: World, n: int) -> str:
    name = f"proj{n}"
    built = build_wheel(w.tmp / f"p{n}", name, "1.0")
    resp = await w.c.post("/alice/dev/", data=form(built), headers=ROOT)
    assert resp.status == 200, await resp.text()
    return name


async def _api_index(w: World, n: int, h: dict[str, str]) -> int:
    return await _status(await w.c.get("/alice/dev/+api", headers=h))


async def _api_root(w: World, n: int, h: dict[str, str]) -> int:
    return await _status(await w.c.get("/+api", headers=h))


async def _api_user(w: World, n: int, h: dict[str, str]) -> int:
    return await _status(await w.c.get("/alice/+api", headers=h))


async def _project(w: World, n: int, h: dict[str, str]) -> int:
    return await _status(await w.c.get("/alice/dev/pkg/", headers=h))


async def _refresh(w: World, n: int, h: dict[str, str]) -> int:
    resp = await w.c.post("/alice/dev/+simple/beta/refresh", headers=h, allow_redirects=False)
    status = await _status(resp)
    return 200 if status == 302 else status


async def _project_delete(w: World, n: int, h: dict[str, str]) -> int:
    name = await _upload_project(w, n)
    return await _status(await w.c.delete(f"/alice/dev/{name}/", headers=h))


CELLS: dict[str, tuple[Operation, Callable[[World, int, dict[str, str]], Awaitable[int]]]] = {
    "devpi-api": (Operation.LOGIN, _api_root),
    "devpi-api-user": (Operation.LOGIN, _api_user),
    "devpi-api-index": (Operation.READ, _api_index),  # +api of an index checks READ itself
    "devpi-project": (Operation.READ, _project),
    "devpi-refresh": (Operation.READ, _refresh),
    "devpi-project-delete": (Operation.DELETE_FILES, _project_delete),
}


def test_every_devpi_route_is_tried() -> None:
    devpi_routes = {name for name in ROUTE_OPERATIONS if name.startswith("devpi-")}
    assert devpi_routes == set(CELLS)


@pytest.mark.parametrize("route", sorted(CELLS))
async def test_devpi_route_permissions(route: str, mirror: Mirror, tmp_path: Path) -> None:
    """Each principal against each new route: its operation's row of the permission table."""
    op, attempt = CELLS[route]
    world = await make_world(mirror, tmp_path)
    got = {p: await attempt(world, n, world.headers[p]) for n, p in enumerate(PRINCIPALS)}
    want = {p: "2xx" if p in EXPECTED[op] else (401 if p == "anon" else 403) for p in PRINCIPALS}
    seen = {p: "2xx" if 200 <= s < 300 else s for p, s in got.items()}
    assert seen == want
