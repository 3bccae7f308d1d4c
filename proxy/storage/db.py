"""SQLite (WAL) for hosted state: every change and its changelog entry commit in one transaction.

All access runs on one dedicated thread, so the event loop never blocks and SQLite never sees two
writers. Reads are functions of the connection (`read`); hosted state changes only through
`commit(change)`, which applies a `changes.Change` and appends its serialized form to the
serial-numbered changelog in the same transaction, then tells listeners (replicas, hooks).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from proxy.errors import ReplicaWriteError, StorageError, StorageFullError
from proxy.storage import identity
from proxy.storage.changes import (
    FORMAT,
    Change,
    apply,
    dump_hosted,
    parse_change,
    render_change,
    render_public,
)

T = TypeVar("T")

#: primary result codes that mean the disk could not take the write (SQLITE_FULL, SQLITE_IOERR)
_FULL_CODES = frozenset({13, 10})


def _translate_sqlite_error(exc: sqlite3.Error, path: Path) -> StorageError:
    """A full or failing disk is StorageFullError (507); the message names no server path."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _FULL_CODES:
        return StorageFullError(f"database {path.name}")
    return StorageError(f"database {path.name}: {exc}")


def _rollback(conn: sqlite3.Connection) -> None:
    """Undo a failed change; SQLite may already have rolled it back itself (SQLITE_FULL)."""
    if conn.in_transaction:
        # "cannot rollback - no transaction is active": nothing is left to undo
        with contextlib.suppress(sqlite3.OperationalError):
            conn.execute("ROLLBACK")


SCHEMA = """
CREATE TABLE IF NOT EXISTS changelog (
    serial INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL, kind TEXT NOT NULL, idx TEXT, data TEXT NOT NULL,
    format INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, pwhash TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, user TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, idx TEXT,
    expires REAL, description TEXT NOT NULL DEFAULT '', created REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0, scopes TEXT NOT NULL DEFAULT '["upload"]');
CREATE TABLE IF NOT EXISTS indexes (name TEXT PRIMARY KEY, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    idx TEXT NOT NULL, project TEXT NOT NULL, version TEXT NOT NULL, filename TEXT NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, requires_python TEXT, metadata_sha256 TEXT,
    yanked INTEGER NOT NULL DEFAULT 0, yanked_reason TEXT, uploaded REAL NOT NULL,
    uploader TEXT, summary TEXT NOT NULL DEFAULT '', description TEXT NOT NULL DEFAULT '',
    description_type TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (idx, filename));
CREATE INDEX IF NOT EXISTS files_by_project ON files (idx, project);
CREATE TABLE IF NOT EXISTS wheelhouse (
    idx TEXT NOT NULL, path TEXT NOT NULL, filename TEXT NOT NULL, project TEXT NOT NULL,
    version TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL, requires_python TEXT, metadata_sha256 TEXT,
    summary TEXT NOT NULL DEFAULT '', description TEXT NOT NULL DEFAULT '',
    description_type TEXT NOT NULL DEFAULT '', PRIMARY KEY (idx, path));
CREATE TABLE IF NOT EXISTS toxresults (
    idx TEXT NOT NULL, filename TEXT NOT NULL, n INTEGER NOT NULL, sha256 TEXT NOT NULL,
    project TEXT NOT NULL, version TEXT NOT NULL, data TEXT NOT NULL, summary TEXT NOT NULL,
    posted REAL NOT NULL, poster TEXT, PRIMARY KEY (idx, filename, n));
CREATE INDEX IF NOT EXISTS toxresults_by_project ON toxresults (idx, project);
CREATE TABLE IF NOT EXISTS blob_aliases (alias TEXT PRIMARY KEY, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: this server's own hook queue (proxy/hosted/outbox.py): written in a change's transaction
#: on a primary only, never in the changelog, replicated or exported
HOOK_SCHEMA = """
CREATE TABLE IF NOT EXISTS hook_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, idx TEXT NOT NULL, hook TEXT NOT NULL,
    serial INTEGER NOT NULL, event TEXT NOT NULL, body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS hook_events_queue ON hook_events (state, idx, hook, id);
CREATE TABLE IF NOT EXISTS hook_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, idx TEXT NOT NULL, hook TEXT NOT NULL,
    event_id INTEGER NOT NULL, at REAL NOT NULL, status INTEGER, error TEXT NOT NULL,
    excerpt TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS hook_attempts_by_hook ON hook_attempts (idx, hook, id);
"""
#: PRAGMA user_version: 1 is milestone 1's layout; 2 adds changelog.format and blob_aliases;
#: 3 adds tokens.scopes (JSON list; tokens made before it are upload tokens); 4 adds toxresults
SCHEMA_VERSION = 4


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a data dir made by an older version up to SCHEMA_VERSION (idempotent)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(changelog)")}
    if "format" not in columns:
        conn.execute("ALTER TABLE changelog ADD COLUMN format INTEGER NOT NULL DEFAULT 0")
    if "scopes" not in {row[1] for row in conn.execute("PRAGMA table_info(tokens)")}:
        conn.execute("""ALTER TABLE tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '["upload"]'""")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def latest_serial(conn: sqlite3.Connection) -> int:
    """The newest serial, also once compaction removed the entries (AUTOINCREMENT remembers)."""
    row = conn.execute("SELECT COALESCE(MAX(serial), 0) FROM changelog").fetchone()
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changelog'").fetchone()
    return max(int(row[0]), int(seq[0]) if seq else 0)


@dataclass(frozen=True, slots=True)
class ChangelogEntry:
    """One stored change with its serial; `format` 0 marks entries older than the change model."""

    serial: int
    at: float
    kind: str
    index: str | None
    body: str  #: the serialized change (`changes.render_change`)
    format: int

    def change(self) -> Change:
        return parse_change(self.kind, self.body, self.format)

    def public_data(self) -> dict[str, Any]:
        """The change as the API shows it: no password or token hashes."""
        if self.format == 0:  # a milestone-1 summary, free-form
            data: dict[str, Any] = json.loads(self.body)
            data.pop("pwhash", None)
            return data
        return render_public(self.change())


#: runs inside a change's transaction after `apply`: keeps derived tables (search) in step
Deriver = Callable[[sqlite3.Connection, Change], None]
#: told of every committed change, on the event loop, after the commit
Listener = Callable[[int, Change], None]
#: a primary's step inside `commit`'s transaction (never `replay`'s): called before `apply`, so
#: it sees what the change removes; the writer it returns gets the new serial and time after the
#: changelog insert (hooks queue their events so)
Outbox = Callable[[sqlite3.Connection, Change], Callable[[sqlite3.Connection, int, float], None]]


class Database:
    """The one SQLite connection, owned by one thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="db")
        self._conn: sqlite3.Connection | None = None
        self.serial = 0  #: the latest changelog serial
        self._derivers: list[Deriver] = []
        self._listeners: list[Listener] = []
        self._outboxes: list[Outbox] = []
        #: set on a read replica (the primary's URL): only `replay` may change hosted state
        self.replica_of: str | None = None
        self._changed: asyncio.Event | None = None  #: set, then replaced, at every commit
        self._resets: list[Callable[[], Awaitable[None]]] = []
        #: which history this database holds (storage/identity.py); None on a replica not yet
        #: following a primary
        self.identity: identity.Identity | None = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
        conn.executescript(HOOK_SCHEMA)
        migrate(conn)
        self.serial = latest_serial(conn)
        self.identity = identity.settle(conn, self.serial, replica=self.replica_of is not None)
        self._conn = conn

    async def start(self) -> None:
        await self._submit(self._open)

    async def close(self) -> None:
        if self._conn is not None:
            await self._submit(self._conn.close)
            self._conn = None
        self._thread.shutdown(wait=True)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def _submit(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        except sqlite3.Error as exc:
            raise _translate_sqlite_error(exc, self.path) from exc

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a query function on the db thread."""
        return await self._submit(fn, self.conn)

    async def write_derived(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Write derived data (search rows, blob aliases) any replica can rebuild: no changelog."""
        return await self._submit(fn, self.conn)

    def add_deriver(self, deriver: Deriver) -> None:
        self._derivers.append(deriver)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_outbox(self, outbox: Outbox) -> None:
        self._outboxes.append(outbox)

    def _commit(self, change: Change, at: float, serial: int | None) -> int:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            # a replayed entry (serial given: replicas, import) was announced where it was made
            writers = (
                [prepare(conn, change) for prepare in self._outboxes] if serial is None else []
            )
            apply(conn, change)
            for derive in self._derivers:
                derive(conn, change)
            cursor = conn.execute(
                "INSERT INTO changelog (serial, at, kind, idx, data, format) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (serial, at, change.kind.value, change.index, render_change(change), FORMAT),
            )
            for write in writers:
                write(conn, int(cursor.lastrowid or 0), at)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return int(cursor.lastrowid or 0)

    async def commit(self, change: Change, *, at: float | None = None) -> int:
        """Apply a change and append it to the changelog in one transaction; returns its serial."""
        if self.replica_of is not None:
            raise ReplicaWriteError(self.replica_of, "its state changes only by replication")
        return await self._store(change, time.time() if at is None else at, None)

    async def replay(self, entry: ChangelogEntry) -> int:
        """Apply another database's entry under its own serial and time (replicas, import)."""
        if entry.serial <= self.serial:
            raise StorageError(f"serial {entry.serial} is not after {self.serial}")
        return await self._store(entry.change(), entry.at, entry.serial)

    async def _store(self, change: Change, at: float, serial: int | None) -> int:
        serial = await self._submit(self._commit, change, at, serial)
        self.serial = serial
        for listener in self._listeners:
            listener(serial, change)
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        return serial

    async def wait_beyond(self, serial: int, timeout: float) -> bool:  # noqa: ASYNC109 - False, not an exception, on timeout
        """Wait until the latest serial is past `serial`; False after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.serial <= serial:
            if self._changed is None:
                self._changed = asyncio.Event()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

    async def changes_since(self, since: int, limit: int = 1000) -> list[ChangelogEntry]:
        def query(conn: sqlite3.Connection) -> list[ChangelogEntry]:
            rows = conn.execute(
                "SELECT serial, at, kind, idx, data, format FROM changelog WHERE serial > ? "
                "ORDER BY serial LIMIT ?",
                (since, limit),
            ).fetchall()
            return [ChangelogEntry(*row) for row in rows]

        return await self.read(query)

    async def oldest_serial(self) -> int | None:
        """The oldest changelog entry still kept (None: none is)."""
        row = await self.read(lambda c: c.execute("SELECT MIN(serial) FROM changelog").fetchone())
        return None if row[0] is None else int(row[0])

    async def snapshot_to(self, path: Path) -> int:
        """A consistent copy of the whole database at one serial (SQLite's online backup)."""

        def backup(conn: sqlite3.Connection) -> int:
            serial = latest_serial(conn)  # the db thread: no commit can come between
            target = sqlite3.connect(path)
            try:
                conn.backup(target)
                with target:  # the hook queue is this server's own, never a replica's
                    target.execute("DELETE FROM hook_events")
                    target.execute("DELETE FROM hook_attempts")
            finally:
                target.close()
            return serial

        return await self._submit(backup, self.conn)

    async def compact(self, upto: int) -> int:
        """Drop changelog entries up to `upto` (a snapshot holds their result); returns how many."""

        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM changelog WHERE serial <= ?", (upto,)).rowcount

        return await self._submit(delete, self.conn)

    async def restore(self, snapshot: Path) -> int:
        """Replace this database by a snapshot file (a replica far behind); returns its serial.

        The snapshot is moved in place of the database file while the connection is closed,
        then reopened; reset listeners rebuild what they derived from the old state.
        """

        def swap() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            snapshot.replace(self.path)
            self._open()

        await self._submit(swap)
        for reset in self._resets:
            await reset()
        return self.serial

    def add_reset_listener(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Told after `restore` replaced the whole state."""
        self._resets.append(listener)

    async def adopt(self, other: identity.Identity) -> None:
        """A replica takes its primary's identity (it holds the primary's history)."""
        await self._submit(identity.write, self.conn, other)
        self.identity = other

    async def dump_hosted(self) -> dict[str, list[dict[str, Any]]]:
        """Every hosted row, canonically ordered (replay and export checks compare these)."""
        return await self.read(dump_hosted)
