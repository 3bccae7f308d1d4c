"""MirrorIndex against a loopback FakeIndex: TTL, revalidation, stale-if-error, 404s, one flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy.config import UpstreamConfig
from proxy.errors import ProjectNotFoundError, UpstreamError
from proxy.metrics import Metrics
from proxy.mirror.fetch import Fetcher
from proxy.mirror.index import MirrorIndex
from proxy.mirror.upstream import UpstreamClient
from proxy.model import IndexName, NormalizedName, ProjectPage, normalize
from proxy.storage.blobs import LocalBlobStore, LocalFile
from proxy.storage.locations import InMemory
from proxy.storage.pagecache import PageCache
from tests.conftest import Dists
from tests.fakes.dists import build_wheel
from tests.fakes.index import FakeIndex
from tests.fakes.stores import open_local_blobs

AiohttpServer = Callable[..., Awaitable[TestServer]]
PAGE_TTL = 600.0
NOT_FOUND_TTL = 60.0
ALPHA = normalize("alpha")


@dataclass
class Clock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    """Everything a MirrorIndex needs, real, over one data dir and one fake upstream."""

    fake: FakeIndex
    url: str
    session: aiohttp.ClientSession
    pages: PageCache
    blobs: LocalBlobStore
    data_dir: Path
    clock: Clock = field(default_factory=Clock)
    mirrors: list[MirrorIndex] = field(default_factory=list)

    def mirror(self, **overrides: Any) -> MirrorIndex:
        settings: dict[str, Any] = {
            "retries": 0,
            "read_timeout": 2.0,
            "page_ttl": PAGE_TTL,
            "not_found_ttl": NOT_FOUND_TTL,
        }
        settings.update(overrides)
        cfg = UpstreamConfig(**settings)
        metrics = Metrics()
        client = UpstreamClient(self.session, cfg, metrics)
        mirror = MirrorIndex(
            IndexName("root/pypi"),
            self.url,
            client=client,
            pages=self.pages,
            blobs=self.blobs,
            fetcher=Fetcher(client, self.blobs, metrics),
            metrics=metrics,
            cfg=cfg,
            clock=self.clock,
        )
        self.mirrors.append(mirror)
        return mirror

    def hits(self, project: str) -> int:
        return self.fake.hits(f"/simple/{project}/")


@pytest.fixture
async def setup(
    fake_index: FakeIndex, aiohttp_server: AiohttpServer, tmp_path: Path
) -> AsyncIterator[Setup]:
    server = await aiohttp_server(fake_index.app)
    pages = PageCache(tmp_path / "data" / "pages")
    await pages.start()
    async with open_local_blobs(tmp_path / "data") as blobs, aiohttp.ClientSession() as session:
        url = str(server.make_url("/simple/"))
        state = Setup(fake_index, url, session, pages, blobs, tmp_path / "data")
        yield state
        for mirror in state.mirrors:
            await mirror.close()
            await mirror.fetcher.close(0)
    await pages.close()


def _outcome(mirror: MirrorIndex, outcome: str) -> float:
    value = mirror.metrics.registry.get_sample_value(
        "wheelwell_page_cache_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_a_fresh_page_is_served_from_memory(setup: Setup) -> None:
    mirror = setup.mirror()
    first = await mirror.project_page(ALPHA)
    setup.clock.now += PAGE_TTL - 1
    assert await mirror.project_page(ALPHA) == first
    assert setup.hits("alpha") == 1
    assert {d.filename for d in first.files} == {
        "alpha-1.0-py3-none-any.whl",
        "alpha-2.0-py3-none-any.whl",
    }
    assert mirror.names_cached() == ["alpha"]


async def test_served_page_points_at_our_file_paths(setup: Setup) -> None:
    mirror = setup.mirror()
    served = await mirror.served_page(ALPHA)
    upstream = await mirror.project_page(ALPHA)
    assert [d.url for d in served.files] == [
        f"root/pypi/+f/{d.key}/{d.filename}" for d in upstream.files
    ]
    assert served.versions == ("1.0", "2.0")


async def test_an_expired_page_is_revalidated_with_its_etag(setup: Setup) -> None:
    mirror = setup.mirror()
    first = await mirror.project_page(ALPHA)
    setup.clock.now += PAGE_TTL + 1
    assert await mirror.project_page(ALPHA) == first
    assert setup.hits("alpha") == 2
    assert "If-None-Match" in setup.fake.requests[-1].headers
    assert _outcome(mirror, "revalidated") == 1
    setup.clock.now += PAGE_TTL - 1  # the 304 made it fresh again
    await mirror.project_page(ALPHA)
    assert setup.hits("alpha") == 2


async def test_a_changed_page_replaces_the_cached_one(setup: Setup, tmp_path: Path) -> None:
    mirror = setup.mirror()
    await mirror.project_page(ALPHA)
    setup.fake.add(build_wheel(tmp_path / "new", "alpha", "3.0"))
    setup.clock.now += PAGE_TTL + 1
    page = await mirror.project_page(ALPHA)
    assert "alpha-3.0-py3-none-any.whl" in {d.filename for d in page.files}
    assert page.last_serial == setup.fake.serial


async def test_a_dead_upstream_serves_the_stale_page(setup: Setup) -> None:
    mirror = setup.mirror()
    first = await mirror.served_page(ALPHA)
    setup.fake.fail_status = 503
    setup.clock.now += PAGE_TTL + 1
    assert await mirror.served_page(ALPHA) == first
    assert _outcome(mirror, "stale") == 1


async def test_a_dead_upstream_with_nothing_cached_raises(setup: Setup) -> None:
    setup.fake.fail_status = 503
    with pytest.raises(UpstreamError):
        await setup.mirror().project_page(ALPHA)


async def test_a_404_is_remembered_for_its_own_ttl(setup: Setup) -> None:
    mirror = setup.mirror()
    nope = NormalizedName("nope")
    for _ in range(2):
        with pytest.raises(ProjectNotFoundError):
            await mirror.project_page(nope)
    assert setup.hits("nope") == 1
    setup.clock.now += NOT_FOUND_TTL + 1
    with pytest.raises(ProjectNotFoundError):
        await mirror.served_page(nope)
    assert setup.hits("nope") == 2
    assert "If-None-Match" not in setup.fake.requests[-1].headers  # a 404 has no validators


async def test_a_lower_serial_does_not_replace_the_cached_page(
    setup: Setup, tmp_path: Path
) -> None:
    mirror = setup.mirror()
    first = await mirror.project_page(ALPHA)
    assert first.last_serial == setup.fake.serial
    setup.fake.add(build_wheel(tmp_path / "new", "alpha", "3.0"))
    setup.fake.serial = 1  # a lagging upstream replica
    setup.clock.now += PAGE_TTL + 1
    assert await mirror.project_page(ALPHA) == first
    assert setup.hits("alpha") == 2


async def test_concurrent_requests_make_one_upstream_request(setup: Setup, tmp_path: Path) -> None:
    for n in range(12):  # a page big enough to be parsed off the loop
        setup.fake.add(build_wheel(tmp_path / "many", "many", f"1.{n}"))
    mirror = setup.mirror()
    many = normalize("many")
    pages = await asyncio.gather(*(mirror.served_page(many) for _ in range(20)))
    assert setup.hits("many") == 1
    assert all(p is pages[0] for p in pages)
    assert len(pages[0].files) == 12


async def test_a_cancelled_client_does_not_cancel_the_refresh(setup: Setup) -> None:
    setup.fake.hang = True
    mirror = setup.mirror()
    waiting = asyncio.create_task(mirror.project_page(ALPHA))
    for _ in range(10_000):  # until the upstream has the request (no fixed sleep)
        if setup.fake.requests:
            break
        await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert mirror._refreshes.get(ALPHA) is not None  # still fetching for the next client


async def test_pages_survive_a_restart_from_the_disk_cache(setup: Setup, tmp_path: Path) -> None:
    for n in range(12):
        setup.fake.add(build_wheel(tmp_path / "many", "many", f"1.{n}"))
    many = normalize("many")
    first = setup.mirror()
    page = await first.served_page(many)
    await first.close()
    await setup.pages.close()  # flushes the write-behind
    setup.pages = PageCache(setup.data_dir / "pages")
    await setup.pages.start()
    restarted = setup.mirror()
    loaded = await asyncio.gather(*(restarted.served_page(many) for _ in range(5)))
    assert loaded[0] == page
    assert all(p is loaded[0] for p in loaded)  # one disk load and parse for all five
    assert setup.hits("many") == 1


async def test_the_project_list(setup: Setup) -> None:
    mirror = setup.mirror()
    names = await mirror.project_list()
    assert set(names.names) == {"alpha", "beta", "bulky", "gamma"}
    await mirror.project_list()
    assert setup.fake.hits("/simple/") == 1
    assert mirror.names_cached() == []


async def test_metadata_is_served_from_memory_then_from_disk(setup: Setup, dists: Dists) -> None:
    mirror = setup.mirror()
    page: ProjectPage = await mirror.project_page(ALPHA)
    dist = page.find(dists.alpha.filename)
    assert dist is not None
    sources = await asyncio.gather(
        *(mirror.locate_metadata(ALPHA, dist.key, dist.filename) for _ in range(5))
    )
    assert sources == [InMemory(dists.alpha.metadata or b"")] * 5
    assert setup.fake.hits(f"/files/{dist.filename}.metadata") == 1
    await mirror.close()  # the write-behind finishes
    assert await mirror.locate_metadata(ALPHA, dist.key, dist.filename) == sources[0]  # kept
    stored = await setup.mirror().locate_metadata(ALPHA, dist.key, dist.filename)
    assert isinstance(stored, LocalFile)
    assert stored.path.read_bytes() == dists.alpha.metadata
    assert setup.fake.hits(f"/files/{dist.filename}.metadata") == 1
