"""A database write the disk cannot take is StorageFullError (507), and the db stays usable."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.errors import StorageFullError
from proxy.storage.changes import UserCreated
from proxy.storage.db import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "wheelwell.sqlite3")
    await database.start()
    yield database
    await database.close()


def _cap(conn: sqlite3.Connection) -> None:
    """SQLite answers SQLITE_FULL once the file would grow past max_page_count: a full disk."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")


def _uncap(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA max_page_count = 1073741823")


async def test_full_database_is_storage_full_and_rolls_back(db: Database) -> None:
    await db.write_derived(_cap)
    big = UserCreated(user="alice", pwhash="x" * 200_000, created=1.0)
    with pytest.raises(StorageFullError, match=r"database wheelwell\.sqlite3"):
        await db.commit(big)
    assert db.serial == 0
    assert await db.read(lambda c: c.execute("SELECT COUNT(*) FROM users").fetchone()[0]) == 0
    await db.write_derived(_uncap)
    assert await db.commit(big) == 1  # the connection is not left inside a broken transaction
    assert (await db.changes_since(0))[0].kind == "user"


async def test_full_database_error_names_no_server_path(db: Database, tmp_path: Path) -> None:
    await db.write_derived(_cap)
    with pytest.raises(StorageFullError) as caught:
        await db.commit(UserCreated(user="bob", pwhash="y" * 200_000, created=1.0))
    assert str(tmp_path) not in str(caught.value)
