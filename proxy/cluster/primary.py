"""The primary's side: which replicas follow it, how far each has read, and the stream itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from proxy.cluster.protocol import Heartbeat, encode_entry, encode_heartbeat, health_mark
from proxy.metrics import Metrics
from proxy.storage.db import Database

#: entries read from the database per query while a replica catches up
BATCH = 500
#: replicas remembered after they went silent (their rows stay in /+status, marked silent)
MAX_REPLICAS = 64


@dataclass(slots=True)
class ReplicaState:
    """One replica as the primary sees it: `serial` is the last entry sent to it."""

    id: str
    url: str
    address: str
    serial: int
    connected_at: float
    last_seen: float
    streaming: bool = True


class ReplicaBook:
    """The replicas following this primary, for /+status and the metrics."""

    def __init__(self, db: Database, metrics: Metrics) -> None:
        self.db = db
        self.metrics = metrics
        self._replicas: dict[str, ReplicaState] = {}
        metrics.replicas_connected.set_function(
            lambda: sum(1 for r in self._replicas.values() if r.streaming)
        )

    def connected(self, replica_id: str, url: str, address: str, since: int) -> ReplicaState:
        now = time.time()
        state = self._replicas.get(replica_id)
        if state is None:
            while len(self._replicas) >= MAX_REPLICAS:
                oldest = min(self._replicas.values(), key=lambda r: r.last_seen)
                self._forget(oldest.id)
            state = ReplicaState(replica_id, url, address, since, now, now)
            self._replicas[replica_id] = state
            self.metrics.replica_lag.labels(replica_id).set_function(
                lambda: max(0, self.db.serial - state.serial)
            )
        state.url, state.address, state.serial = url, address, since
        state.connected_at = state.last_seen = now
        state.streaming = True
        return state

    def _forget(self, replica_id: str) -> None:
        del self._replicas[replica_id]
        self.metrics.replica_lag.remove(replica_id)

    def report(self) -> list[dict[str, object]]:
        now = time.time()
        return [
            {
                "id": r.id,
                "url": r.url,
                "address": r.address,
                "serial": r.serial,
                "lag_serials": max(0, self.db.serial - r.serial),
                "last_seen": r.last_seen,
                "seconds_since_seen": round(now - r.last_seen, 1),
                "streaming": r.streaming,
                # a streaming replica hears from the primary (heartbeats): it counts as in contact
                "health": health_mark(0.0 if r.streaming else now - r.last_seen, 0.0),
            }
            for r in sorted(self._replicas.values(), key=lambda r: r.id)
        ]


async def stream_changes(
    db: Database, state: ReplicaState, heartbeat: float, stopping: asyncio.Event
) -> AsyncGenerator[bytes, None]:
    """Every entry after `state.serial`, then new ones as they commit; heartbeats when idle."""
    try:
        while not stopping.is_set():
            entries = await db.changes_since(state.serial, BATCH)
            for entry in entries:
                yield encode_entry(entry)
                state.serial = entry.serial
            state.last_seen = time.time()
            if entries:
                continue
            waiter = asyncio.ensure_future(db.wait_beyond(state.serial, heartbeat))
            stop = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stop.cancel()
            if db.serial <= state.serial and not stopping.is_set():
                yield encode_heartbeat(Heartbeat(db.serial, time.time()))
    finally:
        state.streaming = False
