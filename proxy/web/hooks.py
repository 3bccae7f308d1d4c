"""`GET /{user}/{index}/+hooks`: an index's hooks, their queues and last attempts (secrets masked).

For the index's owner and root (`index-change`): the attempts show receivers' answers, which
are theirs to see. The web UI's index page shows the same to them (`read_hooks`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy.config import IndexConfig, Role
from proxy.hosted.outbox import JENKINS, HookStatus, read_status, webhook_key
from proxy.hosted.permissions import Operation, may
from proxy.indexes.store import show_webhook
from proxy.model import mask_url
from proxy.storage.db import Database
from proxy.web import keys
from proxy.web.common import index_name

SHOWN_ATTEMPTS = 10  #: per hook, newest first


def _status_json(status: HookStatus) -> dict[str, Any]:
    return {
        "pending": status.pending,
        "failed": status.failed,
        "delivered": status.delivered,
        "attempts": [
            {
                "event_id": a.event_id,
                "at": a.at,
                "status": a.status,
                "error": a.error,
                "excerpt": a.excerpt,
            }
            for a in status.attempts
        ],
    }


async def read_hooks(db: Database, cfg: IndexConfig) -> dict[str, Any]:
    """The hooks of an index as configured now, each with its queue's state."""

    async def status_of(key: str) -> dict[str, Any]:
        found = await db.read(lambda c: read_status(c, cfg.name, key, SHOWN_ATTEMPTS))
        return _status_json(found)

    webhooks = [{**show_webhook(h), **await status_of(webhook_key(h.url))} for h in cfg.webhooks]
    jenkins = None
    if cfg.uploadtrigger_jenkins:
        jenkins = {"url": mask_url(cfg.uploadtrigger_jenkins), **await status_of(JENKINS)}
    return {"index": cfg.name, "webhooks": webhooks, "jenkins": jenkins}


async def visible_hooks(request: web.Request, cfg: IndexConfig) -> dict[str, Any] | None:
    """The hooks for the index's web page: to whom `+hooks` shows them, on a primary."""
    if not (cfg.webhooks or cfg.uploadtrigger_jenkins):
        return None
    if request.app[keys.CONFIG].replication.role is Role.REPLICA:
        return None  # the queue is the primary's
    if not may(Operation.INDEX_CHANGE, request.get(keys.IDENTITY), cfg):
        return None
    return await read_hooks(request.app[keys.DB], cfg)


async def get_hooks(request: web.Request) -> web.Response:
    cfg = request.app[keys.INDEXES].config(index_name(request))
    return web.json_response(await read_hooks(request.app[keys.DB], cfg))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/{user}/{index}/+hooks", get_hooks, name="index-hooks")
