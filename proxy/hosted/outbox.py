"""The hook outbox: events queued in the same transaction as the change they describe.

`HookOutbox.prepare` runs on the db thread inside `Database.commit`: a failed change queues
nothing, a committed one has its events, and a crash loses none. Events are per file and per
configured hook (a webhook's `events` filter applies at queue time); the worker
(`proxy/hosted/hooks.py`) delivers them. The queries the worker and the status API use live
here too, beside the tables' one writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.config import HookEvent
from proxy.storage.changes import (
    Change,
    FileDeleted,
    FileUploaded,
    ReleaseDeleted,
    ReleaseYanked,
    WheelhouseScanned,
)

JENKINS = "jenkins"  #: the hook key of an index's uploadtrigger_jenkins


class State:
    """An event's `state` column."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  #: given up after hooks.max_attempts or hooks.max_age
    DROPPED = "dropped"  #: its hook (or index) was removed before it could be delivered


def webhook_key(url: str) -> str:
    """A webhook's key in the queue: its URL, hashed (keys are shown; URLs may hold secrets)."""
    return "webhook:" + hashlib.sha256(url.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What an event says about one file."""

    project: str
    version: str
    filename: str
    sha256: str
    uploader: str | None


def _events_of(conn: sqlite3.Connection, change: Change) -> list[tuple[HookEvent, FileFacts]]:
    """The events a change makes, read before it applies (a delete still finds its files)."""
    match change:
        case FileUploaded():
            facts = FileFacts(
                change.project, change.version, change.filename, change.sha256, change.uploader
            )
            return [(HookEvent.UPLOAD, facts)]
        case ReleaseYanked():
            event = HookEvent.YANK if change.yanked else HookEvent.UNYANK
            return [(event, f) for f in _release(conn, change.idx, change.project, change.version)]
        case ReleaseDeleted():
            files = _release(conn, change.idx, change.project, change.version)
            return [(HookEvent.DELETE, f) for f in files]
        case FileDeleted():
            row = conn.execute(
                "SELECT uploader FROM files WHERE idx = ? AND filename = ?",
                (change.idx, change.filename),
            ).fetchone()
            facts = FileFacts(
                change.project,
                change.version,
                change.filename,
                change.sha256,
                row[0] if row else None,
            )
            return [(HookEvent.DELETE, facts)]
        case WheelhouseScanned():
            found: list[tuple[HookEvent, FileFacts]] = []
            for kind, seen in (
                (HookEvent.WHEELHOUSE_REMOVE, change.removed),
                (HookEvent.WHEELHOUSE_ADD, change.added),
            ):
                for w in seen:
                    f = w.file
                    found.append(
                        (kind, FileFacts(f.project, f.version, f.filename, f.sha256, None))
                    )
            return found
    return []


def _release(conn: sqlite3.Connection, index: str, project: str, version: str) -> list[FileFacts]:
    rows = conn.execute(
        "SELECT project, version, filename, sha256, uploader FROM files "
        "WHERE idx = ? AND project = ? AND version = ? ORDER BY filename",
        (index, project, version),
    ).fetchall()
    return [FileFacts(*row) for row in rows]


def _hooks_of(record: Mapping[str, Any]) -> list[tuple[str, frozenset[str]]]:
    """(key, events) of an index's stored config: its webhooks, then Jenkins (uploads only)."""
    hooks: list[tuple[str, frozenset[str]]] = [
        (webhook_key(str(h["url"])), frozenset(h.get("events", [e.value for e in HookEvent])))
        for h in record.get("webhooks", ())
    ]
    if record.get("uploadtrigger_jenkins"):
        hooks.append((JENKINS, frozenset({HookEvent.UPLOAD.value})))
    return hooks


def is_sdist(filename: str) -> bool:
    """Jenkins is triggered by a release's sdist (its job script tests that), as devpi test."""
    return filename.endswith((".tar.gz", ".zip"))


Writer = Callable[[sqlite3.Connection, int, float], None]


def _nothing(conn: sqlite3.Connection, serial: int, at: float) -> None:
    """No event to queue."""


class HookOutbox:
    """Turns committed changes into queued events; `base_url` makes file URLs absolute."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def prepare(self, conn: sqlite3.Connection, change: Change) -> Writer:
        """The events of `change` for its index's hooks, as a writer for after the log insert."""
        index = change.index
        if index is None:
            return _nothing
        row = conn.execute("SELECT config FROM indexes WHERE name = ?", (index,)).fetchone()
        hooks = _hooks_of(json.loads(row[0])) if row else []
        events = _events_of(conn, change) if hooks else []
        if not events:
            return _nothing

        def write(conn: sqlite3.Connection, serial: int, at: float) -> None:
            rows: list[tuple[object, ...]] = []
            for n, (event, facts) in enumerate(events):
                body = self.render(index, event, facts, f"{serial}.{n}", serial, at)
                rows.extend(
                    (index, key, serial, event.value, body, at, at)
                    for key, wanted in hooks
                    if event.value in wanted and (key != JENKINS or is_sdist(facts.filename))
                )
            conn.executemany(
                "INSERT INTO hook_events (idx, hook, serial, event, body, next_at, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

        return write

    def render(
        self,
        index: str,
        event: HookEvent,
        facts: FileFacts,
        event_id: str,
        serial: int,
        at: float,
    ) -> str:
        """The exact body every attempt sends (and signs): canonical JSON."""
        return json.dumps(
            {
                "id": event_id,
                "event": event.value,
                "index": index,
                "project": facts.project,
                "version": facts.version,
                "filename": facts.filename,
                "sha256": facts.sha256,
                "file_url": f"{self.base_url}/{index}/+f/{facts.sha256}/{facts.filename}",
                "uploader": facts.uploader,
                "serial": serial,
                "time": at,
            },
            sort_keys=True,
            separators=(",", ":"),
        )


# ---- the worker's and the status API's queries ---------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    id: int
    index: str
    hook: str
    event: str
    body: str
    attempts: int
    next_at: float
    created: float


def read_heads(conn: sqlite3.Connection) -> list[QueuedEvent]:
    """Each hook's oldest pending event: only it may be sent (strict order per hook)."""
    rows = conn.execute(
        "SELECT id, idx, hook, event, body, attempts, next_at, created FROM hook_events "
        "WHERE id IN (SELECT MIN(id) FROM hook_events WHERE state = 'pending' GROUP BY idx, hook) "
        "ORDER BY id"
    ).fetchall()
    return [QueuedEvent(*row) for row in rows]


#: attempts kept per hook (older ones are deleted as new ones are recorded)
KEPT_ATTEMPTS = 20
EXCERPT_BYTES = 1024  #: of a receiver's answer, at most this much is kept


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """The connection is in autocommit mode (db.py): several statements, one commit."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def record_attempt(
    conn: sqlite3.Connection,
    event: QueuedEvent,
    at: float,
    status: int | None,
    error: str,
    excerpt: str,
    state: str,
    next_at: float,
) -> None:
    """One attempt and the event's new state, in one transaction."""
    with _transaction(conn):
        conn.execute(
            "UPDATE hook_events SET state = ?, attempts = attempts + 1, next_at = ? WHERE id = ?",
            (state, next_at, event.id),
        )
        conn.execute(
            "INSERT INTO hook_attempts (idx, hook, event_id, at, status, error, excerpt) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event.index, event.hook, event.id, at, status, error, excerpt[:EXCERPT_BYTES]),
        )
        conn.execute(
            "DELETE FROM hook_attempts WHERE idx = ? AND hook = ? AND id NOT IN "
            "(SELECT id FROM hook_attempts WHERE idx = ? AND hook = ? ORDER BY id DESC LIMIT ?)",
            (event.index, event.hook, event.index, event.hook, KEPT_ATTEMPTS),
        )


def drop_events(conn: sqlite3.Connection, index: str, hook: str) -> int:
    """A hook no longer configured: its pending events will never be sent."""
    with _transaction(conn):
        return conn.execute(
            "UPDATE hook_events SET state = 'dropped' "
            "WHERE idx = ? AND hook = ? AND state = 'pending'",
            (index, hook),
        ).rowcount


#: finished events (delivered, failed, dropped) are kept this long, then deleted
KEEP_FINISHED = 7 * 86400.0


def prune_events(conn: sqlite3.Connection, before: float) -> int:
    """Delete finished events made before `before`: the queue does not grow without bound."""
    with _transaction(conn):
        return conn.execute(
            "DELETE FROM hook_events WHERE state != 'pending' AND created < ?", (before,)
        ).rowcount


@dataclass(frozen=True, slots=True)
class Attempt:
    event_id: int
    at: float
    status: int | None
    error: str
    excerpt: str


@dataclass(frozen=True, slots=True)
class HookStatus:
    """What the status API shows of one hook's queue."""

    pending: int
    failed: int
    delivered: int
    attempts: tuple[Attempt, ...]  #: newest first


def read_status(conn: sqlite3.Connection, index: str, hook: str, last: int) -> HookStatus:
    counts = dict(
        conn.execute(
            "SELECT state, COUNT(*) FROM hook_events WHERE idx = ? AND hook = ? GROUP BY state",
            (index, hook),
        ).fetchall()
    )
    rows = conn.execute(
        "SELECT event_id, at, status, error, excerpt FROM hook_attempts "
        "WHERE idx = ? AND hook = ? ORDER BY id DESC LIMIT ?",
        (index, hook, last),
    ).fetchall()
    return HookStatus(
        pending=counts.get(State.PENDING, 0),
        failed=counts.get(State.FAILED, 0),
        delivered=counts.get(State.DELIVERED, 0),
        attempts=tuple(Attempt(*row) for row in rows),
    )
