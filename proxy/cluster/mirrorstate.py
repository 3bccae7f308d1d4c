"""The mirror's cache in an export (`--include-mirror`): its files, aliases and project pages.

The manifest comes first in an archive, so every file it lists must still be readable when its
turn comes; mirror files can be evicted at any moment. Each one is therefore *held* (opened)
before the manifest is written: an open file keeps its bytes after an unlink, and one already
gone when it is opened is skipped and counted, never listed. Project page bodies are copied
into one temp file for the same reason (a page may be rewritten meanwhile).

Pages are read from the page cache's SQLite read-only (the export writes nothing to the data
dir) and written to the export as JSON fields plus content-addressed bodies: an export holds no
pickle, and import stores each page through diskcache as the server itself does.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import sqlite3
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import diskcache  # type: ignore[import-untyped]

from proxy.model import is_sha256
from proxy.storage.pagecache import CachedPage

MIRROR = "mirror.json"
PAGES = "mirror/pages/"
#: a page's fields besides its body, as mirror.json lists them (CachedPage's, in order)
_FIELDS = ("fetched_at", "status", "etag", "last_modified", "serial", "content_type", "url")
_NEGATIVE_TAG = "404"  #: the page cache's tag for a remembered 404 (pagecache._NEGATIVE_TAG)


def page_path(sha: str) -> str:
    return f"{PAGES}{sha}"


@dataclass(slots=True)
class Held:
    """What one export holds open until it has copied it; `close` lets go of all of it."""

    #: sha256 → (open file, size) of every held blob
    blobs: dict[str, tuple[IO[bytes], int]] = field(default_factory=dict)
    skipped: int = 0  #: blobs gone (evicted) between listing and holding
    pages: list[dict[str, Any]] = field(default_factory=list)  #: mirror.json's page rows
    pages_skipped: int = 0  #: pages rewritten or dropped while read
    aliases: list[list[str]] = field(default_factory=list)  #: [alias, sha256], sorted
    _bodies: IO[bytes] | None = None
    _where: dict[str, tuple[int, int]] = field(default_factory=dict)  #: body sha → offset, size

    def body_sizes(self) -> dict[str, int]:
        return {sha: size for sha, (_, size) in sorted(self._where.items())}

    def body(self, sha: str) -> bytes:
        offset, size = self._where[sha]
        if self._bodies is None:
            raise KeyError(sha)
        self._bodies.seek(offset)
        return self._bodies.read(size)

    def keep_body(self, body: bytes) -> str:
        sha = hashlib.sha256(body).hexdigest()
        if sha not in self._where:
            if self._bodies is None:
                self._bodies = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
            self._bodies.seek(0, 2)
            self._where[sha] = (self._bodies.tell(), len(body))
            self._bodies.write(body)
        return sha

    def close(self) -> None:
        for fh, _ in self.blobs.values():
            fh.close()
        self.blobs.clear()
        if self._bodies is not None:
            self._bodies.close()
            self._bodies = None


def open_read_only(db_path: Path) -> sqlite3.Connection:
    """A read-only connection, also where the export may not write beside the database.

    With the daemon running, SQLite reads through its -shm; with it stopped and no -wal left
    (a clean stop checkpoints and removes both), a reader that may not create them reads the
    file as immutable: it is whole, and no writer is there.
    """
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        conn.close()
        if Path(f"{db_path}-wal").exists():
            raise
        conn = sqlite3.connect(
            f"file:{db_path}?mode=ro&immutable=1", uri=True, isolation_level=None
        )
    return conn


def stored_blobs(blobs_dir: Path) -> list[str]:
    """sha256 of every file in the blob store (the mirror's cache and the hosted files)."""
    found: list[str] = []
    with contextlib.suppress(FileNotFoundError):
        for shard in blobs_dir.iterdir():
            if shard.is_dir():
                found.extend(p.name for p in shard.iterdir() if is_sha256(p.name))
    return sorted(found)


def _raise_open_files_limit() -> None:
    """Holding every mirror file needs one descriptor each: take what the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def hold_blobs(held: Held, blobs_dir: Path, shas: list[str]) -> None:
    """Open every listed blob; one evicted since it was listed is skipped and counted."""
    _raise_open_files_limit()
    for sha in shas:
        path = blobs_dir / sha[:2] / sha
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            held.skipped += 1
            continue
        held.blobs[sha] = (fh, os.fstat(fh.fileno()).st_size)


def read_aliases(db_path: Path, blobs: set[str]) -> list[list[str]]:
    """Alias → sha256 rows whose blob is in the export (the others would name nothing)."""
    conn = open_read_only(db_path)
    try:
        rows = conn.execute("SELECT alias, sha256 FROM blob_aliases ORDER BY alias").fetchall()
    finally:
        conn.close()
    return [[str(alias), str(sha)] for alias, sha in rows if sha in blobs]


def read_pages(held: Held, pages_dir: Path) -> None:
    """Every cached project page and remembered 404, read-only; bodies kept in `held`."""
    db = pages_dir / "cache.db"
    if not db.exists():
        return
    disk = diskcache.Disk(str(pages_dir))
    conn = open_read_only(db)
    try:
        rows = conn.execute(
            "SELECT key, mode, filename, value FROM Cache WHERE raw = 1 ORDER BY key"
        ).fetchall()
    finally:
        conn.close()
    for key, mode, filename, value in rows:
        try:
            raw = disk.fetch(mode, filename, value, False)
            page = CachedPage(**raw)
        except (OSError, TypeError, ValueError, EOFError):  # rewritten meanwhile: its file went
            held.pages_skipped += 1
            continue
        row: dict[str, Any] = {"key": str(key), "body": held.keep_body(page.body)}
        row.update({name: getattr(page, name) for name in _FIELDS})
        held.pages.append(row)


# ---- import ---------------------------------------------------------------------------------


def check_mirror(state: Any, bodies: set[str], blobs: set[str]) -> tuple[list[Any], list[Any]]:
    """mirror.json's pages and aliases, each checked; ValueError says what does not fit."""
    if not isinstance(state, dict) or set(state) != {"pages", "aliases"}:
        raise ValueError("not a mirror state")
    pages, aliases = state["pages"], state["aliases"]
    if not isinstance(pages, list) or not isinstance(aliases, list):
        raise ValueError("pages and aliases must be lists")
    for row in pages:
        if not isinstance(row, dict) or set(row) != {"key", "body", *_FIELDS}:
            raise ValueError("a page row has unknown or missing fields")
        if not isinstance(row["key"], str) or row["body"] not in bodies:
            raise ValueError(f"page {row.get('key')!r}: its body is not in the export")
        if row["status"] not in (200, 404) or not isinstance(row["fetched_at"], int | float):
            raise ValueError(f"page {row['key']!r}: bad status or time")
        for name in ("etag", "last_modified", "content_type", "url"):
            if row[name] is not None and not isinstance(row[name], str):
                raise ValueError(f"page {row['key']!r}: {name} is not a string")
        if row["serial"] is not None and not isinstance(row["serial"], int):
            raise ValueError(f"page {row['key']!r}: serial is not a number")
    for pair in aliases:
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        ):
            raise ValueError("an alias is not [alias, sha256]")
        if pair[1] not in blobs:
            raise ValueError(f"alias {pair[0]!r} names a file not in the export")
    return pages, aliases


def write_pages(pages_dir: Path, pages: list[Any], bodies_dir: Path) -> None:
    """Store the pages as the server's page cache does (its keys, values and 404 tag)."""
    cache = diskcache.Cache(str(pages_dir), size_limit=2**32)
    try:
        with cache.transact():
            for row in pages:
                body = (bodies_dir / row["body"]).read_bytes()
                page = CachedPage(body=body, **{name: row[name] for name in _FIELDS})
                tag = None if page.status == 200 else _NEGATIVE_TAG
                cache.set(row["key"], asdict(page), tag=tag)
    finally:
        cache.close()


def write_aliases(conn: sqlite3.Connection, aliases: list[Any]) -> None:
    conn.executemany("INSERT INTO blob_aliases (alias, sha256) VALUES (?, ?)", aliases)
