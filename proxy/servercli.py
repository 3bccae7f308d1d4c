"""The server side of the command line: `serve`, `config check|show`, `cache stats|prune|verify`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from aiohttp import web

from proxy import __version__, logs
from proxy.app import create_app
from proxy.config import Config, load, parse_size
from proxy.errors import ConfigError
from proxy.model import mask_url
from proxy.storage import eviction as cache
from proxy.storage.blobs import LocalBlobStore

log = logging.getLogger(__name__)


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
    return cfg


def _jsonable(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: "***"
            if "password" in f.name and getattr(value, f.name)
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


def serve(cfg: Config) -> int:
    logs.setup(cfg.logging)
    log.info(
        "wheelwell %s listening on http://%s:%d (config %s, data %s, upstream %s)",
        __version__,
        cfg.server.host,
        cfg.server.port,
        cfg.source,
        cfg.storage.data_dir,
        mask_url(cfg.upstream.url),
    )
    web.run_app(
        create_app(cfg),
        host=cfg.server.host,
        port=cfg.server.port,
        shutdown_timeout=cfg.server.shutdown_timeout,
        access_log_class=logs.AccessLogger,
        print=None,
    )
    return 0


def cache_command(cfg: Config, args: argparse.Namespace) -> int:
    """`wheelwell cache stats|prune|verify` on a data dir, with or without the daemon running."""
    data_dir = args.data_dir or cfg.storage.data_dir
    blobs = LocalBlobStore(data_dir)
    if not blobs.blobs.is_dir():
        print(f"wheelwell: no file store under {data_dir}", file=sys.stderr)  # noqa: T201
        return 1
    blobs.scan()
    protected = cache.protected_blobs(data_dir / "wheelwell.sqlite3")
    if args.cache_command == "stats":
        stats = cache.stats(blobs, protected, cfg.storage.max_size)
        print(json.dumps(stats.as_json(), indent=2))  # noqa: T201
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
    return 1 if corrupt else 0


def run(args: argparse.Namespace) -> int:
    """Run a parsed server command."""
    try:
        cfg = load(args.config)
        if args.command == "serve":
            return serve(_apply_overrides(cfg, args))
    except ConfigError as exc:
        print(f"wheelwell: configuration error:\n{exc}", file=sys.stderr)  # noqa: T201
        return 2
    if args.command == "cache":
        return cache_command(cfg, args)
    if args.config_command == "show":
        print(json.dumps(_jsonable(cfg), indent=2))  # noqa: T201
    else:
        print(f"{cfg.source}: OK")  # noqa: T201
    return 0
