"""The JSON API in-process: index configuration, users, tokens, uploads, explain, changelog."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes.dists import Built, build_sdist, build_wheel
from tests.integration.conftest import ROOT_PASSWORD, Mirror


def BasicAuth(user: str, password: str) -> dict[str, str]:
    """Headers for Basic auth (aiohttp 3.14 deprecates its BasicAuth class)."""
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


ROOT = BasicAuth("root", ROOT_PASSWORD)


def form(built: Built, **overrides: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": built.name,
        "version": built.version,
        "filetype": "bdist_wheel" if built.filename.endswith(".whl") else "sdist",
        "sha256_digest": built.sha256,
    }
    fields.update(overrides)
    for key, value in fields.items():
        data.add_field(key, value)
    data.add_field("content", built.path.read_bytes(), filename=built.filename)
    return data


async def upload(mirror: Mirror, built: Built, index: str = "root/public", **kw: Any) -> int:
    auth = kw.pop("auth", ROOT)
    resp = await mirror.client.post(f"/{index}/", data=form(built, **kw), headers=auth)
    await resp.read()
    return resp.status


async def test_upload_then_page_file_and_metadata(mirror: Mirror, tmp_path: Path) -> None:
    built = build_wheel(tmp_path, "ours", "1.0", requires_python=">=3.9", summary="ours!")
    assert await upload(mirror, built) == 200
    body = await (await mirror.client.get("/root/public/+simple/ours/")).text()
    assert f"root/public/+f/{built.sha256}/{built.filename}#sha256={built.sha256}" in body
    assert f'data-core-metadata="sha256={built.metadata_sha256}"' in body
    assert 'data-requires-python="&gt;=3.9"' in body
    url = f"/root/public/+f/{built.sha256}/{built.filename}"
    assert hashlib.sha256(await (await mirror.client.get(url)).read()).hexdigest() == built.sha256
    meta = await (await mirror.client.get(url + ".metadata")).read()
    assert hashlib.sha256(meta).hexdigest() == built.metadata_sha256
    release = await (await mirror.client.get("/root/public/ours")).json()
    assert release["releases"]["1.0"][0]["summary"] == "ours!"


async def test_bad_uploads_leave_nothing(mirror: Mirror, tmp_path: Path) -> None:
    built = build_wheel(tmp_path, "bad", "1.0")
    assert await upload(mirror, built, sha256_digest="0" * 64) == 400
    assert await upload(mirror, built, name="other") == 400
    assert await upload(mirror, built, version="2.0") == 400
    assert await upload(mirror, built, auth=BasicAuth("root", "wrong")) == 401
    truncated = tmp_path / "cut" / built.filename
    truncated.parent.mkdir()
    truncated.write_bytes(built.path.read_bytes()[: built.size // 2])
    cut = Built(truncated, "bad", "1.0", "", built.size // 2, None, None)
    assert await upload(mirror, cut, sha256_digest="") == 400
    assert (await mirror.client.get("/root/public/+simple/bad/")).status == 404
    assert mirror.temp_files() == []
    assert mirror.blob_files() == []


async def test_duplicate_upload(mirror: Mirror, tmp_path: Path) -> None:
    first = build_sdist(tmp_path / "a", "dup", "1.0")
    assert await upload(mirror, first) == 200
    assert await upload(mirror, first) == 200  # identical bytes: idempotent
    other = build_sdist(tmp_path / "b", "dup", "1.0", summary="different bytes")
    assert await upload(mirror, other) == 409
    url = f"/root/public/+f/{first.sha256}/{first.filename}"
    assert hashlib.sha256(await (await mirror.client.get(url)).read()).hexdigest() == first.sha256


async def test_upload_to_mirror_or_simple_url_is_405(mirror: Mirror, tmp_path: Path) -> None:
    built = build_wheel(tmp_path, "misdirected", "1.0")
    for index in ("root/pypi", "root/public/+simple"):
        resp = await mirror.client.post(f"/{index}/", data=form(built), headers=ROOT)
        assert resp.status == 405
        assert "/root/public/" in await resp.text()


async def test_private_name_shadows_the_mirror(mirror: Mirror, tmp_path: Path) -> None:
    built = build_wheel(tmp_path, "beta", "0.1")  # the upstream has beta 1.0, 2.0, 3.0
    assert await upload(mirror, built) == 200
    doc = await (
        await mirror.client.get(
            "/root/public/+simple/beta/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
    ).json(content_type=None)
    assert [f["filename"] for f in doc["files"]] == [built.filename]
    explained = await (await mirror.client.get("/root/public/+explain/beta")).json()
    mirror_step = explained["order"][1]
    assert mirror_step["index"] == "root/pypi" and mirror_step["files"] == []
    assert len(mirror_step["hidden"]) == 3 and "whitelisted" in mirror_step["reason"]
    resp = await mirror.client.patch(
        "/root/public", json={"mirror_whitelist": ["beta"]}, headers=ROOT
    )
    assert resp.status == 200
    doc = await (
        await mirror.client.get("/root/public/+simple/beta/", params={"format": "json"})
    ).json(content_type=None)
    assert len(doc["files"]) == 4


async def test_index_crud_validation_and_permissions(mirror: Mirror) -> None:
    c = mirror.client
    assert (await c.put("/team/dev", json={"type": "private"})).status == 401
    bad = await c.put("/team/dev", json={"bases": ["root/pypy"]}, headers=ROOT)
    assert bad.status == 400 and "root/pypy" in await bad.text()
    made = await c.put("/team/dev", json={"bases": ["root/public"]}, headers=ROOT)
    assert made.status == 201
    assert (await made.json())["result"]["bases"] == ["root/public"]
    cycle = await c.patch("/root/public", json={"bases": ["team/dev"]}, headers=ROOT)
    assert cycle.status == 400 and "cycle" in await cycle.text()
    assert (await c.delete("/root/public", headers=ROOT)).status == 409  # team/dev builds on it
    assert (await c.get("/team/dev/+simple/alpha/")).status == 200  # inherited from the mirror
    assert (await c.put("/alice", json={"password": "a-pw"}, headers=ROOT)).status == 201
    alice = BasicAuth("alice", "a-pw")
    assert (await c.put("/alice/dev", json={}, headers=alice)).status == 201
    assert (await c.put("/bob/dev", json={}, headers=alice)).status == 403
    assert (await c.delete("/team/dev", headers=ROOT)).status == 200
    assert (await c.get("/team/dev")).status == 404


async def test_tokens_are_scoped_and_revocable(mirror: Mirror, tmp_path: Path) -> None:
    c = mirror.client
    made = await c.post("/+tokens", json={"index": "root/public"}, headers=ROOT)
    assert made.status == 201
    token = await made.json()
    as_token = BasicAuth("__token__", token["token"])
    assert await upload(mirror, build_wheel(tmp_path, "tok", "1.0"), auth=as_token) == 200
    other = await c.put("/root/other", json={}, headers=ROOT)
    assert other.status == 201
    refused = await upload(mirror, build_wheel(tmp_path, "tok", "2.0"), "root/other", auth=as_token)
    assert refused == 403
    listed = await (await c.get("/+tokens", headers=ROOT)).json()
    assert token["id"] in [t["id"] for t in listed["tokens"]]
    assert "token" not in listed["tokens"][0]
    assert (await c.delete(f"/+tokens/{token['id']}", headers=ROOT)).status == 200
    assert await upload(mirror, build_wheel(tmp_path, "tok", "3.0"), auth=as_token) == 401


async def test_changelog_records_every_change_in_order(mirror: Mirror, tmp_path: Path) -> None:
    before = await (await mirror.client.get("/+changelog", headers=ROOT)).json()
    built = build_wheel(tmp_path, "logged", "1.0")
    assert await upload(mirror, built) == 200
    resp = await mirror.client.patch(
        "/root/public/logged/1.0", json={"yanked": True, "reason": "oops"}, headers=ROOT
    )
    assert resp.status == 200
    after = await (
        await mirror.client.get("/+changelog", params={"since": before["serial"]}, headers=ROOT)
    ).json()
    kinds = [(e["kind"], e["index"]) for e in after["entries"]]
    assert kinds == [("upload", "root/public"), ("yank", "root/public")]
    serials = [e["serial"] for e in after["entries"]]
    assert serials == sorted(serials) and serials[0] == before["serial"] + 1
    assert (await mirror.client.get("/+changelog")).status == 401
    page = await (await mirror.client.get("/root/public/+simple/logged/")).text()
    assert 'data-yanked="oops"' in page


async def test_a_second_mirror_created_at_run_time(mirror: Mirror) -> None:
    vendor_url = str(mirror.server.make_url("/simple/"))
    made = await mirror.client.put(
        "/root/vendor", json={"type": "mirror", "mirror_url": vendor_url}, headers=ROOT
    )
    assert made.status == 201
    assert (await made.json())["result"]["mirror_url"] == vendor_url
    resp = await mirror.client.get("/root/vendor/+simple/alpha/")
    assert resp.status == 200
    assert "root/vendor/+f/" in await resp.text()
    bad = await mirror.client.put(
        "/root/broken", json={"type": "mirror", "bases": ["root/pypi"]}, headers=ROOT
    )
    assert bad.status == 400
