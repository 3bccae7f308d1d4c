"""On a replica, replayed changes reach what the primary's own code paths update by hand.

The primary's index store puts a saved config into the registry, and uploads invalidate the
private index's pages; a replica applies the same changes by `Database.replay`, so a listener
does both, and rebuilds a wheelhouse view from the replicated rows.
"""

from __future__ import annotations

import asyncio
import json

from proxy.hosted.private import PrivateIndex
from proxy.hosted.wheelhouse import publish_rows
from proxy.indexes.registry import IndexRegistry
from proxy.indexes.store import from_record
from proxy.storage.changes import Change, IndexDeleted, IndexSaved, WheelhouseScanned
from proxy.storage.db import Database


def follow_replayed(registry: IndexRegistry, db: Database) -> None:
    """Keep the registry and the private indexes' views in step with replayed changes."""
    reloads: set[asyncio.Task[None]] = set()

    def replayed(serial: int, change: Change) -> None:
        if isinstance(change, IndexSaved):
            registry.put(from_record(change.config))
            return
        if isinstance(change, IndexDeleted):
            if change.name in registry.configs:
                registry.remove(change.name)
            return
        index = registry.indexes.get(change.index or "")
        if not isinstance(index, PrivateIndex):
            return
        index.invalidate()
        if isinstance(change, WheelhouseScanned):
            task = asyncio.create_task(publish_rows(index, db), name="wheelhouse rows")
            reloads.add(task)
            task.add_done_callback(reloads.discard)

    async def reset() -> None:  # the whole state was replaced by a snapshot
        rows = await db.read(lambda c: c.execute("SELECT config FROM indexes").fetchall())
        configs = {cfg.name: cfg for cfg in (from_record(json.loads(r[0])) for r in rows)}
        for name in [n for n in registry.configs if n not in configs]:
            registry.remove(name)
        for cfg in configs.values():
            registry.put(cfg)
        for index in registry.privates():
            index.invalidate()
            await publish_rows(index, db)

    db.add_listener(replayed)
    db.add_reset_listener(reset)
