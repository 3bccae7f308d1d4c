"""The fake upstream itself: real pip accepts its pages, and every knob does what it says."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import pytest
from pytest_aiohttp import AiohttpServer

from tests.conftest import Clients, Dists, http_get
from tests.fakes.index import JSON_TYPE, FakeIndex, Mode, ThreadedServer

pytestmark = pytest.mark.e2e

PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"  # noqa: E501


def fetch(url: str, **headers: str) -> tuple[int, Mapping[str, str], bytes]:
    got = http_get(url, headers)
    return got.status, got.headers, got.body


@pytest.mark.parametrize("mode", ["json", "html", "both"])
def test_pip_installs_from_fake(
    mode: Mode,
    fake_index: FakeIndex,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
    dists: Dists,
) -> None:
    fake_index.mode = mode
    target = tmp_path / "target"
    index_url = f"{fake_index_server.url}/simple/"
    clients.pip("install", "--target", str(target), "--index-url", index_url, "alpha")
    out = clients.python(
        "import alpha, beta; print(alpha.__version__, beta.__version__)", path=target
    )
    assert out.split() == ["1.0", "2.0"]  # alpha 2.0 needs Python 4, beta 3.0 is yanked
    assert fake_index.hits(f"/files/{dists.alpha.filename}.metadata") == 1  # PEP 658 understood
    assert fake_index.hits(f"/files/{dists.alpha.filename}") == 1
    assert fake_index.hits(f"/files/{dists.beta_yanked.filename}") == 0


@pytest.mark.parametrize("mode", ["json", "html"])
def test_uv_installs_from_fake(
    mode: Mode,
    fake_index: FakeIndex,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    fake_index.mode = mode
    target = tmp_path / "target"
    args = ("--target", str(target), "--python", sys.executable)
    clients.uv("pip", "install", *args, "--index-url", f"{fake_index_server.url}/simple/", "alpha")
    out = clients.python(
        "import alpha, beta; print(alpha.__version__, beta.__version__)", path=target
    )
    assert out.split() == ["1.0", "2.0"]


def test_pip_rejects_wrong_hash(
    fake_index: FakeIndex,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
    dists: Dists,
) -> None:
    fake_index.wrong_hash = True
    index_url = f"{fake_index_server.url}/simple/"
    args = ("--target", str(tmp_path / "t"), "--index-url", index_url, "--no-deps", "beta==2.0")
    result = clients.pip("install", *args, check=False)
    assert result.returncode != 0
    assert "DO NOT MATCH THE HASHES" in result.stderr
    assert f"Got        {dists.beta2.sha256}" in result.stderr


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (PIP_ACCEPT, JSON_TYPE),
        ("text/html", "text/html"),
        ("", "text/html"),
        ("application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.v1+html"),
        (f"text/html;q=0.5, {JSON_TYPE};q=0.4", "text/html"),
        (f"text/html;q=0.4, {JSON_TYPE};q=0.5", JSON_TYPE),
        (f"{JSON_TYPE};q=0, */*", "text/html"),
    ],
)
def test_negotiation(fake_index_server: ThreadedServer, accept: str, content_type: str) -> None:
    status, headers, _ = fetch(f"{fake_index_server.url}/simple/beta/", Accept=accept)
    assert status == 200
    assert headers["Content-Type"].split(";")[0] == content_type


def test_pages(fake_index: FakeIndex, fake_index_server: ThreadedServer, dists: Dists) -> None:
    url = f"{fake_index_server.url}/simple/"
    status, headers, body = fetch(f"{url}alpha/", Accept="text/html")
    assert status == 200
    assert headers["X-PyPI-Last-Serial"] == str(fake_index.serial)
    text = body.decode()
    assert f'href="../../files/{dists.alpha.filename}#sha256={dists.alpha.sha256}"' in text
    assert 'data-requires-python="&gt;=3.8"' in text
    assert f'data-core-metadata="sha256={dists.alpha.metadata_sha256}"' in text
    _, _, gamma = fetch(f"{url}gamma/", Accept="text/html")
    assert b'data-yanked=""' in gamma
    assert b"data-core-metadata" not in gamma  # sdists have no PEP 658 metadata
    status, _, body = fetch(f"{url}beta/", Accept=JSON_TYPE)
    files = {f["filename"]: f for f in json.loads(body)["files"]}
    assert files[dists.beta_yanked.filename]["yanked"] == "broken build"
    beta2 = files[dists.beta2.filename]
    assert beta2["url"] == f"{fake_index_server.url}/files/{dists.beta2.filename}"
    assert beta2["hashes"] == {"sha256": dists.beta2.sha256}
    assert beta2["size"] == dists.beta2.size
    status, _, body = fetch(url, Accept=JSON_TYPE)
    assert {p["name"] for p in json.loads(body)["projects"]} == {"alpha", "beta", "gamma", "bulky"}


def test_etag_and_errors(fake_index: FakeIndex, fake_index_server: ThreadedServer) -> None:
    url = f"{fake_index_server.url}/simple/beta/"
    _, headers, _ = fetch(url, Accept=JSON_TYPE)
    assert fetch(url, Accept=JSON_TYPE, **{"If-None-Match": headers["ETag"]})[0] == 304
    assert fetch(url, Accept="text/html", **{"If-None-Match": headers["ETag"]})[0] == 200
    assert fetch(f"{fake_index_server.url}/simple/nope/")[0] == 404
    status, headers, _ = fetch(f"{fake_index_server.url}/simple/Beta/")
    assert status == 200  # redirected to /simple/beta/
    fake_index.omit_hashes = True
    assert b"sha256" not in fetch(url, Accept=JSON_TYPE)[2]
    fake_index.fail_status = 503
    assert fetch(url)[0] == 503
    assert fake_index.hits("/simple/beta/") == 6  # 4 above, 1 via redirect, 1 failed
    assert fake_index.hits("/simple/Beta/") == 1


def test_file_range_and_truncation(
    fake_index: FakeIndex, fake_index_server: ThreadedServer, dists: Dists
) -> None:
    built = dists.bulky
    status, _, body = fetch(f"{fake_index_server.url}/files/{built.filename}", Range="bytes=10-")
    assert status == 206
    assert body == built.path.read_bytes()[10:]
    assert fake_index.requests[-1].headers["Range"] == "bytes=10-"
    fake_index.truncate_files = True
    conn = http.client.HTTPConnection("127.0.0.1", fake_index_server.port, timeout=10)
    try:
        conn.request("GET", f"/files/{built.filename}")
        response = conn.getresponse()
        assert response.getheader("Content-Length") == str(built.size)
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        conn.close()


def test_stop_refuses_connections(fake_index_server: ThreadedServer) -> None:
    fake_index_server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", fake_index_server.port), timeout=5).close()
    fake_index_server.start()
    assert fetch(f"{fake_index_server.url}/simple/")[0] == 200


async def test_in_loop_server(
    fake_index: FakeIndex, aiohttp_server: AiohttpServer, dists: Dists
) -> None:
    server = await aiohttp_server(fake_index.app)
    fake_index.slow_chunk_delay = 0.01
    async with aiohttp.ClientSession(str(server.make_url("/"))) as session:
        async with session.get("/simple/bulky/", headers={"Accept": JSON_TYPE}) as response:
            url = (await response.json(content_type=JSON_TYPE))["files"][0]["url"]
        assert url == str(server.make_url(f"/files/{dists.bulky.filename}"))
        async with session.get(url) as response:
            assert hashlib.sha256(await response.read()).hexdigest() == dists.bulky.sha256
        fake_index.truncate_files = True
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.get(url) as response:
                await response.read()
        fake_index.hang = True
        with pytest.raises(asyncio.TimeoutError):
            async with session.get("/simple/", timeout=aiohttp.ClientTimeout(total=0.3)):
                pass
    assert fake_index.hits("/simple/") == 1
