"""Operational endpoints: liveness, readiness, status JSON, Prometheus metrics, index config."""

from __future__ import annotations

import os
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy import __version__
from proxy.config import IndexKind
from proxy.model import mask_url
from proxy.web import keys
from proxy.web.common import index_name


async def health(request: web.Request) -> web.Response:
    """Liveness: no I/O, so a slow disk or upstream never gets the process killed."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    data_dir = request.app[keys.BLOBS].root
    writable = os.access(data_dir, os.W_OK)
    status = 200 if writable else 503
    return web.json_response({"ready": writable, "data_dir_writable": writable}, status=status)


def _index_info(request: web.Request, name: str) -> dict[str, object]:
    cfg = request.app[keys.CONFIG]
    index = cfg.index(name)
    if index is None:
        return {}
    info: dict[str, object] = {
        "name": index.name,
        "type": index.kind.value,
        "bases": list(index.bases),
        "volatile": index.volatile,
        "mirror_whitelist": list(index.mirror_whitelist),
    }
    if index.kind is IndexKind.MIRROR:
        info["mirror_url"] = mask_url(cfg.upstream_url(index))
    return info


async def status(request: web.Request) -> web.Response:
    app = request.app
    upstream = app[keys.UPSTREAM]
    return web.json_response(
        {
            "version": __version__,
            "uptime_seconds": round(time.time() - app[keys.STARTED_AT], 1),
            "role": "primary",
            "indexes": [_index_info(request, i.name) for i in app[keys.CONFIG].indexes],
            "downloads_in_flight": app[keys.FETCHER].in_flight(),
            "upstream": {
                "last_error": upstream.last_error,
                "last_error_at": upstream.last_error_at,
            },
        }
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[keys.METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index_config(request: web.Request) -> web.Response:
    name = index_name(request)
    request.app[keys.INDEXES].get(name)
    return web.json_response({"type": "indexconfig", "result": _index_info(request, name)})


async def root(request: web.Request) -> web.Response:
    cfg = request.app[keys.CONFIG]
    return web.json_response(
        {
            "version": __version__,
            "default_index": cfg.server.default_index,
            "indexes": [_index_info(request, i.name) for i in cfg.indexes],
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/+health", health, name="health")
    app.router.add_get("/+ready", ready, name="ready")
    app.router.add_get("/+status", status, name="status")
    app.router.add_get("/+metrics", metrics, name="metrics")
    app.router.add_get("/", root, name="root")
    app.router.add_get("/{user}/{index}", index_config, name="index")
