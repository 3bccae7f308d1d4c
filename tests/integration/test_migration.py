"""A data dir written by milestone 1 opens with today's code: nothing lost, aliases moved in."""

from __future__ import annotations

import hashlib
import sqlite3
import tarfile
from pathlib import Path
from typing import Any

from proxy.app import create_app
from tests.fakes.dists import build_wheel
from tests.integration.conftest import AiohttpClient, make_config
from tests.integration.test_api import ROOT, BasicAuth, form

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "datadir-m1.tar.gz"
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
OURS_WHEEL = "528de8e2b05b0f7cffb0e2666331c9faa11bf9823d2d3f68edacd85956dc75e1"
OURS_WHEEL_METADATA = "8f4196e05bc06856c53532fe36a8aa7ca52c5c48bd4d217eac803e9181b7f556"
MIRRORED = "11e768b61e6645c40119bd03ff9875b1b5f0cbaa301f59574cc9dc94f3123be1"
MIRRORED_METADATA = "b40f0e34dd0002eb15e2cb37451d2ee3810712117b5ec34834d2053f67b0ab75"


def unpack(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(data, filter="data")
    return data


async def test_milestone_1_data_dir_is_served_and_migrated(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    data = unpack(tmp_path)
    assert (data / "aliases").is_dir()
    cfg = make_config("http://127.0.0.1:9/simple/", data)  # a dead upstream: all from disk
    client = await aiohttp_client(create_app(cfg))

    page = await (await client.get("/root/public/+simple/ours/", headers=JSON)).json()
    files = {f["filename"]: f for f in page["files"]}
    assert sorted(files) == [
        "ours-1.0-py3-none-any.whl", "ours-1.0.tar.gz", "ours-1.1-py3-none-any.whl",
    ]  # fmt: skip
    assert files["ours-1.1-py3-none-any.whl"]["yanked"] == "bad"
    assert files["ours-1.0-py3-none-any.whl"]["core-metadata"] == {"sha256": OURS_WHEEL_METADATA}
    hosted = f"/root/public/+f/{OURS_WHEEL}/ours-1.0-py3-none-any.whl"
    for url, digest in (
        (hosted, OURS_WHEEL),
        (hosted + ".metadata", OURS_WHEEL_METADATA),
        (f"/root/pypi/+f/{MIRRORED}/mirrored-2.0-py3-none-any.whl", MIRRORED),
        (f"/root/pypi/+f/{MIRRORED}/mirrored-2.0-py3-none-any.whl.metadata", MIRRORED_METADATA),
    ):
        resp = await client.get(url)
        assert resp.status == 200, url
        assert hashlib.sha256(await resp.read()).hexdigest() == digest

    assert not (data / "aliases").exists()
    conn = sqlite3.connect(data / "wheelwell.sqlite3")
    aliases = dict(conn.execute("SELECT alias, sha256 FROM blob_aliases").fetchall())
    assert aliases[f"{MIRRORED}.metadata"] == MIRRORED_METADATA
    assert len(aliases) == 4
    conn.close()

    log: dict[str, Any] = await (await client.get("/+changelog", headers=ROOT)).json()
    assert [e["serial"] for e in log["entries"]] == list(range(1, 12))
    assert "pwhash" not in repr(log)
    assert log["entries"][3]["data"]["filename"] == "ours-1.0-py3-none-any.whl"
    built = build_wheel(tmp_path / "dists", "later", "1.0")
    alice = BasicAuth("alice", "alice-pw")  # milestone-1 users keep their passwords
    assert (await client.put("/alice/dev", json={}, headers=alice)).status == 201
    assert (await client.post("/alice/dev/", data=form(built), headers=alice)).status == 200
    log = await (await client.get("/+changelog?since=11", headers=ROOT)).json()
    assert [e["kind"] for e in log["entries"]] == ["index", "upload"]
