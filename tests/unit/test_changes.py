"""The change model: every kind serializes and parses back to an equal value; apply's refusals."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator

import pytest

from proxy.errors import ConflictError, NotFoundError, StorageError
from proxy.storage import changes
from proxy.storage.changes import (
    Change,
    ChangeKind,
    FileDeleted,
    FileUploaded,
    HostedRow,
    IndexDeleted,
    IndexSaved,
    PasswordSet,
    ReleaseDeleted,
    ReleaseYanked,
    TokenCreated,
    TokenRevoked,
    ToxResultAdded,
    UnchangedError,
    UserCreated,
    UserDeleted,
    WheelhouseFile,
    WheelhouseScanned,
)
from proxy.storage.db import SCHEMA

ROW = HostedRow("ours", "1.0", "ours-1.0-py3-none-any.whl", "a" * 64, 10, ">=3.9", "b" * 64,
                "summary", "long\ndescription", "text/markdown")  # fmt: skip
UPLOAD = FileUploaded(
    idx="root/public", project="ours", version="1.0", filename="ours-1.0.tar.gz",
    sha256="c" * 64, size=5, requires_python=None, metadata_sha256=None, summary="s",
    description="", description_type="", uploaded=1.5, uploader="root",
)  # fmt: skip
TOXRESULT = ToxResultAdded(
    idx="root/public", project="ours", version="1.0", filename="ours-1.0.tar.gz",
    sha256="c" * 64, data='{"testenvs":{}}', summary='{"envs":[]}', posted=3.0, poster=None,
)  # fmt: skip
EXAMPLES: list[Change] = [
    UserCreated(user="alice", pwhash="scrypt$1$x$y", created=1.0),
    PasswordSet(user="alice", pwhash="scrypt$1$x$z"),
    UserDeleted(user="alice"),
    TokenCreated(
        id="t1",
        user="alice",
        hash="d" * 64,
        token_index="alice/dev",
        expires=None,
        description="ci",
        created=2.0,
    ),
    TokenRevoked(id="t1"),
    IndexSaved(name="alice/dev", config={"name": "alice/dev", "bases": ["root/pypi"]}),
    IndexDeleted(name="alice/dev"),
    UPLOAD,
    ReleaseYanked(idx="root/public", project="ours", version="1.0", yanked=True, reason=None),
    ReleaseDeleted(idx="root/public", project="ours", version="1.0"),
    FileDeleted(
        idx="root/public",
        filename="ours-1.0.tar.gz",
        sha256="c" * 64,
        project="ours",
        version="1.0",
    ),
    WheelhouseScanned(
        idx="root/public",
        removed=(WheelhouseFile("/w/old.whl", 1, ROW),),
        added=(WheelhouseFile("/w/ours-1.0-py3-none-any.whl", 2, ROW),),
    ),
    TOXRESULT,
]


def test_every_kind_has_an_example() -> None:
    assert {c.kind for c in EXAMPLES} == set(ChangeKind)


@pytest.mark.parametrize("change", EXAMPLES, ids=lambda c: c.kind.value)
def test_round_trip(change: Change) -> None:
    body = changes.render_change(change)
    assert changes.parse_change(change.kind.value, body) == change
    assert changes.render_change(changes.parse_change(change.kind.value, body)) == body


def test_secrets_are_not_public() -> None:
    assert "pwhash" not in changes.render_public(EXAMPLES[0])
    assert "hash" not in changes.render_public(EXAMPLES[3])
    assert changes.render_public(UPLOAD)["filename"] == "ours-1.0.tar.gz"


@pytest.mark.parametrize(
    ("kind", "body", "version"),
    [
        ("upload", "{}", 1),  # fields missing
        ("no-such-kind", "{}", 1),
        ("user", "not json", 1),
        ("user", '{"user": "a", "pwhash": "x", "created": 1, "extra": 2}', 1),
        ("user", '{"user": "a", "pwhash": "x", "created": 1}', 0),  # milestone-1 entry
        ("user", '{"user": "a", "pwhash": "x", "created": 1}', 2),  # from a newer version
    ],
)
def test_unreadable_entries_are_storage_errors(kind: str, body: str, version: int) -> None:
    with pytest.raises(StorageError):
        changes.parse_change(kind, body, version)


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.executescript(SCHEMA)
    yield connection
    connection.close()


def test_apply_refuses_what_cannot_apply(conn: sqlite3.Connection) -> None:
    changes.apply(conn, EXAMPLES[0])
    with pytest.raises(ConflictError):
        changes.apply(conn, EXAMPLES[0])
    with pytest.raises(NotFoundError):
        changes.apply(conn, PasswordSet(user="nobody", pwhash="x"))
    with pytest.raises(NotFoundError):
        changes.apply(conn, TokenRevoked(id="missing"))
    changes.apply(conn, UPLOAD)
    with pytest.raises(UnchangedError):
        changes.apply(conn, UPLOAD)
    with pytest.raises(ConflictError):  # other bytes under the same file name
        changes.apply(conn, dataclasses.replace(UPLOAD, sha256="e" * 64))
    with pytest.raises(NotFoundError):
        changes.apply(conn, ReleaseDeleted(idx="root/public", project="ours", version="9"))


def test_tox_results_are_numbered_per_file_and_go_with_their_file(
    conn: sqlite3.Connection,
) -> None:
    changes.apply(conn, UPLOAD)
    for _ in range(3):
        changes.apply(conn, TOXRESULT)
    other = dataclasses.replace(TOXRESULT, filename="ours-1.0-py3-none-any.whl")
    changes.apply(conn, other)
    rows = conn.execute("SELECT filename, n FROM toxresults ORDER BY filename, n").fetchall()
    assert rows == [("ours-1.0-py3-none-any.whl", 0)] + [("ours-1.0.tar.gz", n) for n in range(3)]
    changes.apply(
        conn,
        FileDeleted(idx="root/public", filename="ours-1.0.tar.gz", sha256="c" * 64,
                    project="ours", version="1.0"),
    )  # fmt: skip
    assert conn.execute("SELECT filename FROM toxresults").fetchall() == [(other.filename,)]
    changes.apply(conn, IndexDeleted(name="root/public"))
    assert conn.execute("SELECT COUNT(*) FROM toxresults").fetchone() == (0,)
