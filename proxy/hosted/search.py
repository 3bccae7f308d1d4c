"""Full-text search over private releases and the mirror projects clients have asked for.

Private releases are indexed by `index_release` inside the upload's own transaction, so search
never disagrees with the simple pages. Mirror names are cache, not hosted state: they are noted
as pages are fetched and written behind in small batches, never from the upstream's full list.
"""

from __future__ import annotations

import enum
import functools
import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from proxy.errors import InvalidNameError, StorageError
from proxy.model import ProjectPage, normalize
from proxy.storage.changes import (
    Change,
    FileDeleted,
    FileUploaded,
    IndexDeleted,
    ReleaseDeleted,
    WheelhouseScanned,
)
from proxy.storage.db import Database
from proxy.tasks import WriteBehind

log = logging.getLogger(__name__)

SCHEMA = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS search USING fts5("
    "name, summary, description, idx UNINDEXED, project UNINDEXED, kind UNINDEXED, "
    "version UNINDEXED, tokenize='unicode61')"
)
#: bm25 weights for name, summary, description (the UNINDEXED columns take no weight)
_WEIGHTS = "10.0, 3.0, 1.0, 0.0, 0.0, 0.0, 0.0"
_COLUMNS = ("name", "summary", "description")
_FETCH_FACTOR = 20  #: rows read per wanted hit, as one project has one row per release


class HitKind(enum.StrEnum):
    """Where a hit comes from."""

    PRIVATE = "private"
    MIRROR = "mirror"


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One project in one index; `version` is the latest release (None for an unvisited mirror)."""

    index: str
    project: str
    kind: HitKind
    version: str | None
    summary: str


def create_schema(conn: sqlite3.Connection) -> bool:
    """Create the search table; True when it was new, so existing uploads must be indexed."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'search'"
    ).fetchone()
    conn.execute(SCHEMA)
    return exists is None


def index_release(
    conn: sqlite3.Connection, index: str, project: str, version: str, summary: str, description: str
) -> None:
    """Index one private release inside the caller's transaction (one row per release)."""
    remove_release(conn, index, project, version)
    conn.execute(
        "INSERT INTO search (name, summary, description, idx, project, kind, version) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (project, summary, description, index, project, HitKind.PRIVATE.value, version),
    )


def remove_release(conn: sqlite3.Connection, index: str, project: str, version: str) -> None:
    """Forget one private release inside the caller's transaction."""
    conn.execute(
        "DELETE FROM search WHERE idx = ? AND project = ? AND version = ? AND kind = ?",
        (index, project, version, HitKind.PRIVATE.value),
    )


def remove_release_if_empty(
    conn: sqlite3.Connection, index: str, project: str, version: str
) -> None:
    """After one file is deleted: forget the release when it was its last file anywhere."""
    left = conn.execute(
        "SELECT 1 FROM files WHERE idx = ? AND project = ? AND version = ? UNION ALL "
        "SELECT 1 FROM wheelhouse WHERE idx = ? AND project = ? AND version = ? LIMIT 1",
        (index, project, version, index, project, version),
    ).fetchone()
    if left is None:
        remove_release(conn, index, project, version)


def derive(conn: sqlite3.Connection, change: Change) -> None:
    """`Database` deriver: keep private search rows in step with every hosted change."""
    match change:
        case FileUploaded():
            c = change
            index_release(conn, c.idx, c.project, c.version, c.summary, c.description)
        case ReleaseDeleted():
            remove_release(conn, change.idx, change.project, change.version)
        case FileDeleted():
            remove_release_if_empty(conn, change.idx, change.project, change.version)
        case WheelhouseScanned():
            for w in change.added:  # wheelhouse releases are searchable like uploaded ones
                f = w.file
                index_release(conn, change.idx, f.project, f.version, f.summary, f.description)
            for w in change.removed:
                remove_release_if_empty(conn, change.idx, w.file.project, w.file.version)
        case IndexDeleted():
            conn.execute(
                "DELETE FROM search WHERE idx = ? AND kind = ?",
                (change.name, HitKind.PRIVATE.value),
            )
        case _:
            pass


def _backfill(conn: sqlite3.Connection) -> None:
    """Index the releases uploaded before the search table existed."""
    rows = conn.execute(
        "SELECT idx, project, version, summary, description FROM files "
        "GROUP BY idx, project, version"
    ).fetchall()
    for row in rows:
        index_release(conn, row[0], row[1], row[2], row[3], row[4])


def _phrase(term: str) -> str:
    """One user term as an FTS5 prefix phrase; quoting keeps its punctuation from being syntax."""
    return '"' + term.replace('"', '""') + '"*'


def build_match(fields: Mapping[str, Sequence[str]], operator: str = "AND") -> str:
    """An FTS5 MATCH expression; `fields` maps a column ("" for any) to its terms."""
    clauses = []
    for column, terms in fields.items():
        prefix = f"{column} : " if column else ""
        clauses += [prefix + _phrase(t) for t in terms if t.strip()]
    return f" {operator} ".join(clauses)


def _latest(versions: Iterable[tuple[str | None, str]]) -> tuple[str | None, str]:
    """The (version, summary) of the highest version; unparsable versions sort lowest."""

    def key(item: tuple[str | None, str]) -> tuple[int, Version]:
        try:
            return 1, Version(item[0] or "")
        except InvalidVersion:
            return 0, Version("0")

    return max(versions, key=key)


@dataclass(slots=True)
class _Group:
    tier: int
    score: float
    order: int
    kind: HitKind
    releases: list[tuple[str | None, str]]


def _tier(project: str, name: str) -> int:
    """0 for the exact normalized name, 1 for a name that starts with it, 2 for the rest."""
    if not name:
        return 2
    if project == name:
        return 0
    return 1 if project.startswith(name) else 2


def _shadowed(groups: dict[tuple[str, str], _Group]) -> dict[tuple[str, str], _Group]:
    """A project found earlier in the resolution order hides the later ones, as pages do."""
    first: dict[str, tuple[str, str]] = {}
    for key, group in groups.items():
        if key[1] not in first or group.order < groups[first[key[1]]].order:
            first[key[1]] = key
    return {key: groups[key] for key in first.values()}


def rank(
    rows: Iterable[Sequence[Any]],
    name: str,
    order: Sequence[str] | None,
    limit: int,
    shadow: bool = False,
) -> list[SearchHit]:
    """Group release rows into projects and rank: exact name, name prefix, then bm25.

    With `shadow`, a project appears once: from the first index of `order` that has it.
    """
    groups: dict[tuple[str, str], _Group] = {}
    for index, project, kind, version, summary, score in rows:
        position = order.index(index) if order is not None and index in order else 0
        group = groups.get((index, project))
        if group is None:
            group = _Group(_tier(project, name), score, position, HitKind(kind), [])
            groups[(index, project)] = group
        group.score = min(group.score, score)  # bm25: lower is better
        group.releases.append((version, summary))
    if shadow:
        groups = _shadowed(groups)
    # the exact name from every index in resolution order; otherwise relevance decides
    ranked = sorted(
        groups.items(),
        key=lambda g: (g[1].tier, g[1].order if g[1].tier == 0 else 0, g[1].score, g[0]),
    )
    hits: list[SearchHit] = []
    for (index, project), group in ranked:
        version, summary = _latest(group.releases)
        hits.append(SearchHit(index, project, group.kind, version, summary))
    return hits[:limit]


#: the latest version is looked for among a page's last versions: indexes list them in order
#: (PEP 700's `versions` is sorted on the public index), and 1,500 parses cost milliseconds
_LATEST_AMONG = 50
_SEEN_PAGES = 100_000  #: mirror pages whose versions are remembered, to skip repeats


class SearchIndex:
    """Queries the search table and writes mirror names behind, off the request path."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._mirror: dict[tuple[str, str], str | None] = {}  #: what the table holds
        #: a resolver's burst of page fetches collected into one write; the values are the
        #: candidate versions, whose latest is picked on the database thread (not on the loop:
        #: parsing 1,500 versions of a big project takes milliseconds)
        self._writes: WriteBehind[tuple[str, str], tuple[str, ...]] = WriteBehind(
            "search mirror names", self._write_mirror_names, delay=0.05
        )
        self._pages: dict[tuple[str, str], tuple[int, str]] = {}  #: versions last seen, briefly

    async def start(self) -> None:
        def prepare(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            if create_schema(conn):
                _backfill(conn)
            rows: list[sqlite3.Row] = conn.execute(
                "SELECT idx, project, version FROM search WHERE kind = ?",
                (HitKind.MIRROR.value,),
            ).fetchall()
            return rows

        for index, project, version in await self.db.write_derived(prepare):
            self._mirror[(index, project)] = version

    def note_mirror_page(self, index: str, project: str, page: ProjectPage) -> None:
        """`MirrorIndex.on_page`: index a fetched mirror project with its latest version."""
        versions = page.all_versions()
        key = (index, project)
        seen = (len(versions), versions[-1] if versions else "")
        if self._pages.get(key) == seen and key in self._mirror:
            return
        if len(self._pages) > _SEEN_PAGES:
            self._pages.clear()
        self._pages[key] = seen
        self._writes.put(key, versions)

    def note_mirror_project(self, index: str, project: str, version: str | None) -> None:
        """Called after a mirror page fetch: index the name (and latest version) soon."""
        key = (index, project)
        if key in self._mirror and self._mirror[key] == version:
            return
        self._writes.put(key, () if version is None else (version,))

    async def _write_mirror_names(self, batch: dict[tuple[str, str], tuple[str, ...]]) -> None:
        try:
            written = await self.db.write_derived(
                functools.partial(_write_mirror_batch, batch=batch)
            )
        except StorageError as exc:
            log.warning("search: %d mirror names not indexed: %s", len(batch), exc)
            return
        self._mirror.update(written)

    async def close(self) -> None:
        """Write what is pending, so a clean shutdown loses no names."""
        await self._writes.close()

    async def search(
        self, text: str, indexes: Sequence[str] | None, limit: int = 50, shadow: bool = False
    ) -> list[SearchHit]:
        """Free text: every term must match (as a word prefix) in name, summary or description."""
        return await self._query(build_match({"": text.split()}), text, indexes, limit, shadow)

    async def search_fields(
        self,
        fields: Mapping[str, Sequence[str]],
        operator: str,
        indexes: Sequence[str] | None,
        limit: int = 100,
        shadow: bool = False,
    ) -> list[SearchHit]:
        """The XML-RPC form: terms per field, combined with "and" or "or"."""
        usable = {c: t for c, t in fields.items() if c in _COLUMNS}
        match = build_match(usable, "OR" if operator.lower() == "or" else "AND")
        name = "".join(usable.get("name", ())[:1])
        return await self._query(match, name, indexes, limit, shadow)

    async def _query(
        self, match: str, text: str, indexes: Sequence[str] | None, limit: int, shadow: bool
    ) -> list[SearchHit]:
        if not match:
            return []
        name = _normalized(text)
        scope, scope_params = "", list(indexes or ())
        if indexes is not None:
            scope = f" AND idx IN ({', '.join('?' * len(indexes))})"
        columns = f"idx, project, kind, version, summary, bm25(search, {_WEIGHTS})"
        ranked = f"SELECT {columns} FROM search WHERE search MATCH ?{scope} ORDER BY 6 LIMIT ?"  # noqa: S608
        exact = f"SELECT {columns} FROM search WHERE search MATCH ? AND project = ?{scope}"  # noqa: S608

        def query(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            params = [match, *scope_params, limit * _FETCH_FACTOR]
            found: list[sqlite3.Row] = conn.execute(ranked, params).fetchall()
            if name:  # the exact name too, even past the rows read: FTS narrows first
                anchored = "name : ^" + _phrase(name)[:-1]
                found += conn.execute(exact, [anchored, name, *scope_params]).fetchall()
            return found

        rows = await self.db.read(query)
        return rank(rows, name, list(indexes) if indexes is not None else None, limit, shadow)


def _normalized(text: str) -> str:
    """The normalized project name a query spells, or "" when it is no valid name."""
    try:
        return normalize(text.strip()) if text.strip() else ""
    except InvalidNameError:
        return ""


def _write_mirror_batch(
    conn: sqlite3.Connection, batch: Mapping[tuple[str, str], tuple[str, ...]]
) -> dict[tuple[str, str], str | None]:
    """Mirror names are cache, not hosted state: one transaction and no changelog entry.

    Returns the version written for each name (the latest of its candidates).
    """
    written = {
        key: _latest([(v, "") for v in versions[-_LATEST_AMONG:]])[0] if versions else None
        for key, versions in batch.items()
    }
    conn.execute("BEGIN IMMEDIATE")
    try:
        for (index, project), version in written.items():
            _write_mirror(conn, index, project, version)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return written


def _write_mirror(conn: sqlite3.Connection, index: str, project: str, version: str | None) -> None:
    conn.execute(
        "DELETE FROM search WHERE idx = ? AND project = ? AND kind = ?",
        (index, project, HitKind.MIRROR.value),
    )
    conn.execute(
        "INSERT INTO search (name, summary, description, idx, project, kind, version) "
        "VALUES (?, '', '', ?, ?, ?, ?)",
        (project, index, project, HitKind.MIRROR.value, version),
    )
