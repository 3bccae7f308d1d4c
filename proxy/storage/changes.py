"""The change model: every write to hosted state is one of these values, applied by `apply`.

A change carries everything needed to apply it (timestamps and hashes included), so applying
the same sequence to an empty database gives the same tables: the changelog can be replayed by
replicas, written out by export and listened to by hooks. `apply` is the only writer of the
hosted tables; derived tables (search) are kept by derivers run in the same transaction.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from proxy.errors import ConflictError, NotFoundError, StorageError
from proxy.model import mask_url

#: the serialization version written into every new changelog entry; 0 marks entries written
#: before the change model existed (kept for history, not replayable)
FORMAT = 1


class ChangeKind(StrEnum):
    """The changelog's `kind` values (milestone 1's names where the shape was already one)."""

    USER_CREATED = "user"
    PASSWORD_SET = "password"  # noqa: S105 - a kind, not a secret
    USER_DELETED = "user-delete"
    TOKEN_CREATED = "token"  # noqa: S105
    TOKEN_REVOKED = "token-revoke"  # noqa: S105
    INDEX_SAVED = "index"
    INDEX_DELETED = "index-delete"
    FILE_UPLOADED = "upload"
    RELEASE_YANKED = "yank"  #: yank and unyank
    RELEASE_DELETED = "release-delete"
    FILE_DELETED = "file-delete"
    WHEELHOUSE_SCANNED = "wheelhouse"
    TOXRESULT_ADDED = "toxresult"


class UnchangedError(Exception):
    """The change would change nothing (an identical re-upload): rolled back, not logged."""


class _Change:
    """What every change has: its kind, its secret fields, and the field naming its index."""

    __slots__ = ()
    kind: ClassVar[ChangeKind]
    secrets: ClassVar[frozenset[str]] = frozenset()
    index_field: ClassVar[str | None] = None

    @property
    def index(self) -> str | None:
        """The index the change is about (None for users and unscoped tokens)."""
        value: str | None = getattr(self, self.index_field) if self.index_field else None
        return value


@dataclass(frozen=True, slots=True)
class UserCreated(_Change):
    kind: ClassVar[ChangeKind] = ChangeKind.USER_CREATED
    secrets: ClassVar[frozenset[str]] = frozenset({"pwhash"})
    user: str
    pwhash: str
    created: float


@dataclass(frozen=True, slots=True)
class PasswordSet(_Change):
    """A new password; applying it also revokes every token of the user."""

    kind: ClassVar[ChangeKind] = ChangeKind.PASSWORD_SET
    secrets: ClassVar[frozenset[str]] = frozenset({"pwhash"})
    user: str
    pwhash: str


@dataclass(frozen=True, slots=True)
class UserDeleted(_Change):
    kind: ClassVar[ChangeKind] = ChangeKind.USER_DELETED
    user: str


@dataclass(frozen=True, slots=True)
class TokenCreated(_Change):
    kind: ClassVar[ChangeKind] = ChangeKind.TOKEN_CREATED
    index_field: ClassVar[str | None] = "token_index"
    secrets: ClassVar[frozenset[str]] = frozenset({"hash"})
    id: str
    user: str
    hash: str  #: sha256 of the secret; the secret itself is never stored
    token_index: str | None
    expires: float | None
    description: str
    created: float
    #: what an index token may do there (entries older than scopes parse as upload only)
    scopes: tuple[str, ...] = ("upload",)


@dataclass(frozen=True, slots=True)
class TokenRevoked(_Change):
    kind: ClassVar[ChangeKind] = ChangeKind.TOKEN_REVOKED
    id: str


@dataclass(frozen=True, slots=True)
class IndexSaved(_Change):
    kind: ClassVar[ChangeKind] = ChangeKind.INDEX_SAVED
    index_field: ClassVar[str | None] = "name"
    name: str
    config: Mapping[str, Any]  #: the stored record of an IndexConfig (plain JSON)


@dataclass(frozen=True, slots=True)
class IndexDeleted(_Change):
    kind: ClassVar[ChangeKind] = ChangeKind.INDEX_DELETED
    index_field: ClassVar[str | None] = "name"
    name: str


@dataclass(frozen=True, slots=True)
class HostedRow:
    """One wheelhouse file's facts (an upload carries the same fields flat)."""

    project: str
    version: str
    filename: str
    sha256: str
    size: int
    requires_python: str | None
    metadata_sha256: str | None
    summary: str
    description: str
    description_type: str


@dataclass(frozen=True, slots=True)
class FileUploaded(_Change):
    kind: ClassVar[ChangeKind] = ChangeKind.FILE_UPLOADED
    index_field: ClassVar[str | None] = "idx"
    idx: str
    project: str
    version: str
    filename: str
    sha256: str
    size: int
    requires_python: str | None
    metadata_sha256: str | None
    summary: str
    description: str
    description_type: str
    uploaded: float
    uploader: str | None


@dataclass(frozen=True, slots=True)
class ReleaseYanked(_Change):
    """PEP 592 yank (or unyank, with `yanked` false) of every file of a release."""

    kind: ClassVar[ChangeKind] = ChangeKind.RELEASE_YANKED
    index_field: ClassVar[str | None] = "idx"
    idx: str
    project: str
    version: str
    yanked: bool
    reason: str | None


@dataclass(frozen=True, slots=True)
class ReleaseDeleted(_Change):
    kind: ClassVar[ChangeKind] = ChangeKind.RELEASE_DELETED
    index_field: ClassVar[str | None] = "idx"
    idx: str
    project: str
    version: str


@dataclass(frozen=True, slots=True)
class FileDeleted(_Change):
    kind: ClassVar[ChangeKind] = ChangeKind.FILE_DELETED
    index_field: ClassVar[str | None] = "idx"
    idx: str
    filename: str
    sha256: str
    project: str
    version: str


@dataclass(frozen=True, slots=True)
class WheelhouseFile:
    """A file found in a wheelhouse directory: served from `path`, never copied."""

    path: str
    mtime_ns: int
    file: HostedRow


@dataclass(frozen=True, slots=True)
class WheelhouseScanned(_Change):
    kind: ClassVar[ChangeKind] = ChangeKind.WHEELHOUSE_SCANNED
    index_field: ClassVar[str | None] = "idx"
    idx: str
    removed: tuple[WheelhouseFile, ...]
    added: tuple[WheelhouseFile, ...]  #: new or changed (replacing the row at the same path)


@dataclass(frozen=True, slots=True)
class ToxResultAdded(_Change):
    """A tox run's result (tox's --result-json, as posted) attached to one hosted file.

    Its number among the file's results is given by `apply` (one more than the last), so
    replaying the changelog numbers them the same.
    """

    kind: ClassVar[ChangeKind] = ChangeKind.TOXRESULT_ADDED
    index_field: ClassVar[str | None] = "idx"
    idx: str
    project: str
    version: str
    filename: str
    sha256: str
    data: str  #: canonical JSON of the posted result
    summary: str  #: canonical JSON of what the API and UI show of it (hosted/toxresults.py)
    posted: float
    poster: str | None


Change = (
    UserCreated
    | PasswordSet
    | UserDeleted
    | TokenCreated
    | TokenRevoked
    | IndexSaved
    | IndexDeleted
    | FileUploaded
    | ReleaseYanked
    | ReleaseDeleted
    | FileDeleted
    | WheelhouseScanned
    | ToxResultAdded
)

_TYPES: dict[ChangeKind, type[Any]] = {
    cls.kind: cls
    for cls in (
        UserCreated,
        PasswordSet,
        UserDeleted,
        TokenCreated,
        TokenRevoked,
        IndexSaved,
        IndexDeleted,
        FileUploaded,
        ReleaseYanked,
        ReleaseDeleted,
        FileDeleted,
        WheelhouseScanned,
        ToxResultAdded,
    )
}


# ---- serialization -----------------------------------------------------------------------------


def render_change(change: Change) -> str:
    """The changelog form: canonical JSON of every field (nested rows as objects)."""
    return json.dumps(dataclasses.asdict(change), sort_keys=True, separators=(",", ":"))


def _row(data: Mapping[str, Any]) -> HostedRow:
    return HostedRow(**data)


def _wheelhouse_file(data: Mapping[str, Any]) -> WheelhouseFile:
    return WheelhouseFile(path=data["path"], mtime_ns=data["mtime_ns"], file=_row(data["file"]))


def parse_change(kind: str, body: str, version: int = FORMAT) -> Change:
    """The inverse of `render_change`; StorageError for unknown kinds or versions."""
    if version != FORMAT:
        raise StorageError(f"changelog entry format {version} cannot be replayed (want {FORMAT})")
    try:
        cls = _TYPES[ChangeKind(kind)]
        data: dict[str, Any] = json.loads(body)
        if cls is WheelhouseScanned:
            data["removed"] = tuple(_wheelhouse_file(f) for f in data["removed"])
            data["added"] = tuple(_wheelhouse_file(f) for f in data["added"])
        if cls is TokenCreated and "scopes" in data:
            data["scopes"] = tuple(data["scopes"])
        change: Change = cls(**data)
    except (ValueError, TypeError, KeyError) as exc:
        raise StorageError(f"unreadable changelog entry of kind {kind!r}: {exc}") from exc
    return change


def render_public(change: Change) -> dict[str, Any]:
    """The change as the API shows it: every field but secrets (password and token hashes)."""
    data = dataclasses.asdict(change)
    for name in change.secrets:
        data.pop(name, None)
    if isinstance(change, IndexSaved):
        data["config"] = _public_index_config(change.config)
    return data


def _public_index_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """An index's stored config without its secrets: hook secrets, credentials in URLs."""
    shown = dict(config)
    for key in ("upstream", "uploadtrigger_jenkins"):
        if isinstance(shown.get(key), str):
            shown[key] = mask_url(shown[key])
    if isinstance(shown.get("webhooks"), list):
        shown["webhooks"] = [
            {**h, "url": mask_url(str(h.get("url", ""))), "secret": "***"}
            for h in shown["webhooks"]
            if isinstance(h, dict)
        ]
    return shown


# ---- apply: the only writer of hosted tables ---------------------------------------------------


_INSERT_FILE = (
    "INSERT INTO files (idx, project, version, filename, sha256, size, requires_python, "
    "metadata_sha256, uploaded, uploader, summary, description, description_type) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_WHEELHOUSE = (
    "INSERT OR REPLACE INTO wheelhouse (idx, path, filename, project, version, size, mtime_ns, "
    "sha256, requires_python, metadata_sha256, summary, description, description_type) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def apply(conn: sqlite3.Connection, change: Change) -> None:
    """Write one change inside the caller's transaction; raises when it cannot apply."""
    match change:
        case UserCreated():
            try:
                conn.execute(
                    "INSERT INTO users (name, pwhash, created) VALUES (?, ?, ?)",
                    (change.user, change.pwhash, change.created),
                )
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"user '{change.user}' exists") from exc
        case PasswordSet():
            cur = conn.execute(
                "UPDATE users SET pwhash = ? WHERE name = ?", (change.pwhash, change.user)
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"user '{change.user}' not found")
            conn.execute("UPDATE tokens SET revoked = 1 WHERE user = ?", (change.user,))
        case UserDeleted():
            if conn.execute("DELETE FROM users WHERE name = ?", (change.user,)).rowcount == 0:
                raise NotFoundError(f"user '{change.user}' not found")
            conn.execute("UPDATE tokens SET revoked = 1 WHERE user = ?", (change.user,))
        case TokenCreated():
            conn.execute(
                "INSERT INTO tokens (id, user, hash, idx, expires, description, created, scopes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    change.id,
                    change.user,
                    change.hash,
                    change.token_index,
                    change.expires,
                    change.description,
                    change.created,
                    json.dumps(list(change.scopes)),
                ),
            )
        case TokenRevoked():
            cur = conn.execute(
                "UPDATE tokens SET revoked = 1 WHERE id = ? AND revoked = 0", (change.id,)
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"token '{change.id}' not found")
        case IndexSaved():
            conn.execute(
                "INSERT INTO indexes (name, config) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET config = excluded.config",
                (change.name, json.dumps(change.config, sort_keys=True)),
            )
        case IndexDeleted():
            conn.execute("DELETE FROM indexes WHERE name = ?", (change.name,))
            conn.execute("DELETE FROM files WHERE idx = ?", (change.name,))
            conn.execute("DELETE FROM toxresults WHERE idx = ?", (change.name,))
        case FileUploaded():
            _apply_upload(conn, change)
        case ReleaseYanked():
            cur = conn.execute(
                "UPDATE files SET yanked = ?, yanked_reason = ? "
                "WHERE idx = ? AND project = ? AND version = ?",
                (
                    int(change.yanked),
                    change.reason if change.yanked else None,
                    change.idx,
                    change.project,
                    change.version,
                ),
            )
            if cur.rowcount == 0:
                raise _no_release(change.idx, change.project, change.version)
        case ReleaseDeleted():
            cur = conn.execute(
                "DELETE FROM files WHERE idx = ? AND project = ? AND version = ?",
                (change.idx, change.project, change.version),
            )
            if cur.rowcount == 0:
                raise _no_release(change.idx, change.project, change.version)
            conn.execute(
                "DELETE FROM toxresults WHERE idx = ? AND project = ? AND version = ?",
                (change.idx, change.project, change.version),
            )
        case FileDeleted():
            for table in ("files", "toxresults"):
                conn.execute(
                    f"DELETE FROM {table} WHERE idx = ? AND filename = ? AND sha256 = ?",  # noqa: S608 - two fixed names
                    (change.idx, change.filename, change.sha256),
                )
        case WheelhouseScanned():
            conn.executemany(
                "DELETE FROM wheelhouse WHERE idx = ? AND path = ?",
                [(change.idx, f.path) for f in change.removed],
            )
            conn.executemany(
                _INSERT_WHEELHOUSE, [_wheelhouse_values(change.idx, f) for f in change.added]
            )
            conn.executemany(  # a vanished file's results go with it
                "DELETE FROM toxresults WHERE idx = ? AND filename = ? AND sha256 = ?",
                [(change.idx, f.file.filename, f.file.sha256) for f in change.removed],
            )
        case ToxResultAdded():
            _apply_toxresult(conn, change)


def _no_release(index: str, project: str, version: str) -> NotFoundError:
    return NotFoundError(f"release {project} {version} not found in {index}")


def _apply_upload(conn: sqlite3.Connection, f: FileUploaded) -> None:
    existing = conn.execute(
        "SELECT sha256 FROM files WHERE idx = ? AND filename = ?", (f.idx, f.filename)
    ).fetchone()
    if existing is not None:
        if existing[0] == f.sha256:
            raise UnchangedError(f.filename)
        raise ConflictError(f"file '{f.filename}' exists in {f.idx} with other bytes")
    conn.execute(
        _INSERT_FILE,
        (
            f.idx, f.project, f.version, f.filename, f.sha256, f.size, f.requires_python,
            f.metadata_sha256, f.uploaded, f.uploader, f.summary, f.description,
            f.description_type,
        ),
    )  # fmt: skip


def _apply_toxresult(conn: sqlite3.Connection, t: ToxResultAdded) -> None:
    row = conn.execute(
        "SELECT COALESCE(MAX(n) + 1, 0) FROM toxresults WHERE idx = ? AND filename = ?",
        (t.idx, t.filename),
    ).fetchone()
    conn.execute(
        "INSERT INTO toxresults (idx, filename, n, sha256, project, version, data, summary, "
        "posted, poster) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            t.idx,
            t.filename,
            row[0],
            t.sha256,
            t.project,
            t.version,
            t.data,
            t.summary,
            t.posted,
            t.poster,
        ),
    )


def _wheelhouse_values(index: str, w: WheelhouseFile) -> tuple[object, ...]:
    f = w.file
    return (
        index, w.path, f.filename, f.project, f.version, f.size, w.mtime_ns, f.sha256,
        f.requires_python, f.metadata_sha256, f.summary, f.description, f.description_type,
    )  # fmt: skip


#: the hosted tables `apply` writes, with the columns that identify a row (for dumps)
HOSTED_TABLES: dict[str, tuple[str, ...]] = {
    "users": ("name",),
    "tokens": ("id",),
    "indexes": ("name",),
    "files": ("idx", "filename"),
    "wheelhouse": ("idx", "path"),
    "toxresults": ("idx", "filename", "n"),
}


def dump_hosted(conn: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every hosted row in a canonical order: two databases with equal dumps hold the same state."""
    dump: dict[str, list[dict[str, Any]]] = {}
    for table, key in HOSTED_TABLES.items():
        cursor = conn.execute(f"SELECT * FROM {table} ORDER BY {', '.join(key)}")  # noqa: S608
        columns = [d[0] for d in cursor.description]
        dump[table] = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    return dump
