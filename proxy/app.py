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

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from proxy import __version__, logs
from proxy.cluster.files import PrimaryFiles, ReplicaBlobs
from proxy.cluster.follower import Follower
from proxy.cluster.primary import ReplicaBook
from proxy.cluster.protocol import SERIAL_HEADER
from proxy.cluster.snapshots import Snapshots
from proxy.config import (
    Config,
    IndexConfig,
    IndexKind,
    MirrorSource,
    Role,
    StorageBackend,
    load,
)
from proxy.errors import ConfigError, WheelwellError
from proxy.hosted import search
from proxy.hosted.auth import Auth
from proxy.hosted.descriptions import DescriptionRenderer
from proxy.hosted.hooks import HookWorker
from proxy.hosted.outbox import HookOutbox
from proxy.hosted.private import PrivateIndex
from proxy.hosted.search import SearchIndex
from proxy.hosted.toxresults import ToxResults
from proxy.hosted.uploads import Uploads
from proxy.hosted.wheelhouse import Wheelhouse, publish_rows
from proxy.indexes.registry import Index, IndexRegistry
from proxy.indexes.replayed import follow_replayed
from proxy.indexes.store import IndexStore
from proxy.metrics import Metrics
from proxy.mirror.addresses import AddressPolicy, check_index_urls, scope_of
from proxy.mirror.fetch import Fetcher
from proxy.mirror.index import MirrorIndex
from proxy.mirror.ranges import RangeCache
from proxy.mirror.upstream import UpstreamClient, new_session
from proxy.model import IndexName, mask_url
from proxy.storage.blobs import BlobAliases, BlobStore, LocalBlobStore
from proxy.storage.bucketkeeper import BucketKeeper
from proxy.storage.bucketscrub import BucketScrubber
from proxy.storage.db import Database
from proxy.storage.eviction import CacheManager
from proxy.storage.pagecache import PageCache
from proxy.storage.s3 import MirrorView, S3BlobStore
from proxy.storage.scrubber import Scrubber
from proxy.web import (
    api,
    devpi,
    files,
    keys,
    ops,
    push,
    replication,
    simple,
    toxresults,
    ui,
    upload,
)
from proxy.web import hooks as hooks_web
from proxy.web import search as search_web
from proxy.web.authz import authz_middleware
from proxy.web.forwarded import forwarded_middleware
from proxy.web.headers import add_security_headers
from proxy.web.middleware import error_middleware

log = logging.getLogger(__name__)


async def _database(app: web.Application) -> AsyncIterator[None]:
    """The database first and closed last: every other service may read or write it."""
    cfg = app[keys.CONFIG]
    db = Database(cfg.storage.data_dir / "wheelwell.sqlite3")
    if cfg.replication.role is Role.REPLICA:
        db.replica_of = mask_url(cfg.replication.primary_url)
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
    s3 = None
    if app[keys.CONFIG].storage.backend is StorageBackend.S3:
        s3 = S3BlobStore(app[keys.CONFIG].storage.s3, blobs, app[keys.METRICS])
        await s3.start()
        log.info("blobs in object store %s, cached in %s", s3.where, blobs.blobs)
    app[keys.STORE] = s3 if s3 is not None else blobs
    app[_MIRROR_STORE] = MirrorView(s3) if s3 is not None else blobs
    pages = PageCache(data_dir / "pages", max_negative=app[keys.CONFIG].limits.negative_pages)
    await pages.start()
    app[_PAGES] = pages
    app[_RANGES] = RangeCache()
    yield
    await pages.close()
    if s3 is not None:
        await s3.close()
    blobs.close()


async def _upstream(app: web.Application) -> AsyncIterator[None]:
    cfg = app[keys.CONFIG]
    agent = f"wheelwell/{__version__}"
    session = new_session(AddressPolicy.for_mirrors(cfg.upstream, root=True), agent)
    user_session = new_session(AddressPolicy.for_mirrors(cfg.upstream, root=False), agent)
    app[keys.UPSTREAM] = UpstreamClient(
        session, cfg.upstream, app[keys.METRICS], user_session=user_session
    )
    app[keys.FETCHER] = Fetcher(app[keys.UPSTREAM], app[_MIRROR_STORE], app[keys.METRICS])
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
    if cfg.replication.role is not Role.REPLICA:  # a replica never fires hooks
        db.add_outbox(HookOutbox(cfg.server.public_url).prepare)
    app[keys.AUTH] = Auth(
        db, cfg.auth, app[keys.METRICS], password_file=cfg.storage.data_dir / "root-password"
    )
    if cfg.replication.role is not Role.REPLICA:  # a replica's users come from its primary
        await app[keys.AUTH].bootstrap()
    else:
        db.add_reset_listener(app[keys.AUTH].forget_verified)
    app[keys.UPLOADS] = Uploads(
        db, app[keys.STORE], app[keys.METRICS], metadata_limit=cfg.limits.max_metadata_size
    )
    app[keys.TOXRESULTS] = ToxResults(db)
    in_bucket = cfg.storage.backend is StorageBackend.S3  # the disk holds copies only
    cache = CacheManager(
        app[keys.BLOBS],
        db.path,
        app[keys.METRICS],
        cfg.storage.s3.cache_size if in_bucket else cfg.storage.max_size,
        cfg.storage.keep_free,
        protect_hosted=not in_bucket,
    )
    app[keys.METRICS].watch_storage(cfg.storage.data_dir, cfg.storage.max_size)
    app[keys.BLOBS].on_commit = cache.committed
    cache.update_gauges()
    app[keys.CACHE] = cache
    keeper = scrub_bucket = None
    store = app[keys.STORE]
    if isinstance(store, S3BlobStore) and cfg.replication.role is not Role.REPLICA:
        # the bucket is kept by its primary (or a standalone server), never by replicas
        keeper = BucketKeeper(
            store,
            db.path,
            app[keys.METRICS],
            cfg.storage.max_size,
            stale_uploads=cfg.storage.s3.stale_uploads,
        )
        keeper.start()
        app[keys.BUCKET] = keeper
        if cfg.storage.scrub and cfg.storage.scrub_rate > 0:
            scrub_bucket = BucketScrubber(
                store,
                db.path,
                app[keys.METRICS],
                rate=cfg.storage.scrub_rate,
                interval=cfg.storage.scrub_interval,
                state_path=cfg.storage.data_dir / "scrub-s3.json",
            )
            scrub_bucket.start()
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
    if scrub_bucket is not None:
        await scrub_bucket.close()
    if scrubber is not None:
        await scrubber.close()
    if keeper is not None:
        await keeper.close()
    await app[keys.SEARCH].close()
    await cache.close()
    await app[keys.AUTH].close()


def _index_builder(app: web.Application) -> Callable[[IndexConfig], Index]:
    cfg = app[keys.CONFIG]

    def build(index_cfg: IndexConfig) -> Index:
        name = IndexName(index_cfg.name)
        replica = cfg.replication.role is Role.REPLICA
        if index_cfg.kind is IndexKind.PRIVATE:
            return PrivateIndex(
                name,
                index_cfg,
                app[keys.DB],
                app[_REPLICA_BLOBS] if replica else app[keys.STORE],
                max_pages=cfg.limits.private_pages,
                local_wheelhouse=not replica,
            )
        mirror = MirrorIndex(
            name,
            _mirror_upstream(cfg, index_cfg),
            client=app[keys.UPSTREAM],
            pages=app[_PAGES],
            blobs=app[_MIRROR_STORE],
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


def _mirror_upstream(cfg: Config, index: IndexConfig) -> str:
    """Where a mirror index fetches: its upstream, or on a replica the primary's same index."""
    rep = cfg.replication
    if rep.role is Role.REPLICA and rep.mirror_from is MirrorSource.PRIMARY:
        return f"{rep.primary_url.rstrip('/')}/{index.name}/+simple/"
    return cfg.upstream_url(index)


async def _replication(app: web.Application) -> AsyncIterator[None]:
    """A primary's book of replicas; a replica's follower and its copies of private files."""
    cfg = app[keys.CONFIG]
    role = cfg.replication.role
    rep = cfg.replication
    if role is Role.PRIMARY:
        app[keys.REPLICAS] = ReplicaBook(app[keys.DB], app[keys.METRICS])
        snapshots = Snapshots(
            app[keys.DB],
            cfg.storage.data_dir / "snapshots",
            keep=rep.snapshots_keep,
            interval=rep.snapshot_interval,
            compact=rep.compact,
        )
        await snapshots.start()
        app[keys.SNAPSHOTS] = snapshots
        yield
        await snapshots.close()
        return
    if role is not Role.REPLICA:
        yield
        return
    session = aiohttp.ClientSession(
        headers={"User-Agent": f"wheelwell/{__version__} (replica)"}, trust_env=False
    )
    files = PrimaryFiles(
        app[keys.BLOBS],
        app[keys.DB],
        session,
        cfg.replication,
        app[keys.METRICS],
        store=app[keys.STORE],  # with s3: the primary's bucket first, its endpoint last
    )
    app[keys.REPLICA_FILES] = files
    app[_REPLICA_BLOBS] = ReplicaBlobs(app[keys.STORE], files)
    follower = Follower(app[keys.DB], session, cfg.replication, app[keys.METRICS])
    app[keys.FOLLOWER] = follower
    await files.start(after=follower.caught_up)  # a catch-up's replay does not share the disk
    yield
    await app[keys.FOLLOWER].close()
    await files.close()
    await session.close()


async def _indexes(app: web.Application) -> AsyncIterator[None]:
    cfg = app[keys.CONFIG]
    registry = IndexRegistry((), _index_builder(app), lists=cfg.storage.data_dir / "lists")
    store = IndexStore(app[keys.DB], registry, functools.partial(check_index_urls, cfg.upstream))
    replica = cfg.replication.role is Role.REPLICA
    await store.load(() if replica else cfg.indexes)  # a replica's indexes are its primary's
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
    if replica:
        for index in registry.privates():
            await publish_rows(index, app[keys.DB])
        follow_replayed(registry, app[keys.DB])
        app[keys.FOLLOWER].start()
    for index in registry.privates():
        if index.cfg.wheelhouse and not replica:
            wheelhouse = Wheelhouse(
                index,
                app[keys.DB],
                app[keys.STORE],
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
        if cfg.source == "<defaults>" or replica:  # a replica's indexes are its primary's
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


async def _hooks(app: web.Application) -> AsyncIterator[None]:
    """The hook worker of a primary (or standalone) server, with the mirrors' address rules."""
    cfg = app[keys.CONFIG]
    if cfg.replication.role is Role.REPLICA:
        yield
        return
    agent = f"wheelwell/{__version__} (hooks)"
    sessions = {
        scope: new_session(AddressPolicy.for_mirrors(cfg.upstream, root=scope == "root"), agent)
        for scope in ("root", "user")
    }
    registry = app[keys.INDEXES]
    worker = HookWorker(
        app[keys.DB],
        lambda index: registry.configs.get(index),  # as configured at each delivery
        lambda index: sessions[scope_of(index)],
        cfg.hooks,
        cfg.server.public_url or _listening_url(cfg),
        app[keys.METRICS],
    )
    app[keys.DB].add_listener(worker.wake)
    worker.start()
    yield
    await worker.close()
    for session in sessions.values():
        await session.close()


def _listening_url(cfg: Config) -> str:
    """This server's own address, for Jenkins when server.public_url is not set."""
    scheme = "https" if cfg.server.tls_cert else "http"
    host = cfg.server.host if cfg.server.host not in ("0.0.0.0", "::", "") else "localhost"  # noqa: S104
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{cfg.server.port}"


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

    __slots__ = ("deadline", "stopping")

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.stopping = asyncio.Event()  #: endless responses (the changelog stream) end on it

    def start(self, timeout: float) -> float:
        self.deadline = time.monotonic() + timeout
        self.stopping.set()
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


async def _serial_header(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer says which serial the state it came from is at (read-your-writes, devpi)."""
    if keys.DB in request.app:
        response.headers[SERIAL_HEADER] = str(request.app[keys.DB].serial)


_PAGES = web.AppKey("wheelwell.pages", PageCache)
_REPLICA_BLOBS = web.AppKey("wheelwell.replica_blobs", ReplicaBlobs)
#: the store as mirrors use it: with s3, a bucket that is down is a cache miss, not an error
_MIRROR_STORE: web.AppKey[BlobStore] = web.AppKey("wheelwell.mirror_store")
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
    app[keys.STOPPING] = app[SHUTDOWN].stopping
    if config.server.tls_cert:
        app[TLS] = tls_context(config)
    app.on_response_prepare.append(add_security_headers)
    app.on_response_prepare.append(_serial_header)
    app.on_response_prepare.append(devpi.add_headers)
    app[keys.METRICS] = Metrics()
    app[keys.STARTED_AT] = time.time()
    app.cleanup_ctx.extend(
        [_database, _storage, _services, _upstream, _replication, _indexes, _hooks]
    )
    ui.add_routes(app)
    ops.add_routes(app)
    simple.add_routes(app)
    files.add_routes(app)
    upload.add_routes(app)
    push.add_routes(app)
    search_web.add_routes(app)
    devpi.add_routes(app)  # before api's: `/{user}/+api` is not the index '+api'
    hooks_web.add_routes(app)  # before api's: `+hooks` is not a project
    api.add_routes(app)
    toxresults.add_routes(app)  # after api's: `+explain/{project}` is not a release
    replication.add_routes(app)
    ui.setup(app)
    return app
