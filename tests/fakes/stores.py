"""A real local blob store over a real database in a temp dir, for tests below the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from proxy.storage.blobs import BlobAliases, LocalBlobStore
from proxy.storage.db import Database


@asynccontextmanager
async def open_local_blobs(data_dir: Path) -> AsyncIterator[LocalBlobStore]:
    """The store as the app builds it: aliases in the data dir's database."""
    db = Database(data_dir / "wheelwell.sqlite3")
    await db.start()
    blobs = LocalBlobStore(data_dir, BlobAliases(db))
    blobs.open()
    try:
        yield blobs
    finally:
        blobs.close()
        await db.close()
