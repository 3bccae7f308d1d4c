"""Operational endpoints: liveness, readiness, status JSON, Prometheus metrics, index config."""

from __future__ import annotations

import os
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy import __version__
from proxy.indexstore import to_api
from proxy.web import keys


async def health(request: web.Request) -> web.Response:
    """Liveness: no I/O, so a slow disk or upstream never gets the process killed."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    data_dir = request.app[keys.BLOBS].root
    writable = os.access(data_dir, os.W_OK)
    status = 200 if writable else 503
    return web.json_response({"ready": writable, "data_dir_writable": writable}, status=status)


def _indexes(request: web.Request) -> list[dict[str, object]]:
    default = request.app[keys.CONFIG].upstream.url
    return [to_api(c, default) for c in request.app[keys.INDEXES].configs.values()]


async def status(request: web.Request) -> web.Response:
    app = request.app
    upstream = app[keys.UPSTREAM]
    return web.json_response(
        {
            "version": __version__,
            "uptime_seconds": round(time.time() - app[keys.STARTED_AT], 1),
            "role": "primary",
            "serial": app[keys.DB].serial,
            "indexes": _indexes(request),
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


async def root(request: web.Request) -> web.Response:
    cfg = request.app[keys.CONFIG]
    return web.json_response(
        {
            "version": __version__,
            "default_index": cfg.server.default_index,
            "indexes": _indexes(request),
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/+health", health, name="health")
    app.router.add_get("/+ready", ready, name="ready")
    app.router.add_get("/+status", status, name="status")
    app.router.add_get("/+metrics", metrics, name="metrics")
    app.router.add_get("/", root, name="root")
