"""devpi's routes through the real app: file URLs under read protection, uploads without the
slash, and the reason phrase of upload refusals."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import aiohttp
import pytest

from proxy.app import create_app
from tests.fakes.dists import build_wheel
from tests.integration.conftest import ROOT_PASSWORD, AiohttpClient, Mirror, make_config
from tests.integration.test_api import form

ROOT = {"Authorization": aiohttp.encode_basic_auth("root", ROOT_PASSWORD)}


async def test_devpi_file_url_is_read_protected_like_ours(mirror: Mirror, tmp_path: Path) -> None:
    c = mirror.client
    body = {"acl_read": ["root"], "bases": []}
    assert (await c.put("/root/secret", json=body, headers=ROOT)).status == 201
    built = build_wheel(tmp_path, "hidden", "1.0")
    assert (await c.post("/root/secret", data=form(built), headers=ROOT)).status == 200
    path = f"/root/secret/+f/{built.sha256[:3]}/{built.sha256[3:16]}/{built.filename}"
    assert (await c.get(path)).status == 401
    got = await c.get(path, headers=ROOT)
    assert got.status == 200 and await got.read() == built.path.read_bytes()
    metadata = await c.get(path + ".metadata", headers=ROOT)
    assert metadata.status == 200 and b"Name: hidden" in await metadata.read()


async def test_upload_refusal_reason_is_in_the_status_line(mirror: Mirror, tmp_path: Path) -> None:
    built = build_wheel(tmp_path, "refused", "1.0")
    resp = await mirror.client.post("/root/pypi", data=form(built), headers=ROOT)
    assert resp.status == 405
    assert resp.reason is not None and resp.reason.startswith("'root/pypi' is a mirror")
    unauthenticated = await mirror.client.post("/root/public", data=form(built))
    assert unauthenticated.status == 401 and unauthenticated.reason != "Unauthorized"


async def test_root_password_from_devpi_password_is_logged_by_name_only(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config("http://127.0.0.1:9/simple/", tmp_path / "data")
    secret = "devpi-secret-value-123"
    auth = dataclasses.replace(cfg.auth, root_password=secret, root_password_from="DEVPI_PASSWORD")
    caplog.set_level(logging.INFO)
    client = await aiohttp_client(create_app(dataclasses.replace(cfg, auth=auth)))
    headers = {"Authorization": aiohttp.encode_basic_auth("root", secret)}
    assert (await client.get("/+tokens", headers=headers)).status == 200
    assert "root created with the password from DEVPI_PASSWORD" in caplog.text
    assert secret not in caplog.text
