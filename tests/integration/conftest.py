"""In-process fixtures: the real app (create_app) against a FakeIndex in the same event loop."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.app import create_app
from proxy.config import (
    AuthConfig,
    Config,
    IndexConfig,
    IndexKind,
    StorageConfig,
    UpstreamConfig,
)
from proxy.hosted.permissions import Operation
from proxy.web import authz
from tests.fakes.index import FakeIndex

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ROOT_PASSWORD = "integration-root"
AiohttpServer = Callable[..., Awaitable[TestServer]]
AiohttpClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@dataclass
class Mirror:
    """A running app, its fake upstream and its data dir."""

    client: TestClient[Any, Any]
    fake: FakeIndex
    server: TestServer
    data_dir: Path

    def blob_files(self) -> list[Path]:
        return [p for p in (self.data_dir / "blobs").rglob("*") if p.is_file()]

    def temp_files(self) -> list[Path]:
        return list((self.data_dir / "tmp").iterdir())


MirrorFactory = Callable[..., Awaitable[Mirror]]


def make_config(upstream: str, data_dir: Path, **upstream_overrides: Any) -> Config:
    settings: dict[str, Any] = {
        "url": upstream,
        "retries": 0,
        "read_timeout": 2.0,
        "connect_timeout": 2.0,
        "backoff": 0.01,
    }
    settings.update(upstream_overrides)
    return Config(
        # no tarpit: tests answer refused logins at once (tests/integration/test_throttle.py
        # turns it on for itself)
        auth=AuthConfig(
            root_password=ROOT_PASSWORD, login_throttled_delay=0.0, login_failure_delay=0.0
        ),
        storage=StorageConfig(data_dir=data_dir),
        upstream=UpstreamConfig(**settings),
        indexes=(
            IndexConfig(name="root/pypi", kind=IndexKind.MIRROR),
            IndexConfig(name="root/public", kind=IndexKind.PRIVATE, bases=("root/pypi",)),
        ),
    )


@pytest.fixture
def mirror_factory(
    tmp_path: Path,
    fake_index: FakeIndex,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> MirrorFactory:
    """Start the fake upstream once, then as many apps over the same data dir as a test wants."""
    servers: list[tuple[TestServer, str]] = []

    async def factory(
        max_size: int = 0, keep_free: int | None = None, **upstream_overrides: Any
    ) -> Mirror:
        if not servers:
            server = await aiohttp_server(fake_index.app)
            servers.append((server, str(server.make_url("/simple/"))))
        server, url = servers[0]
        data_dir = tmp_path / "data"
        cfg = make_config(url, data_dir, **upstream_overrides)
        storage = StorageConfig(data_dir=data_dir, max_size=max_size)
        if keep_free is not None:
            storage = dataclasses.replace(storage, keep_free=keep_free)
        cfg = dataclasses.replace(cfg, storage=storage)
        client = await aiohttp_client(create_app(cfg))
        return Mirror(client, fake_index, server, data_dir)

    return factory


@pytest.fixture
async def mirror(mirror_factory: MirrorFactory) -> Mirror:
    return await mirror_factory()


def replace_upstream(cfg: Config, **changes: Any) -> Config:
    return dataclasses.replace(cfg, upstream=dataclasses.replace(cfg.upstream, **changes))


def add_test_route(
    app: web.Application, path: str, handler: Handler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GET route only a test has, with the row the permission middleware wants for it."""
    name = "test" + path.replace("/", "-").replace("+", "")
    monkeypatch.setitem(authz.ROUTE_OPERATIONS, name, Operation.OPS_READ)
    app.router.add_get(path, handler, name=name)
