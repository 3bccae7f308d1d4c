"""A flood of wrong passwords against the real daemon: 429s, and cached files still served."""

from __future__ import annotations

import asyncio
import hashlib
import json
from urllib.parse import urljoin

import aiohttp
import pytest

from tests.conftest import Daemon, DaemonFactory, Dists, http_get
from tests.e2e.conftest import download_file
from tests.fakes.index import JSON_TYPE, FakeIndex, ThreadedServer

pytestmark = pytest.mark.e2e

FLOOD = 200
#: the tarpit as shipped (the test daemons turn it off): refusals are answered late
TARPIT = {"auth": {"login_throttled_delay": "1s", "login_failure_delay": "0.5s"}}


@pytest.fixture
def daemon(daemon_factory: DaemonFactory, fake_index_server: ThreadedServer) -> Daemon:
    return daemon_factory(fake_index_server.url, TARPIT)


def _file_url(daemon: Daemon, project: str, filename: str) -> str:
    page_url = daemon.index_url() + f"{project}/"
    page = http_get(page_url, {"Accept": JSON_TYPE})
    links: dict[str, str] = {f["filename"]: f["url"] for f in json.loads(page.body)["files"]}
    return urljoin(page_url, links[filename])


async def test_flood_of_wrong_passwords_gets_429_while_files_are_served(
    daemon: Daemon, dists: Dists, fake_index: FakeIndex
) -> None:
    wanted = dists.alpha
    body = download_file(daemon, "root/pypi", "alpha", wanted.filename)
    assert hashlib.sha256(body).hexdigest() == wanted.sha256
    url = _file_url(daemon, "alpha", wanted.filename)
    flood_done = asyncio.Event()
    downloads: list[tuple[int, str]] = []
    limits = aiohttp.TCPConnector(limit=FLOOD + 8)
    async with aiohttp.ClientSession(connector=limits) as session:

        async def wrong_login(n: int) -> tuple[int, str | None]:
            body = {"user": "root", "password": f"guess-{n}"}
            async with session.post(daemon.url + "/+login", json=body) as resp:
                await resp.read()
                return resp.status, resp.headers.get("Retry-After")

        async def download_until_done() -> None:
            while True:
                async with session.get(url) as resp:
                    downloads.append((resp.status, hashlib.sha256(await resp.read()).hexdigest()))
                if flood_done.is_set():
                    return

        downloader = asyncio.create_task(download_until_done())
        try:
            answers = await asyncio.gather(*(wrong_login(n) for n in range(FLOOD)))
        finally:
            flood_done.set()
            await downloader
    statuses = sorted({status for status, _ in answers})
    assert statuses == [401, 429]
    throttled = [retry for status, retry in answers if status == 429]
    assert len(throttled) >= FLOOD - 30  # at most the per-user budget was ever checked
    assert all(retry is not None and int(retry) >= 1 for retry in throttled)
    assert downloads
    assert set(downloads) == {(200, wanted.sha256)}
    assert fake_index.hits(f"/files/{wanted.filename}") == 1  # every download came from the cache
    log = daemon.log()
    assert "failed login for user 'root' from 127.0.0.1: password" in log
    assert "guess-" not in log
