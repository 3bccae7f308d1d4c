"""The server side of the command line: `serve`, `config check|show`, `cache stats|prune|verify`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from proxy import __version__, logs
from proxy.app import SHUTDOWN, TLS, create_app
from proxy.cluster import devpi_dump
from proxy.cluster import export as exporting
from proxy.config import (
    Config,
    Role,
    StorageBackend,
    check_s3,
    load,
    parse_size,
    settle_replication,
)
from proxy.errors import ConfigError, StorageError
from proxy.healthcheck import local_url
from proxy.model import mask_url
from proxy.storage import eviction as cache
from proxy.storage import s3
from proxy.storage.blobs import LocalBlobStore
from proxy.storage.bucketscrub import verify_bucket
from proxy.storage.datadir import DataDirError, DataDirLock
from proxy.web.pushmethod import PushAwareRunner

log = logging.getLogger(__name__)
T = TypeVar("T")


def _apply_overrides(cfg: Config, args: argparse.Namespace) -> Config:
    server = cfg.server
    if args.host:
        server = dataclasses.replace(server, host=args.host)
    if args.port is not None:
        server = dataclasses.replace(server, port=args.port)
    cfg = dataclasses.replace(cfg, server=server)
    if args.data_dir:
        cfg = dataclasses.replace(
            cfg, storage=dataclasses.replace(cfg.storage, data_dir=args.data_dir)
        )
    if args.upstream:
        cfg = dataclasses.replace(
            cfg, upstream=dataclasses.replace(cfg.upstream, url=args.upstream)
        )
    replication = cfg.replication
    if args.role:
        replication = dataclasses.replace(replication, role=Role(args.role))
    if args.primary_url:
        replication = dataclasses.replace(replication, primary_url=args.primary_url)
    return settle_replication(dataclasses.replace(cfg, replication=replication))


def _jsonable(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: "***"
            if ("password" in f.name or f.name == "secret") and getattr(value, f.name)
            else _jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
        }
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return mask_url(value)
    return value


#: of shutdown_timeout, kept for cancelling what did not finish and for closing the services
_CANCEL_SHARE = 0.25
_CANCEL_MAX = 2.0
#: past shutdown_timeout plus this, the process exits whatever still runs (a thread, a hang)
WATCHDOG_MARGIN = 3.0


def serve(cfg: Config) -> int:
    logs.setup(cfg.logging)
    os.umask(0o077)  # the database holds password and token hashes: files are the daemon's own
    lock = DataDirLock(cfg.storage.data_dir)
    try:
        lock.acquire()
    except DataDirError as exc:
        log.error("%s", exc)
        return 1
    try:
        return _serve(cfg, lock)
    finally:
        lock.release()


def _serve(cfg: Config, lock: DataDirLock) -> int:
    app = create_app(cfg)
    scheme = "https" if TLS in app else "http"
    log.info(
        "wheelwell %s listening on %s://%s:%d (config %s, data %s, upstream %s)",
        __version__,
        scheme,
        cfg.server.host,
        cfg.server.port,
        cfg.source,
        cfg.storage.data_dir,
        mask_url(cfg.upstream.url),
    )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_run(app, cfg, lock))
    finally:
        _cancel_leftovers(loop)
        loop.close()
    return 0


async def _run(app: web.Application, cfg: Config, lock: DataDirLock) -> None:
    """Serve until SIGTERM/SIGINT, then stop within `server.shutdown_timeout`."""
    runner = PushAwareRunner(  # devpi-client's PUSH method; otherwise aiohttp's AppRunner
        app, handle_signals=False, access_log_class=logs.AccessLogger, shutdown_timeout=0.1
    )
    await runner.setup()
    try:
        site = web.TCPSite(
            runner, cfg.server.host, cfg.server.port, ssl_context=app.get(TLS), shutdown_timeout=0
        )
        await site.start()
        address: tuple[Any, ...] = runner.addresses[0]  # (host, port) or IPv6's 4-tuple
        lock.announce(local_url("https" if TLS in app else "http", address[0], address[1]))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        timeout = cfg.server.shutdown_timeout
        log.info("shutting down: in-flight requests get %.1f s", timeout)
        _start_watchdog(timeout + WATCHDOG_MARGIN)
        deadline = app[SHUTDOWN].start(timeout)
        await _drain(runner, deadline - min(_CANCEL_MAX, timeout * _CANCEL_SHARE))
    finally:
        await runner.cleanup()
    log.info("stopped")


async def _drain(runner: web.AppRunner, graceful_until: float) -> None:
    """Stop listening, let requests finish until `graceful_until`, then cut the rest off.

    aiohttp's own shutdown waits `shutdown_timeout` for handlers and as long again for them to
    notice a cancellation that a handler blocked on a stalled client never notices; closing a
    transport with unsent bytes waits for a reader that may never read. Aborting does not wait.
    """
    for site in list(runner.sites):
        await site.stop()
    server = runner.server
    if server is None:
        return
    server.pre_shutdown()  # idle keep-alive connections close now
    # aiohttp has no event for "the last connection closed": look every 50 ms
    while server.connections and time.monotonic() < graceful_until:
        _close_finished(server)
        await asyncio.sleep(0.05)
    if not server.connections:
        return
    log.warning("shutdown: cutting off %d connections still busy", len(server.connections))
    server.handler_cancellation = True  # from here a lost connection cancels its handler
    for connection in list(server.connections):
        if connection.transport is not None:
            connection.transport.abort()
    await asyncio.sleep(0)  # connection_lost runs: the handlers see their cancellation


def _close_finished(server: web.Server) -> None:
    """Close connections whose handler loop has ended: kept-alive ones that served a request.

    aiohttp's pre_shutdown ends their loop by cancelling its keep-alive wait, which skips the
    loop's own transport close; such a connection would then hold the drain until its end
    (seen with pip's kept-alive connections). close() still sends what is buffered.
    """
    for connection in list(server.connections):
        task = getattr(connection, "_task_handler", None)  # aiohttp has no public "idle"
        if task is not None and task.done() and connection.transport is not None:
            connection.transport.close()


def _start_watchdog(after: float) -> None:
    """The bound of last resort: an executor thread or a stuck cleanup cannot hold the exit."""

    def expire() -> None:
        log.error("shutdown overran %.1f s: exiting with work still running", after)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(after, expire)
    timer.daemon = True
    timer.start()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Tasks still running after the cleanup (handlers cut off) are cancelled and awaited."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=_CANCEL_MAX))
    loop.run_until_complete(loop.shutdown_asyncgens())


def cache_command(cfg: Config, args: argparse.Namespace) -> int:
    """`wheelwell cache stats|prune|verify` on a data dir, with or without the daemon running."""
    data_dir = args.data_dir or cfg.storage.data_dir
    blobs = LocalBlobStore(data_dir)
    if not blobs.blobs.is_dir():
        print(f"wheelwell: no file store under {data_dir}", file=sys.stderr)  # noqa: T201
        return 1
    blobs.scan()
    protected = cache.protected_blobs(data_dir / "wheelwell.sqlite3")
    in_bucket = cfg.storage.backend is StorageBackend.S3
    if args.cache_command == "stats":
        stats: dict[str, object] = dict(
            cache.stats(blobs, protected, cfg.storage.max_size).as_json()
        )
        if in_bucket:
            try:
                stats["bucket"] = asyncio.run(_in_bucket(cfg, blobs, _count))
            except StorageError as exc:
                print(f"wheelwell cache stats: {exc}", file=sys.stderr)  # noqa: T201
                return 1
        print(json.dumps(stats, indent=2))  # noqa: T201
        return 0
    if args.cache_command == "prune":
        limit = parse_size(args.max_size) if args.max_size else cfg.storage.max_size
        if limit <= 0:
            print("wheelwell: no size limit (storage.max_size or --max-size)", file=sys.stderr)  # noqa: T201
            return 1
        removed, freed = cache.prune(blobs, protected, limit)
        print(f"evicted {removed} files ({freed} bytes); {blobs.total_bytes} bytes remain")  # noqa: T201
        return 0
    corrupt = cache.verify(blobs)
    for sha in corrupt:
        print(f"corrupt: {sha} (moved to {blobs.quarantine_dir})")  # noqa: T201
    print(f"verified {len(blobs.entries)} files, {len(corrupt)} corrupt")  # noqa: T201
    if not in_bucket:
        return 1 if corrupt else 0
    try:
        found = asyncio.run(_in_bucket(cfg, blobs, lambda store: verify_bucket(store, protected)))
    except StorageError as exc:
        print(f"wheelwell cache verify: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    for line in found.lines(s3.where(cfg.storage.s3)):
        print(line)  # noqa: T201
    return 1 if corrupt or found.corrupt else 0


async def _in_bucket(
    cfg: Config, blobs: LocalBlobStore, work: Callable[[s3.S3BlobStore], Awaitable[T]]
) -> T:
    """`work` on the configured bucket. The command tells a store it cannot reach itself, in
    one line, so the store's own start-up warning is not printed as well."""
    logging.getLogger(s3.__name__).setLevel(logging.ERROR)
    store = s3.S3BlobStore(cfg.storage.s3, blobs)
    await store.start()
    try:
        return await work(store)
    finally:
        await store.close()


async def _count(store: s3.S3BlobStore) -> dict[str, object]:
    """The bucket's blobs, listed (one request per 1,000 objects; nothing is read)."""
    files = size = 0
    async for item in store.objects():
        files += 1
        size += item.size
    return {"store": store.where, "files": files, "bytes": size}


def export_command(cfg: Config, args: argparse.Namespace) -> int:
    """`wheelwell export DEST` and `import SRC`: one line on failure, a report on success."""
    data_dir = args.data_dir or cfg.storage.data_dir
    try:
        if args.command == "export":
            lines = exporting.export(
                data_dir,
                args.dest,
                include_mirror=args.include_mirror,
                include_wheelhouse=args.include_wheelhouse,
            ).lines("exported", args.dest)
        elif (args.src is None) == (args.from_devpi is None):
            raise exporting.ExportError("give an export to import, or --from-devpi DUMPDIR")
        elif args.from_devpi is not None:
            lines = devpi_dump.import_devpi(args.from_devpi, data_dir).lines(data_dir)
        else:
            lines = exporting.import_(args.src, data_dir).lines("imported into", data_dir)
    except (exporting.ExportError, OSError) as exc:
        print(f"wheelwell {args.command}: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    for line in lines:
        print(line)  # noqa: T201
    return 0


def storage_command(cfg: Config, args: argparse.Namespace) -> int:
    """`wheelwell storage migrate --to s3`: the local blobs into the configured bucket."""
    problems: list[str] = []
    check_s3(
        cfg.storage.s3, lambda key, message: problems.append(f"{cfg.source}: {key}: {message}")
    )
    if problems:
        print("wheelwell: configuration error:\n" + "\n".join(problems), file=sys.stderr)  # noqa: T201
        return 2
    data_dir = args.data_dir or cfg.storage.data_dir
    local = LocalBlobStore(data_dir)
    if not local.blobs.is_dir():
        print(f"wheelwell: no file store under {data_dir}", file=sys.stderr)  # noqa: T201
        return 1

    async def copy() -> s3.Migration:
        store = s3.S3BlobStore(cfg.storage.s3, local)
        await store.start()
        try:
            return await s3.migrate(store)
        finally:
            await store.close()

    try:
        done = asyncio.run(copy())
    except StorageError as exc:
        print(f"wheelwell storage migrate: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    for line in done.lines(s3.where(cfg.storage.s3)):
        print(line)  # noqa: T201
    return 1 if done.corrupt else 0


def run(args: argparse.Namespace) -> int:
    """Run a parsed server command."""
    try:
        cfg = load(args.config)
        if args.command == "serve":
            return serve(_apply_overrides(cfg, args))
        if args.command == "config":
            cfg = settle_replication(cfg)  # a primary without its secret fails the check too
    except ConfigError as exc:
        print(f"wheelwell: configuration error:\n{exc}", file=sys.stderr)  # noqa: T201
        return 2
    if args.command == "cache":
        return cache_command(cfg, args)
    if args.command in ("export", "import"):
        return export_command(cfg, args)
    if args.command == "storage":
        return storage_command(cfg, args)
    if args.config_command == "show":
        print(json.dumps(_jsonable(cfg), indent=2))  # noqa: T201
    else:
        print(f"{cfg.source}: OK")  # noqa: T201
    return 0
