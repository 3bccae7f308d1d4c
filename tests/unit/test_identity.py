"""A database's identity: made once, carried by imports, forked when an imported one leads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from proxy.storage import identity
from proxy.storage.db import SCHEMA
from proxy.storage.identity import Identity

ORIGIN = Identity("a" * 32, "b" * 32, 0)


def _conn(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
    conn.executescript(SCHEMA)
    return conn


def test_made_once_and_kept(tmp_path: Path) -> None:
    conn = _conn(tmp_path)
    made = identity.settle(conn, 0, replica=False)
    assert made is not None and made.epoch_serial == 0
    assert identity.settle(conn, 5, replica=False) == made


def test_a_replica_makes_none_and_an_imported_one_forks_only_when_it_leads(
    tmp_path: Path,
) -> None:
    conn = _conn(tmp_path)
    assert identity.settle(conn, 0, replica=True) is None
    identity.write(conn, ORIGIN)
    identity.mark_imported(conn)
    assert identity.settle(conn, 40, replica=True) == ORIGIN  # follows on from the export
    forked = identity.settle(conn, 40, replica=False)
    assert forked is not None
    assert forked.database_id == ORIGIN.database_id and forked.epoch != ORIGIN.epoch
    assert forked.epoch_serial == 40
    assert identity.settle(conn, 41, replica=False) == forked  # once


FORKED = Identity(ORIGIN.database_id, "c" * 32, 40)


@pytest.mark.parametrize(
    ("local", "serial", "primary", "primary_serial", "wanted"),
    [
        (None, 0, ORIGIN, 9, None),  # an empty replica
        (Identity("d" * 32, "e" * 32, 0), 0, ORIGIN, 9, None),  # nothing applied yet
        (None, 7, ORIGIN, 9, None),  # a replica older than identities
        (ORIGIN, 7, ORIGIN, 9, None),
        (ORIGIN, 9, ORIGIN, 9, None),
        (Identity("d" * 32, "e" * 32, 0), 7, ORIGIN, 9, "holds another database"),
        (ORIGIN, 12, ORIGIN, 9, "past the primary's 9"),
        (ORIGIN, 30, FORKED, 60, None),  # before the fork: the same rows on both
        (ORIGIN, 40, FORKED, 60, None),
        (ORIGIN, 41, FORKED, 60, "forked at serial 40"),
        (FORKED, 50, FORKED, 60, None),
    ],
)
def test_diverges(
    local: Identity | None, serial: int, primary: Identity, primary_serial: int, wanted: str | None
) -> None:
    reason = identity.diverges(local, serial, primary, primary_serial)
    if wanted is None:
        assert reason is None
    else:
        assert reason is not None and wanted in reason


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"database_id": "x", "epoch": "b" * 32, "epoch_serial": 0},
        {"database_id": "a" * 32, "epoch": "b" * 32, "epoch_serial": -1},
        {"database_id": "a" * 32, "epoch": "b" * 32, "epoch_serial": 0, "more": 1},
    ],
)
def test_a_malformed_identity_is_refused(data: object) -> None:
    with pytest.raises(ValueError):
        Identity.from_json(data)
