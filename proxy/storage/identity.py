"""Which history a database holds: a replica never replays a primary's changes onto foreign state.

`database_id` names a line of serials: made once when a database is created, carried by
snapshots, exports and imports. `epoch` changes where that line forks: a data dir built by
`wheelwell import` keeps both (a replica started from an export of its primary goes on from the
export's serial), but once it serves as a primary or standalone server, it takes a new epoch
starting at its serial, since its next serials are not the ones the exported server went on to
write. A replica compares its own identity with the primary's before it applies anything.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from typing import Any

SCHEMA = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
_KEYS = ("database_id", "epoch", "epoch_serial")
#: set by an import: the first start as a primary or standalone server forks the epoch
_FORK_PENDING = "fork_pending"


@dataclass(frozen=True, slots=True)
class Identity:
    database_id: str
    epoch: str
    epoch_serial: int  #: the serial the epoch started at (0: at creation)

    @classmethod
    def new(cls, serial: int = 0) -> Identity:
        return cls(uuid.uuid4().hex, uuid.uuid4().hex, serial)

    def as_json(self) -> dict[str, Any]:
        return {
            "database_id": self.database_id,
            "epoch": self.epoch,
            "epoch_serial": self.epoch_serial,
        }

    @classmethod
    def from_json(cls, data: Any) -> Identity:
        """ValueError unless it is exactly what `as_json` writes."""
        if not isinstance(data, dict) or set(data) != set(_KEYS):
            raise ValueError("an identity has database_id, epoch and epoch_serial")
        ident, epoch, serial = data["database_id"], data["epoch"], data["epoch_serial"]
        if not (_hex32(ident) and _hex32(epoch) and isinstance(serial, int) and serial >= 0):
            raise ValueError("a malformed database identity")
        return cls(ident, epoch, serial)


def _hex32(value: Any) -> bool:
    return (
        isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)
    )


def read(conn: sqlite3.Connection) -> Identity | None:
    """The stored identity; None for a data dir made before identities (or never written)."""
    try:
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.OperationalError:  # no meta table: a database older than identities
        return None
    if not all(k in rows for k in _KEYS):
        return None
    return Identity(str(rows["database_id"]), str(rows["epoch"]), int(rows["epoch_serial"]))


def write(conn: sqlite3.Connection, identity: Identity) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        [(k, str(v)) for k, v in identity.as_json().items()],
    )


def mark_imported(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, '1')", (_FORK_PENDING,))


def settle(conn: sqlite3.Connection, serial: int, *, replica: bool) -> Identity | None:
    """At open: make an identity where there is none, fork an imported one that now leads.

    A replica makes none (it takes its primary's when it first follows it).
    """
    identity = read(conn)
    if replica:
        return identity
    pending = conn.execute("SELECT 1 FROM meta WHERE key = ?", (_FORK_PENDING,)).fetchone()
    if identity is None or pending:
        old = identity
        identity = (
            Identity.new(serial)
            if old is None
            else Identity(old.database_id, uuid.uuid4().hex, serial)
        )
        conn.execute("BEGIN IMMEDIATE")
        write(conn, identity)
        conn.execute("DELETE FROM meta WHERE key = ?", (_FORK_PENDING,))
        conn.execute("COMMIT")
    return identity


def diverges(
    local: Identity | None, serial: int, primary: Identity, primary_serial: int
) -> str | None:
    """Why a replica at `serial` must not replay `primary`'s changes here (None: it may)."""
    if serial == 0 or local is None:  # nothing here yet, or a replica older than identities
        return None
    if local.database_id != primary.database_id:
        return (
            f"this data dir holds another database (id {local.database_id}) than the primary's "
            f"({primary.database_id})"
        )
    if serial > primary_serial:
        return f"this data dir is at serial {serial}, past the primary's {primary_serial}"
    if local.epoch == primary.epoch or serial <= primary.epoch_serial:
        return None
    return (
        f"the primary's history forked at serial {primary.epoch_serial} (it was restored from "
        f"an export) and this data dir is at serial {serial} of the history before"
    )
