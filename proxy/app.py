"""`create_app(config)`: builds every service, stores it under an AppKey, wires the routes."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from proxy import __version__, logs
from proxy.config import Config, IndexConfig, IndexKind, load
from proxy.errors import ConfigError, WheelwellError
from proxy.hosted import search
from proxy.hosted.auth import Auth
from proxy.hosted.descriptions import DescriptionRenderer
from proxy.hosted.private import PrivateIndex
from proxy.hosted.search import SearchIndex
from proxy.hosted.uploads import Uploads
from proxy.hosted.wheelhouse import Wheelhouse
from proxy.indexes.registry import Index, IndexRegistry
from proxy.indexes.store import IndexStore
from proxy.metrics import Metrics
from proxy.mirror.addresses import AddressPolicy, check_mirror_url
from proxy.mirror.fetch import Fetcher
from proxy.mirror.index import MirrorIndex
from proxy.mirror.ranges import RangeCache
from proxy.mirror.upstream import UpstreamClient, new_session
from proxy.model import IndexName, mask_url
from proxy.storage.blobs import BlobAliases, LocalBlobStore
from proxy.storage.db import Database
from proxy.storage.eviction import CacheManager
from proxy.storage.pagecache import PageCache
from proxy.storage.scrubber import Scrubber
from proxy.web import api, files, keys, ops, simple, ui, upload
from proxy.web import search as search_web
from proxy.web.authz import authz_middleware
from proxy.web.forwarded import forwarded_middleware
from proxy.web.headers import add_security_headers
from proxy.web.middleware import error_middleware

log = logging.getLogger(__name__)


async def _database(app: web.Application) -> AsyncIterator[None]:
    """The database first and closed last: every other service may read or write it."""
    db = Database(app[keys.CONFIG].storage.data_dir / "wheelwell.sqlite3")
    await db.start()
    app[keys.DB] = db
    yield
    await db.close()


async def _storage(app: web.Application) -> AsyncIterator[None]:
    data_dir = app[keys.CONFIG].storage.data_dir
    aliases = BlobAliases(app[keys.DB])
    await aliases.migrate(data_dir / "aliases")  # milestone 1 kept them as files
    blobs = LocalBlobStore(data_dir, aliases)
    blobs.open()
    await asyncio.get_running_loop().run_in_executor(None, blobs.scan)
    app[keys.BLOBS] = blobs
    pages = PageCache(data_dir / "pages", max_negative=app[keys.CONFIG].limits.negative_pages)
    await pages.start()
    app[_PAGES] = pages
    app[_RANGES] = RangeCache()
    yield
    await pages.close()
    blobs.close()


async def _upstream(app: web.Application) -> AsyncIterator[None]:
    cfg = app[keys.CONFIG]
    agent = f"wheelwell/{__version__}"
    session = new_session(AddressPolicy.for_mirrors(cfg.upstream, root=True), agent)
    user_session = new_session(AddressPolicy.for_mirrors(cfg.upstream, root=False), agent)
    app[keys.UPSTREAM] = UpstreamClient(
        session, cfg.upstream, app[keys.METRICS], user_session=user_session
    )
    app[keys.FETCHER] = Fetcher(app[keys.UPSTREAM], app[keys.BLOBS], app[keys.METRICS])
    yield
    await app[keys.FETCHER].close(app[SHUTDOWN].remaining(cfg.server.shutdown_timeout))
    await session.close()
    await user_session.close()


async def _services(app: web.Application) -> AsyncIterator[None]:
    cfg = app[keys.CONFIG]
    db = app[keys.DB]
    app[keys.SEARCH] = SearchIndex(db)
    await app[keys.SEARCH].start()  # its table exists before the first change is derived
    db.add_deriver(search.derive)
    app[keys.AUTH] = Auth(
        db, cfg.auth, app[keys.METRICS], password_file=cfg.storage.data_dir / "root-password"
    )
    await app[keys.AUTH].bootstrap()
    app[keys.UPLOADS] = Uploads(
        db, app[keys.BLOBS], app[keys.METRICS], metadata_limit=cfg.limits.max_metadata_size
    )
    cache = CacheManager(
        app[keys.BLOBS], db.path, app[keys.METRICS], cfg.storage.max_size, cfg.storage.keep_free
    )
    app[keys.METRICS].watch_storage(cfg.storage.data_dir, cfg.storage.max_size)
    app[keys.BLOBS].on_commit = cache.committed
    cache.update_gauges()
    app[keys.CACHE] = cache
    scrubber = None
    if cfg.storage.scrub and cfg.storage.scrub_rate > 0:
        scrubber = Scrubber(
            app[keys.BLOBS],
            db.path,
            app[keys.METRICS],
            rate=cfg.storage.scrub_rate,
            interval=cfg.storage.scrub_interval,
        )
        scrubber.start()
    limits = cfg.limits
    renderer = DescriptionRenderer(limits.max_description_size, limits.description_render_timeout)
    app[keys.DESCRIPTIONS] = renderer
    yield
    renderer.close()
    if scrubber is not None:
        await scrubber.close()
    await app[keys.SEARCH].close()
    await cache.close()
    await app[keys.AUTH].close()


def _index_builder(app: web.Application) -> Callable[[IndexConfig], Index]:
    cfg = app[keys.CONFIG]

    def build(index_cfg: IndexConfig) -> Index:
        name = IndexName(index_cfg.name)
        if index_cfg.kind is IndexKind.PRIVATE:
            return PrivateIndex(
                name, index_cfg, app[keys.DB], app[keys.BLOBS], max_pages=cfg.limits.private_pages
            )
        mirror = MirrorIndex(
            name,
            cfg.upstream_url(index_cfg),
            client=app[keys.UPSTREAM],
            pages=app[_PAGES],
            blobs=app[keys.BLOBS],
            fetcher=app[keys.FETCHER],
            metrics=app[keys.METRICS],
            cfg=cfg.upstream,
            metadata_limit=cfg.limits.max_metadata_size,
            generate_metadata=index_cfg.generate_metadata,
            ranges=app[_RANGES],
            lists=cfg.storage.data_dir / "lists",
        )
        mirror.on_page = functools.partial(app[keys.SEARCH].note_mirror_page, name)
        return mirror

    return build


async def _indexes(app: web.Application) -> AsyncIterator[None]:
    cfg = app[keys.CONFIG]
    registry = IndexRegistry((), _index_builder(app), lists=cfg.storage.data_dir / "lists")
    store = IndexStore(app[keys.DB], registry, functools.partial(check_mirror_url, cfg.upstream))
    await store.load(cfg.indexes)
    app[keys.INDEXES] = registry
    app[keys.INDEX_STORE] = store
    for index_cfg in registry.configs.values():
        upstream = (
            f" mirroring {mask_url(cfg.upstream_url(index_cfg))}"
            if index_cfg.kind is IndexKind.MIRROR
            else f" bases {', '.join(index_cfg.bases) or '-'}"
        )
        log.info("index %s (%s)%s", index_cfg.name, index_cfg.kind.value, upstream)
    wheelhouses = []
    for index in registry.privates():
        if index.cfg.wheelhouse:
            wheelhouse = Wheelhouse(
                index,
                app[keys.DB],
                app[keys.BLOBS],
                cfg.storage.wheelhouse_poll,
                metadata_limit=cfg.limits.max_metadata_size,
            )
            await wheelhouse.start()
            wheelhouses.append(wheelhouse)
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()

    def on_hangup() -> None:
        if TLS in app:
            reload_tls(app[TLS], cfg)
        if cfg.source == "<defaults>":
            return
        task = asyncio.create_task(_reload_indexes(app), name="reload on SIGHUP")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    hangup = (cfg.source != "<defaults>" or TLS in app) and _can_handle_signals()
    if hangup:
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
    yield
    if hangup:
        loop.remove_signal_handler(signal.SIGHUP)
    await asyncio.gather(*reloads, return_exceptions=True)
    for wheelhouse in wheelhouses:
        await wheelhouse.close()
    await registry.close()


def _can_handle_signals() -> bool:
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP")


async def _reload_indexes(app: web.Application) -> None:
    """SIGHUP: read the config file again and apply its indexes; other settings need a restart."""
    source = app[keys.CONFIG].source
    try:
        cfg = load(Path(source))
        names = await app[keys.INDEX_STORE].reload(cfg.indexes)
    except WheelwellError as exc:
        log.error("reload of %s failed, nothing changed: %s", source, exc)
        return
    log.info("reloaded %s: %s", source, ", ".join(names) or "no index changed")


class ShutdownClock:
    """When SIGTERM came: cleanup spends what is left of `shutdown_timeout`, not all of it again."""

    __slots__ = ("deadline",)

    def __init__(self) -> None:
        self.deadline: float | None = None

    def start(self, timeout: float) -> float:
        self.deadline = time.monotonic() + timeout
        return self.deadline

    def remaining(self, default: float) -> float:
        """Seconds left before the deadline; `default` when no shutdown has started it."""
        if self.deadline is None:
            return default
        return max(0.0, self.deadline - time.monotonic())


def tls_context(cfg: Config) -> ssl.SSLContext:
    """A server context for `server.tls_cert`/`tls_key`, TLS 1.2 and newer only."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cfg.server.tls_cert, cfg.server.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            [
                f"{cfg.source}: server.tls_cert/server.tls_key: cannot load "
                f"'{cfg.server.tls_cert}' with '{cfg.server.tls_key}': {exc}"
            ]
        ) from exc
    return context


def reload_tls(context: ssl.SSLContext, cfg: Config) -> None:
    """SIGHUP: load the files again into the live context; a broken pair keeps the old one."""
    try:
        # a trial load first: a failure half-way through would leave the live context broken
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            cfg.server.tls_cert, cfg.server.tls_key
        )
        context.load_cert_chain(cfg.server.tls_cert, cfg.server.tls_key)
    except (OSError, ssl.SSLError) as exc:
        log.error(
            "TLS reload of %s failed, the old certificate stays: %s", cfg.server.tls_cert, exc
        )
        return
    log.info("TLS certificate reloaded from %s", cfg.server.tls_cert)


_PAGES = web.AppKey("wheelwell.pages", PageCache)
_RANGES = web.AppKey("wheelwell.ranges", RangeCache)  #: bytes of upstream files read so far
SHUTDOWN = web.AppKey("wheelwell.shutdown", ShutdownClock)
TLS = web.AppKey("wheelwell.tls", ssl.SSLContext)


def create_app(config: Config) -> web.Application:
    middlewares: list[Middleware] = [error_middleware, authz_middleware]
    if config.server.trusted_proxies:  # one middleware less per request when there is none
        middlewares.insert(0, forwarded_middleware(config.server.trusted_proxies))
    app = web.Application(middlewares=middlewares, client_max_size=1024**2)
    logs.quiet_malformed_requests()  # a client's broken request is one line, not a traceback
    app[keys.CONFIG] = config
    app[SHUTDOWN] = ShutdownClock()
    if config.server.tls_cert:
        app[TLS] = tls_context(config)
    app.on_response_prepare.append(add_security_headers)
    app[keys.METRICS] = Metrics()
    app[keys.STARTED_AT] = time.time()
    app.cleanup_ctx.extend([_database, _storage, _services, _upstream, _indexes])
    ui.add_routes(app)
    ops.add_routes(app)
    simple.add_routes(app)
    files.add_routes(app)
    upload.add_routes(app)
    search_web.add_routes(app)
    api.add_routes(app)
    ui.setup(app)
    return app
