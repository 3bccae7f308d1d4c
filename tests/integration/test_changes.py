"""The changelog replays: a busy data dir's entries, applied to an empty db, give its tables."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from proxy.app import create_app
from proxy.config import Config
from proxy.storage.db import Database
from tests.fakes.dists import build_sdist, build_wheel
from tests.integration.conftest import AiohttpClient
from tests.integration.test_api import ROOT, BasicAuth, form
from tests.integration.test_wheelhouse import wheelhouse_config

ALICE = BasicAuth("alice", "alice-password")


def busy_config(data_dir: Path, wheelhouse: Path) -> Config:
    """Nothing here goes upstream; the wheelhouse is scanned at start only, not polled."""
    return wheelhouse_config(data_dir, wheelhouse, poll=3600)


async def ok(client: TestClient[Any, Any], method: str, path: str, **kw: Any) -> Any:
    resp = await client.request(method, path, **kw)
    assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
    return await resp.json()


async def make_busy(client: TestClient[Any, Any], work: Path) -> None:
    """Every kind of change at least once, through the API as users make them."""
    await ok(client, "PUT", "/alice", json={"password": "alice-password"}, headers=ROOT)
    await ok(client, "PUT", "/bob", json={"password": "bob-password"}, headers=ROOT)
    await ok(client, "PATCH", "/bob", json={"password": "bob-2"}, headers=ROOT)
    await ok(client, "DELETE", "/bob", headers=ROOT)
    await ok(client, "PUT", "/alice/dev", json={"bases": ["root/public"]}, headers=ALICE)
    await ok(client, "PATCH", "/alice/dev", json={"volatile": True}, headers=ALICE)
    await ok(client, "PUT", "/alice/tmp", json={}, headers=ALICE)
    token = await ok(client, "POST", "/+tokens", json={"index": "alice/dev"}, headers=ALICE)
    await ok(client, "POST", "/+tokens", json={"description": "ci"}, headers=ALICE)
    await ok(client, "DELETE", f"/+tokens/{token['id']}", headers=ALICE)
    for built in (
        build_wheel(work, "ours", "1.0", summary="ours!", requires_python=">=3.9"),
        build_sdist(work, "ours", "1.0"),
        build_wheel(work, "ours", "1.1"),
        build_wheel(work, "gone", "0.1"),
        build_wheel(work, "trimmed", "2.0"),
        build_sdist(work, "trimmed", "2.0"),
    ):
        await ok(client, "POST", "/alice/dev/", data=form(built), headers=ALICE)
        if built.name == "trimmed" and built.filename.endswith(".whl"):
            wheel = built
    await ok(client, "POST", "/alice/tmp/", data=form(build_wheel(work, "t", "1")), headers=ALICE)
    yank = {"yanked": True, "reason": "broken"}
    await ok(client, "PATCH", "/alice/dev/ours/1.1", json=yank, headers=ALICE)
    await ok(client, "PATCH", "/alice/dev/ours/1.0", json=yank, headers=ALICE)
    await ok(client, "PATCH", "/alice/dev/ours/1.0", json={"yanked": False}, headers=ALICE)
    await ok(client, "DELETE", "/alice/dev/gone/0.1", headers=ALICE)
    await ok(client, "DELETE", f"/alice/dev/+f/{wheel.sha256}/{wheel.filename}", headers=ALICE)
    await ok(client, "DELETE", "/alice/tmp", headers=ALICE)


async def test_replaying_the_changelog_rebuilds_every_hosted_table(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    house, data = tmp_path / "wheelhouse", tmp_path / "data"
    house.mkdir()
    kept = build_wheel(tmp_path / "house", "housed", "1.0")
    dropped = build_wheel(tmp_path / "house", "housed", "0.9")
    for built in (kept, dropped):
        shutil.copy(built.path, house)
    client = await aiohttp_client(create_app(busy_config(data, house)))
    await make_busy(client, tmp_path / "dists")
    await client.close()
    (house / dropped.filename).unlink()  # the next start's scan records a removal
    client = await aiohttp_client(create_app(busy_config(data, house)))
    await client.close()

    source = Database(data / "wheelwell.sqlite3")
    await source.start()
    entries = await source.changes_since(0, limit=10_000)
    kinds = {e.kind for e in entries}
    assert kinds == {
        "user", "password", "user-delete", "token", "token-revoke", "index", "index-delete",
        "upload", "yank", "release-delete", "file-delete", "wheelhouse",
    }  # fmt: skip
    replica = Database(tmp_path / "replica.sqlite3")
    await replica.start()
    for entry in entries:
        assert await replica.replay(entry) == entry.serial
    expected = await source.dump_hosted()
    assert await replica.dump_hosted() == expected
    assert replica.serial == source.serial
    assert [e.body for e in await replica.changes_since(0, 10_000)] == [e.body for e in entries]
    assert {len(rows) for rows in expected.values()} != {0}
    await replica.close()
    await source.close()


async def test_the_changelog_shows_no_password_or_token_hashes(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    house = tmp_path / "wheelhouse"
    client = await aiohttp_client(create_app(busy_config(tmp_path / "data", house)))
    await make_busy(client, tmp_path / "dists")
    log = await ok(client, "GET", "/+changelog", headers=ROOT)
    shown = repr(log)
    conn = sqlite3.connect(tmp_path / "data" / "wheelwell.sqlite3")
    secrets = [r[0] for r in conn.execute("SELECT pwhash FROM users UNION SELECT hash FROM tokens")]
    conn.close()
    assert secrets and not [s for s in secrets if s in shown]
    assert "pwhash" not in shown
    uploads = [e for e in log["entries"] if e["kind"] == "upload"]
    assert uploads[0]["data"]["requires_python"] == ">=3.9"
    assert uploads[0]["data"]["summary"] == "ours!"
