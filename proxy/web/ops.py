"""Operational endpoints: liveness, readiness, status JSON, Prometheus metrics, index config."""

from __future__ import annotations

import os
import shutil
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy import __version__
from proxy.cluster.files import PrimaryFiles
from proxy.cluster.follower import Follower
from proxy.cluster.protocol import health_mark
from proxy.indexes.store import to_api
from proxy.model import mask_url
from proxy.web import authz, devpi, keys, ui


async def health(request: web.Request) -> web.Response:
    """Liveness: no I/O, so a slow disk or upstream never gets the process killed."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Readiness: storage usable with room to spare, and the upstream asked or the cache full."""
    blobs = request.app[keys.BLOBS]
    writable = os.access(blobs.root, os.W_OK)
    upstream = request.app[keys.UPSTREAM].available
    cache_usable = bool(blobs.entries) or bool(request.app[keys.DB].serial)
    min_free = request.app[keys.CONFIG].storage.min_free_space
    free = shutil.disk_usage(blobs.root).free
    space = min_free == 0 or free >= min_free
    follower = request.app.get(keys.FOLLOWER)
    caught_up = follower is None or follower.caught_up.is_set()
    is_ready = writable and space and (upstream or cache_usable) and caught_up
    body: dict[str, object] = {
        "ready": is_ready,
        "data_dir_writable": writable,
        "upstream_available": upstream,
        "cache_usable": cache_usable,
        "free_bytes": free,
        "min_free_bytes": min_free,
    }
    if follower is not None:
        body["replication_caught_up"] = caught_up
    if not is_ready:
        body["reason"] = (
            _not_ready_reason(writable, space, free, min_free)
            if caught_up
            else "first catch-up with the primary not done yet"
        )
    return web.json_response(body, status=200 if is_ready else 503)


def _not_ready_reason(writable: bool, space: bool, free: int, min_free: int) -> str:
    if not writable:
        return "data dir is not writable"
    if not space:
        return f"data dir has {free} bytes free, under storage.min_free_space ({min_free})"
    return "upstream unavailable and nothing cached"


def _indexes(request: web.Request) -> list[dict[str, object]]:
    default = request.app[keys.CONFIG].upstream.url
    return [to_api(c, default) for c in authz.readable_configs(request)]  # only readable ones


async def status(request: web.Request) -> web.Response:
    app = request.app
    upstream = app[keys.UPSTREAM]
    data: dict[str, object] = {
        "version": __version__,
        "uptime_seconds": round(time.time() - app[keys.STARTED_AT], 1),
        "role": app[keys.CONFIG].replication.role.value,
        "serial": app[keys.DB].serial,
        "indexes": _indexes(request),
        "downloads_in_flight": app[keys.FETCHER].in_flight(),
        "upstream": {
            "url": mask_url(app[keys.CONFIG].upstream.url),
            "available": upstream.available,
            "offline_mode": app[keys.CONFIG].upstream.offline,
            "last_error": upstream.last_error,
            "last_error_at": upstream.last_error_at,
            "upstreams": upstream.health.report(),  #: per origin, root's and users' apart
        },
        "cache": {
            "files": len(app[keys.BLOBS].entries),
            "bytes": app[keys.BLOBS].total_bytes,
            "max_size": app[keys.CONFIG].storage.max_size,
            "keep_free": app[keys.CONFIG].storage.keep_free,
        },
    }
    if keys.BUCKET in app:
        data["bucket"] = app[keys.BUCKET].report()
    if keys.REPLICAS in app:
        data["replicas"] = app[keys.REPLICAS].report()
        data["snapshots"] = app[keys.SNAPSHOTS].report()
    if keys.FOLLOWER in app:
        data["primary"] = _primary(app[keys.FOLLOWER], app[keys.REPLICA_FILES])
    if ui.wants_html(request):
        return ui.render_status(request, data)
    return web.json_response(data)


def _primary(follower: Follower, files: PrimaryFiles) -> dict[str, object]:
    """A replica's view of its primary (the URL without credentials)."""
    state = follower.state
    contact = state.last_contact
    silent = None if contact is None else max(0.0, time.time() - contact)
    return {
        "health": health_mark(silent, follower.lag_seconds),
        "url": mask_url(state.url),
        "serial": state.serial,
        "lag_serials": follower.lag_serials,
        "lag_seconds": round(follower.lag_seconds, 1),
        "last_contact": contact,
        "seconds_since_contact": None if contact is None else round(time.time() - contact, 1),
        "streaming": state.streaming,
        "caught_up_once": follower.caught_up.is_set(),
        "files_pending": files.pending,
        "last_error": state.last_error,
        "last_error_at": state.last_error_at,
    }


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[keys.METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def root(request: web.Request) -> web.Response:
    cfg = request.app[keys.CONFIG]
    data: dict[str, object] = {
        "version": __version__,
        "default_index": cfg.server.default_index,
        "indexes": _indexes(request),
    }
    if ui.wants_html(request):
        return await ui.render_home(request, data)
    data["type"] = "list:userconfig"  # devpi's user list, for devpi-client (docs/devpi.md)
    data["result"] = await devpi.user_list(request)
    return web.json_response(data)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/+health", health, name="health")
    app.router.add_get("/+ready", ready, name="ready")
    app.router.add_get("/+status", status, name="status")
    app.router.add_get("/+metrics", metrics, name="metrics")
    app.router.add_get("/", root, name="root")
