"""Bounded work per request (issue 9): zip bombs, huge descriptions, hostile JSON, bad requests."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import hashlib
import logging
import re
import shutil
import sqlite3
import time
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.app import create_app
from proxy.config import LimitsConfig
from proxy.mirror.index import MirrorIndex
from proxy.storage.blobs import _translate_os_error
from proxy.storage.db import _translate_sqlite_error
from proxy.web import keys
from tests.fakes.dists import Built, build_wheel
from tests.integration.conftest import AiohttpClient, Mirror, add_test_route, make_config
from tests.integration.test_api import BasicAuth, upload

ROOT_HEADERS = BasicAuth("root", "integration-root")
_CHUNK = b" " * (1024 * 1024)


def build_zip_bomb(dest: Path, name: str, version: str, inflated: int) -> Built:
    """A small wheel whose METADATA inflates to `inflated` bytes, written streaming (small RAM)."""
    filename = f"{name}-{version}-py3-none-any.whl"
    path = dest / filename
    dist_info = f"{name}-{version}.dist-info"
    head = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{name}/__init__.py", b"")
        zf.writestr(f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")
        with zf.open(f"{dist_info}/METADATA", "w", force_zip64=True) as member:
            member.write(head)
            written = len(head)
            while written < inflated:
                chunk = _CHUNK[: inflated - written]
                member.write(chunk)
                written += len(chunk)
        zf.writestr(f"{dist_info}/RECORD", b"")
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    return Built(path, name, version, sha, len(data), None, None)


async def test_a_zip_bomb_upload_is_400_and_stores_nothing(mirror: Mirror, tmp_path: Path) -> None:
    """The finding: a small wheel inflating past the cap gave 500 and an orphan blob."""
    bomb = build_zip_bomb(tmp_path, "bomb", "1.0", 64 * 1024 * 1024)
    assert bomb.size < 1024 * 1024
    resp = await mirror.client.post(
        "/root/public/", data=_form(bomb), headers={**ROOT_HEADERS, "Accept": "application/json"}
    )
    body = await resp.json()
    assert resp.status == 400
    assert "limits.max_metadata_size" in body["error"]
    assert "bomb-1.0.dist-info/METADATA" in body["error"]
    assert (await mirror.client.get("/root/public/+simple/bomb/")).status == 404
    assert mirror.temp_files() == []
    assert mirror.blob_files() == []


async def test_a_wheel_renamed_zip_is_not_an_sdist(mirror: Mirror, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "renamed", "1.0")
    target = tmp_path / "renamed-1.0.zip"
    shutil.copy(wheel.path, target)
    fake = dataclasses.replace(wheel, path=target)
    resp = await mirror.client.post("/root/public/", data=_form(fake), headers=ROOT_HEADERS)
    assert resp.status == 400
    assert "has no renamed-1.0/PKG-INFO" in await resp.text()
    assert mirror.blob_files() == []
    assert mirror.temp_files() == []


def _form(built: Built) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field(":action", "file_upload")
    data.add_field("content", built.path.read_bytes(), filename=built.path.name)
    return data


# ---- descriptions --------------------------------------------------------------------------


async def test_a_huge_description_renders_fast_as_truncated_text(
    mirror: Mirror, tmp_path: Path
) -> None:
    """The finding: a 5 MB Markdown description took 13 s and ~1 GB to render."""
    text = "# Title\n\n" + "* item <b>x</b> *em* `code` [l](http://x)\n" * 120_000
    assert len(text) > 5_000_000
    built = build_wheel(tmp_path, "wordy", "1.0", description=text)
    assert await upload(mirror, built) == 200
    started = time.monotonic()
    resp = await mirror.client.get("/root/public/wordy", headers={"Accept": "text/html"})
    page = await resp.text()
    elapsed = time.monotonic() - started
    assert resp.status == 200
    assert "shown as plain text, truncated" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<li>" not in page
    assert elapsed < 5.0, elapsed


async def test_a_slow_description_falls_back_to_text(
    tmp_path: Path, aiohttp_client: AiohttpClient, fake_upstream_url: str
) -> None:
    cfg = make_config(fake_upstream_url, tmp_path / "data")
    limits = LimitsConfig(description_render_timeout=0.001)
    client = await aiohttp_client(create_app(dataclasses.replace(cfg, limits=limits)))
    text = "Title\n=====\n\n" + "* item *em* ``code``\n" * 20_000  # docutils: well over 1 ms
    built = build_wheel(tmp_path, "slow", "1.0", description=text)
    data = aiohttp.FormData()
    data.add_field("content", built.path.read_bytes(), filename=built.filename)
    assert (await client.post("/root/public/", data=data, headers=ROOT_HEADERS)).status == 200
    resp = await client.get("/root/public/slow", headers={"Accept": "text/html"})
    page = await resp.text()
    assert resp.status == 200
    assert "<pre>Title\n=====" in page


@pytest.fixture
async def fake_upstream_url(aiohttp_server: Any, fake_index: Any) -> str:
    server = await aiohttp_server(fake_index.app)
    return str(server.make_url("/simple/"))


# ---- JSON bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nests deeper than 32 levels"),
        ('{"user": "root", "a": ' + "[" * 40 + "]" * 40 + "}", "nests deeper than 32 levels"),
        ('{"user": "root", "password": "x", "expires_in": ' + "9" * 5000 + "}", "longer than 100"),
        ('{"user": "root", "password": "x", "expires_in": 1e309}', "out of range: 1e309"),
        ('{"user": "root", "password": "x", "expires_in": NaN}', "NaN, which is not JSON"),
        ('{"user": "root", "password": "x", "expires_in": -Infinity}', "-Infinity"),
    ],
)
async def test_hostile_json_is_400_never_500(mirror: Mirror, body: str, message: str) -> None:
    """The finding: anonymous POST /+login with deep nesting or a 5,000-digit number gave 500."""
    resp = await mirror.client.post(
        "/+login", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400, await resp.text()
    assert message in await resp.text()


async def test_json_within_limits_still_works(mirror: Mirror) -> None:
    body = '{"user": "root", "password": "integration-root", "expires_in": 3600.5, "x": [[[1]]]}'
    resp = await mirror.client.post(
        "/+login", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 200, await resp.text()


# ---- error hygiene -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
async def test_malformed_requests_are_400_with_one_log_line(
    mirror: Mirror, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert mirror.client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", mirror.client.port)
    writer.write(raw)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert re.match(rb"HTTP/1\.[01] 400 ", answer), answer[:200]
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records, "aiohttp logged nothing"
    assert all(r.levelno <= logging.WARNING and r.exc_info is None for r in records), [
        (r.levelname, r.getMessage()) for r in records
    ]
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)


def _raiser(exc: Exception) -> Any:
    async def handler(request: web.Request) -> web.Response:
        raise exc

    return handler


_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])/(?:tmp|work|home|var|root|srv|data|opt)/")


async def test_error_bodies_name_no_server_paths(
    tmp_path: Path,
    aiohttp_client: AiohttpClient,
    fake_upstream_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever a storage error carries for the log, the response names the thing instead."""
    blobs = tmp_path / "data" / "blobs"
    errors: dict[str, Exception] = {
        "full": _translate_os_error(OSError(errno.ENOSPC, "No space left"), blobs),
        "io": _translate_os_error(OSError(errno.EIO, "I/O error"), blobs),
        "db": _translate_sqlite_error(
            sqlite3.OperationalError("disk I/O error"), tmp_path / "data" / "w.db"
        ),
    }
    app = create_app(make_config(fake_upstream_url, tmp_path / "data"))
    for name, exc in errors.items():
        add_test_route(app, f"/+test-error/{name}", _raiser(exc), monkeypatch)
    client = await aiohttp_client(app)
    statuses = {}
    for name in errors:
        for accept in ("text/plain", "application/json"):
            resp = await client.get(f"/+test-error/{name}", headers={"Accept": accept})
            body = await resp.text()
            statuses[name] = resp.status
            assert str(tmp_path) not in body, body
            assert not _ABSOLUTE_PATH.search(body), body
    assert statuses == {"full": 507, "io": 500, "db": 500}


async def test_a_broken_archive_error_names_no_path(mirror: Mirror, tmp_path: Path) -> None:
    built = build_wheel(tmp_path, "broken", "1.0")
    cut = tmp_path / "cut" / built.filename
    cut.parent.mkdir()
    cut.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    resp = await mirror.client.post(
        "/root/public/", data=_form(dataclasses.replace(built, path=cut)), headers=ROOT_HEADERS
    )
    body = await resp.text()
    assert resp.status == 400
    assert str(mirror.data_dir) not in body
    assert not _ABSOLUTE_PATH.search(body), body


# ---- memory that clients can grow ----------------------------------------------------------


async def test_client_driven_memos_stay_bounded(
    tmp_path: Path, aiohttp_client: AiohttpClient, fake_upstream_url: str
) -> None:
    """Private-page memo, page-cache 404s and upload locks: capped or dropped, not kept forever."""
    cfg = make_config(fake_upstream_url, tmp_path / "data")
    limits = LimitsConfig(private_pages=20, negative_pages=30)
    client = await aiohttp_client(create_app(dataclasses.replace(cfg, limits=limits)))
    built = build_wheel(tmp_path, "kept", "1.0")
    data = [aiohttp.FormData() for _ in range(3)]
    for form_data in data:
        form_data.add_field("content", built.path.read_bytes(), filename=built.filename)
    uploads = [client.post("/root/public/", data=d, headers=ROOT_HEADERS) for d in data]
    assert sorted(r.status for r in await asyncio.gather(*uploads)) == [200, 200, 200]
    for n in range(100):
        assert (await client.get(f"/root/public/+simple/nope-{n}/")).status == 404
    assert (await client.get("/root/public/+simple/kept/")).status == 200
    registry = client.app[keys.INDEXES]
    private = registry.private("root/public")
    mirror = registry.indexes["root/pypi"]
    assert isinstance(mirror, MirrorIndex)
    assert len(private._pages) == 20
    assert "kept" in private._pages  # the most recent stays
    assert len(mirror.pages._negative) == 30
    assert len(mirror.pages._known) <= 30 + 1  # and the list page, if any
    assert client.app[keys.UPLOADS]._locks == {}
    # a dropped 404 is asked again, not served from a forgotten entry
    resp = await client.get("/root/pypi/+simple/nope-0/")
    assert resp.status == 404
