"""Wheelhouse directories: files dropped in appear, replaced files change, removed ones go."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import shutil
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from proxy.app import create_app
from proxy.config import Config, IndexConfig, IndexKind, StorageConfig
from tests.fakes.dists import build_sdist, build_wheel
from tests.integration.conftest import ROOT_PASSWORD, AiohttpClient, make_config
from tests.polling import eventually

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def wheelhouse_config(data_dir: Path, wheelhouse: Path, poll: float = 0.05) -> Config:
    cfg = make_config("http://127.0.0.1:9/simple/", data_dir)  # no upstream needed here
    indexes = (
        IndexConfig(name="root/pypi", kind=IndexKind.MIRROR),
        IndexConfig(name="root/public", kind=IndexKind.PRIVATE, wheelhouse=(wheelhouse,)),
    )
    storage = StorageConfig(data_dir=data_dir, wheelhouse_poll=poll)
    return dataclasses.replace(cfg, indexes=indexes, storage=storage)


async def filenames(client: TestClient[Any, Any], project: str) -> list[str]:
    resp = await client.get(f"/root/public/+simple/{project}/", headers=JSON)
    if resp.status == 404:
        return []
    return [f["filename"] for f in (await resp.json(content_type=None))["files"]]


async def test_files_appear_change_and_disappear(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    house = tmp_path / "wheelhouse"
    house.mkdir()
    first = build_wheel(tmp_path / "built", "housed", "1.0", summary="from the wheelhouse")
    shutil.copy(first.path, house)
    client = await aiohttp_client(create_app(wheelhouse_config(tmp_path / "data", house)))
    assert await filenames(client, "housed") == [first.filename]
    url = f"/root/public/+f/{first.sha256}/{first.filename}"
    body = await (await client.get(url)).read()
    assert hashlib.sha256(body).hexdigest() == first.sha256
    meta = await (await client.get(url + ".metadata")).read()
    assert hashlib.sha256(meta).hexdigest() == first.metadata_sha256
    found = await (await client.get("/+search", params={"q": "housed"}, headers=JSON)).json()
    assert [r["name"] for r in found["results"]] == ["housed"]

    second = build_sdist(tmp_path / "built", "housed", "2.0")
    shutil.copy(second.path, house)

    async def both() -> bool:
        return sorted(await filenames(client, "housed")) == sorted(
            [first.filename, second.filename]
        )

    await eventually(both, timeout=5, message="both files listed")
    (house / first.filename).unlink()

    async def only_second() -> bool:
        return await filenames(client, "housed") == [second.filename]

    await eventually(only_second, timeout=5, message="only the second file listed")
    (house / second.filename).unlink()

    async def gone() -> bool:
        return await filenames(client, "housed") == []

    await eventually(gone, timeout=5, message="the project gone with its files")
    found = await (await client.get("/+search", params={"q": "housed"}, headers=JSON)).json()
    assert found["results"] == []


async def test_restart_remembers_and_does_not_rehash(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    house = tmp_path / "wheelhouse"
    house.mkdir()
    for n in range(5):
        shutil.copy(build_wheel(tmp_path / "built", "many", f"1.{n}").path, house)
    data = tmp_path / "data"
    first = await aiohttp_client(create_app(wheelhouse_config(data, house)))
    assert len(await filenames(first, "many")) == 5
    await first.close()
    second = await aiohttp_client(create_app(wheelhouse_config(data, house)))
    assert len(await filenames(second, "many")) == 5
    auth = {"Authorization": "Basic " + _b64(f"root:{ROOT_PASSWORD}")}
    log = await (await second.get("/+changelog", headers=auth)).json()
    assert [e["kind"] for e in log["entries"]].count("wheelhouse") == 1  # the first scan only


async def test_broken_file_is_skipped_not_fatal(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    house = tmp_path / "wheelhouse"
    house.mkdir()
    (house / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    good = build_wheel(tmp_path / "built", "fine", "1.0")
    shutil.copy(good.path, house)
    client = await aiohttp_client(create_app(wheelhouse_config(tmp_path / "data", house)))
    assert await filenames(client, "fine") == [good.filename]
    assert await filenames(client, "broken") == []


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
