"""SQLite (WAL) for hosted state: every change and its changelog entry commit in one transaction.

All access runs on one dedicated thread, so the event loop never blocks and SQLite never sees two
writers. Services pass functions that receive the connection (`read`), or that apply a change
inside `change`, which appends the serial-numbered changelog entry replicas and export follow.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from proxy.errors import StorageError

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS changelog (
    serial INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL, kind TEXT NOT NULL, idx TEXT, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, pwhash TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, user TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, idx TEXT,
    expires REAL, description TEXT NOT NULL DEFAULT '', created REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0);
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
"""


@dataclass(frozen=True, slots=True)
class Change:
    """One changelog entry."""

    serial: int
    at: float
    kind: str
    index: str | None
    data: dict[str, Any]


class Database:
    """The one SQLite connection, owned by one thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="db")
        self._conn: sqlite3.Connection | None = None
        self.serial = 0  #: the latest changelog serial

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
        row = conn.execute("SELECT COALESCE(MAX(serial), 0) FROM changelog").fetchone()
        self.serial = int(row[0])
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
            raise StorageError(f"database {self.path}: {exc}") from exc

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a query function on the db thread."""
        return await self._submit(fn, self.conn)

    async def write_derived(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Write derived data (search index rows) that any replica can rebuild: no changelog."""
        return await self._submit(fn, self.conn)

    def _change(
        self,
        kind: str,
        index: str | None,
        data: dict[str, Any],
        apply: Callable[[sqlite3.Connection], T],
    ) -> tuple[T, int]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = apply(conn)
            cursor = conn.execute(
                "INSERT INTO changelog (at, kind, idx, data) VALUES (?, ?, ?, ?)",
                (time.time(), kind, index, json.dumps(data, sort_keys=True)),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        serial = int(cursor.lastrowid or 0)
        self.serial = serial
        return result, serial

    async def change(
        self,
        kind: str,
        index: str | None,
        data: dict[str, Any],
        apply: Callable[[sqlite3.Connection], T],
    ) -> tuple[T, int]:
        """Apply a state change and append its changelog entry atomically; returns the serial."""
        return await self._submit(self._change, kind, index, data, apply)

    async def changes_since(self, since: int, limit: int = 1000) -> list[Change]:
        def query(conn: sqlite3.Connection) -> list[Change]:
            rows = conn.execute(
                "SELECT serial, at, kind, idx, data FROM changelog WHERE serial > ? "
                "ORDER BY serial LIMIT ?",
                (since, limit),
            ).fetchall()
            return [Change(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

        return await self.read(query)
