"""Fetcher against a loopback FakeIndex: one GET per file, verified before its last byte."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy.config import UpstreamConfig
from proxy.errors import HashMismatchError, UpstreamError, UpstreamUnavailableError
from proxy.metrics import Metrics
from proxy.mirror.fetch import Download, Fetcher
from proxy.mirror.upstream import UpstreamClient
from proxy.storage.blobs import LocalBlobStore
from tests.conftest import Dists
from tests.fakes.dists import Built
from tests.fakes.index import FakeIndex
from tests.fakes.stores import open_local_blobs

AiohttpServer = Callable[..., Awaitable[TestServer]]


@dataclass
class Setup:
    fake: FakeIndex
    base: str
    blobs: LocalBlobStore
    fetcher: Fetcher
    data_dir: Path

    def url(self, built: Built) -> str:
        return f"{self.base}files/{built.filename}"

    def temp_files(self) -> list[Path]:
        return list((self.data_dir / "tmp").iterdir())


@pytest.fixture
async def setup(
    fake_index: FakeIndex, aiohttp_server: AiohttpServer, tmp_path: Path
) -> AsyncIterator[Setup]:
    server = await aiohttp_server(fake_index.app)
    metrics = Metrics()
    async with open_local_blobs(tmp_path / "data") as blobs, aiohttp.ClientSession() as session:
        client = UpstreamClient(session, UpstreamConfig(retries=0, read_timeout=2.0), metrics)
        fetcher = Fetcher(client, blobs, metrics)
        yield Setup(fake_index, str(server.make_url("/")), blobs, fetcher, tmp_path / "data")
        await fetcher.close(0)


async def _read(download: Download) -> bytes:
    return b"".join([chunk async for chunk in download.stream()])


async def test_one_get_for_every_joiner(setup: Setup, dists: Dists) -> None:
    bulky = dists.bulky
    downloads = [
        setup.fetcher.fetch(bulky.sha256, setup.url(bulky), bulky.filename, bulky.sha256)
        for _ in range(5)
    ]
    assert all(d is downloads[0] for d in downloads)
    assert setup.fetcher.in_flight() == 1
    bodies = await asyncio.gather(*(_read(d) for d in downloads))
    assert bodies == [bulky.path.read_bytes()] * 5
    assert setup.fake.hits(f"/files/{bulky.filename}") == 1
    await downloads[0].finished.wait()
    assert downloads[0].verified and downloads[0].error is None
    stored = await setup.blobs.locate(bulky.sha256)
    assert stored is not None and stored.path.read_bytes() == bulky.path.read_bytes()
    assert setup.fetcher.find(bulky.sha256) is None
    assert setup.temp_files() == []


async def test_a_url_key_is_stored_as_an_alias(setup: Setup, dists: Dists) -> None:
    alpha = dists.alpha
    download = setup.fetcher.fetch("url-key", setup.url(alpha), alpha.filename, None)
    assert await _read(download) == alpha.path.read_bytes()
    await download.finished.wait()
    assert await setup.blobs.locate("url-key") == await setup.blobs.locate(alpha.sha256)


async def test_a_hash_mismatch_is_never_stored_and_fails_the_reader(
    setup: Setup, dists: Dists
) -> None:
    alpha = dists.alpha
    wrong = "0" * 64
    download = setup.fetcher.fetch(wrong, setup.url(alpha), alpha.filename, wrong)
    received = bytearray()
    with pytest.raises(HashMismatchError):
        async for chunk in download.stream():
            received += chunk
    assert len(received) < alpha.size  # held back one byte short of a complete body
    await download.finished.wait()
    assert await setup.blobs.locate(wrong) is None
    assert setup.blobs.find(alpha.sha256) is None
    assert setup.temp_files() == []


async def test_a_body_cut_short_fails_the_reader(setup: Setup, dists: Dists) -> None:
    setup.fake.truncate_files = True
    bulky = dists.bulky
    download = setup.fetcher.fetch(bulky.sha256, setup.url(bulky), bulky.filename, bulky.sha256)
    with pytest.raises(UpstreamError):
        await _read(download)
    await download.finished.wait()
    assert await setup.blobs.locate(bulky.sha256) is None
    assert setup.temp_files() == []


async def test_a_failure_before_headers_is_raised_by_wait_started(
    setup: Setup, dists: Dists
) -> None:
    setup.fake.fail_status = 404
    alpha = dists.alpha
    download = setup.fetcher.fetch(alpha.sha256, setup.url(alpha), alpha.filename, alpha.sha256)
    with pytest.raises(UpstreamError):
        await download.wait_started()
    again = setup.fetcher.fetch(alpha.sha256, setup.url(alpha), alpha.filename, alpha.sha256)
    assert again is not download  # a failed download is not joined: the next one retries


async def test_close_cancels_a_download_in_flight(setup: Setup, dists: Dists) -> None:
    setup.fake.slow_chunk_delay = 0.05
    bulky = dists.bulky
    download = setup.fetcher.fetch(bulky.sha256, setup.url(bulky), bulky.filename, bulky.sha256)
    progress = download.stream()
    await anext(progress)  # bytes are flowing
    await setup.fetcher.close(0)
    assert download.done and not download.verified
    assert isinstance(download.error, UpstreamUnavailableError)
    assert "cancelled by shutdown" in str(download.error)
    with pytest.raises(UpstreamUnavailableError):
        async for _ in progress:
            pass
    assert await setup.blobs.locate(bulky.sha256) is None
    assert setup.temp_files() == []
    assert setup.fetcher.in_flight() == 0
