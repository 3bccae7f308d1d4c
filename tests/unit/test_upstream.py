"""UpstreamClient against a loopback FakeIndex: conditional GETs, status mapping, retries, rest."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy.config import UpstreamConfig
from proxy.errors import (
    UpstreamConcealedError,
    UpstreamOfflineError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from proxy.metrics import Metrics
from proxy.mirror.upstream import PAGE_ACCEPT, UpstreamClient
from tests.conftest import Dists
from tests.fakes.index import FakeIndex

AiohttpServer = Callable[..., Awaitable[TestServer]]


@dataclass
class Upstream:
    """A client factory over one session, pointed at the running fake."""

    fake: FakeIndex
    base: str  #: http://127.0.0.1:port/
    session: aiohttp.ClientSession

    def client(self, **overrides: Any) -> UpstreamClient:
        settings: dict[str, Any] = {"retries": 0, "backoff": 0.001, "read_timeout": 2.0}
        settings.update(overrides)
        return UpstreamClient(self.session, UpstreamConfig(**settings), Metrics())


@pytest.fixture
async def upstream(fake_index: FakeIndex, aiohttp_server: AiohttpServer) -> AsyncIterator[Upstream]:
    server = await aiohttp_server(fake_index.app)
    async with aiohttp.ClientSession() as session:
        yield Upstream(fake_index, str(server.make_url("/")), session)


def _offline_gauge(client: UpstreamClient) -> float | None:
    return client.metrics.registry.get_sample_value("wheelwell_upstream_offline")


async def test_page_request_sends_accept_and_reads_the_answer(upstream: Upstream) -> None:
    page = await upstream.client().fetch_page(upstream.base + "simple/alpha/")
    assert page.status == 200
    assert page.content_type == "application/vnd.pypi.simple.v1+json"
    assert page.etag is not None
    assert page.serial == upstream.fake.serial
    assert b'"name": "alpha"' in page.body
    assert upstream.fake.requests[-1].headers["Accept"] == PAGE_ACCEPT


async def test_conditional_get_sends_validators_and_maps_304(upstream: Upstream) -> None:
    client = upstream.client()
    first = await client.fetch_page(upstream.base + "simple/alpha/")
    again = await client.fetch_page(
        upstream.base + "simple/alpha/", etag=first.etag, last_modified="Mon, 01 Jan 2024"
    )
    assert again.status == 304 and again.body == b""
    headers = upstream.fake.requests[-1].headers
    assert headers["If-None-Match"] == first.etag
    assert headers["If-Modified-Since"] == "Mon, 01 Jan 2024"


async def test_404_and_410_are_answers_not_errors(upstream: Upstream) -> None:
    client = upstream.client(retries=2)
    missing = await client.fetch_page(upstream.base + "simple/nope/")
    assert missing.status == 404
    assert upstream.fake.hits("/simple/nope/") == 1  # no retry
    upstream.fake.fail_status = 410
    gone = await client.fetch_page(upstream.base + "simple/alpha/")
    assert gone.status == 404


async def test_5xx_is_retried_with_backoff_then_raised(upstream: Upstream) -> None:
    upstream.fake.fail_status = 503
    client = upstream.client(retries=2, failure_threshold=10)
    with pytest.raises(UpstreamStatusError) as caught:
        await client.fetch_page(upstream.base + "simple/alpha/")
    assert caught.value.status == 503
    assert upstream.fake.hits("/simple/alpha/") == 3


async def test_4xx_is_not_retried_and_does_not_count_as_down(upstream: Upstream) -> None:
    upstream.fake.fail_status = 403
    client = upstream.client(retries=2, failure_threshold=1)
    for _ in range(2):
        with pytest.raises(UpstreamStatusError) as caught:
            await client.fetch_page(upstream.base + "simple/alpha/")
        assert caught.value.status == 403
    assert upstream.fake.hits("/simple/alpha/") == 2
    assert client.available


async def test_a_hanging_upstream_times_out(upstream: Upstream) -> None:
    upstream.fake.hang = True
    client = upstream.client(read_timeout=0.05)
    with pytest.raises(UpstreamTimeoutError):
        await client.fetch_page(upstream.base + "simple/alpha/")
    assert client.last_error is not None and "timed out" in client.last_error


async def test_a_refused_connection_is_unavailable(upstream: Upstream) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = upstream.client()
    with pytest.raises(UpstreamUnavailableError):
        await client.fetch_page(f"http://127.0.0.1:{port}/simple/alpha/")


async def test_repeated_failures_rest_the_upstream(upstream: Upstream) -> None:
    upstream.fake.fail_status = 502
    client = upstream.client(failure_threshold=2, offline_retry=300.0)
    url = upstream.base + "simple/alpha/"
    for _ in range(2):
        with pytest.raises(UpstreamStatusError):
            await client.fetch_page(url)
    assert not client.available
    assert _offline_gauge(client) == 1
    with pytest.raises(UpstreamStatusError):  # resting: an uncached request probes it once
        await client.fetch_page(url)
    with pytest.raises(UpstreamOfflineError):  # and the next probe waits for probe_interval
        await client.fetch_page(url)
    with pytest.raises(UpstreamOfflineError):
        async with client.open_file(upstream.base + "files/x"):
            pass
    assert upstream.fake.hits("/simple/alpha/") == 3


async def test_a_success_after_the_rest_leaves_offline_mode(upstream: Upstream) -> None:
    upstream.fake.fail_status = 502
    client = upstream.client(failure_threshold=1, offline_retry=60.0)
    url = upstream.base + "simple/alpha/"
    with pytest.raises(UpstreamStatusError):
        await client.fetch_page(url)
    assert _offline_gauge(client) == 1
    upstream.fake.fail_status = None
    client.health.clock = lambda: time.monotonic() + 61  # the rest is over
    assert _offline_gauge(client) == 0  # at the next scrape, with nothing asked
    assert (await client.fetch_page(url)).status == 200
    assert _offline_gauge(client) == 0
    assert [h.failures for h in client.health.entries()] == [0]


async def test_offline_mode_never_asks(upstream: Upstream) -> None:
    client = upstream.client(offline=True)
    assert not client.available
    with pytest.raises(UpstreamOfflineError):
        await client.fetch_page(upstream.base + "simple/alpha/")
    assert upstream.fake.requests == []


async def test_open_file_streams_a_file_and_honours_headers(
    upstream: Upstream, dists: Dists
) -> None:
    client = upstream.client()
    url = upstream.base + f"files/{dists.alpha.filename}"
    async with client.open_file(url) as resp:
        assert resp.status == 200
        body = await resp.read()
    assert body == dists.alpha.path.read_bytes()
    async with client.open_file(url, headers={"Range": "bytes=10-"}) as resp:
        assert resp.status == 206
        assert await resp.read() == body[10:]


async def test_open_file_maps_statuses_and_retries_5xx(upstream: Upstream) -> None:
    client = upstream.client(retries=1, failure_threshold=10)
    with pytest.raises(UpstreamStatusError) as caught:
        async with client.open_file(upstream.base + "files/nothing.whl"):
            pass
    assert caught.value.status == 404
    assert upstream.fake.hits("/files/nothing.whl") == 1
    upstream.fake.fail_status = 500
    with pytest.raises(UpstreamStatusError) as caught:
        async with client.open_file(upstream.base + "files/nothing.whl"):
            pass
    assert caught.value.status == 500
    assert upstream.fake.hits("/files/nothing.whl") == 3  # one retry


async def test_a_truncated_body_is_an_upstream_error(upstream: Upstream, dists: Dists) -> None:
    upstream.fake.truncate_files = True
    client = upstream.client()
    with pytest.raises(UpstreamUnavailableError):
        async with client.open_file(upstream.base + f"files/{dists.bulky.filename}") as resp:
            await resp.read()


async def test_a_cached_answer_never_probes_a_resting_upstream(upstream: Upstream) -> None:
    upstream.fake.fail_status = 502
    client = upstream.client(failure_threshold=1, offline_retry=300.0)
    url = upstream.base + "simple/alpha/"
    with pytest.raises(UpstreamStatusError):
        await client.fetch_page(url)
    upstream.fake.fail_status = None
    with pytest.raises(UpstreamOfflineError):
        await client.fetch_page(url, may_probe=False)
    assert upstream.fake.hits("/simple/alpha/") == 1
    assert (await client.fetch_page(url)).status == 200  # a probe: the rest ends at once
    assert client.available


async def test_a_users_mirror_gets_concealed_errors(upstream: Upstream) -> None:
    upstream.fake.fail_status = 503
    client = upstream.client(failure_threshold=1, offline_retry=300.0)
    with pytest.raises(UpstreamConcealedError) as caught:
        await client.fetch_page(upstream.base + "simple/alpha/", index="alice/m")
    assert str(caught.value) == "upstream of index 'alice/m' is unavailable"
    assert isinstance(caught.value.detail, UpstreamStatusError)
    with pytest.raises(UpstreamConcealedError):
        async with client.open_file(upstream.base + "files/x", index="alice/m"):
            pass
    assert client.available  # a user's upstream never counts against root's
