"""The replication wire format: one NDJSON line per changelog entry, heartbeats in between.

`GET /+replication/changes?since=N` answers a stream that never ends while the primary runs:
every entry after N, in serial order, then new ones as they commit. An idle stream carries a
heartbeat line every `replication.heartbeat`, so a replica tells an idle link from a dead
primary (three missed heartbeats) without TCP keepalive. Only the shared secret admits a caller.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.errors import InvalidInputError
from proxy.storage.db import ChangelogEntry
from proxy.storage.identity import Identity

SECRET_HEADER = "X-Wheelwell-Replication-Secret"  # noqa: S105 - a header name
REPLICA_ID_HEADER = "X-Wheelwell-Replica-Id"
REPLICA_URL_HEADER = "X-Wheelwell-Replica-Url"
#: every response of a primary or standalone server: the serial its state is at
SERIAL_HEADER = "X-Wheelwell-Serial"
CONTENT_TYPE = "application/x-ndjson"
#: on GET /+replication/snapshot: the serial the snapshot is at, and its sha256
SNAPSHOT_SERIAL_HEADER = "X-Wheelwell-Snapshot-Serial"
SNAPSHOT_SHA256_HEADER = "X-Wheelwell-Snapshot-Sha256"
#: on GET /+replication/changes: which history the primary's serials belong to
#: (proxy/storage/identity.py); a replica checks them before it applies anything
DATABASE_ID_HEADER = "X-Wheelwell-Database-Id"
EPOCH_HEADER = "X-Wheelwell-Epoch"
EPOCH_SERIAL_HEADER = "X-Wheelwell-Epoch-Serial"


#: devpi-web's marks for a replica: no contact for 1/5 minutes, behind for 5/60 minutes
SILENT_WARN, SILENT_FATAL = 60.0, 300.0
BEHIND_WARN, BEHIND_FATAL = 300.0, 3600.0


def health_mark(silent_seconds: float | None, behind_seconds: float) -> str:
    """ok, warn or fatal for a replica (`silent_seconds` None: it never made contact)."""
    if silent_seconds is None:
        return "fatal" if behind_seconds > BEHIND_FATAL else "warn"
    if silent_seconds > SILENT_FATAL or behind_seconds > BEHIND_FATAL:
        return "fatal"
    if silent_seconds > SILENT_WARN or behind_seconds > BEHIND_WARN:
        return "warn"
    return "ok"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The primary is alive, at `serial`, at wall-clock `at`."""

    serial: int
    at: float


def secret_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison; no secret configured admits nobody."""
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def encode_entry(entry: ChangelogEntry) -> bytes:
    line = {
        "serial": entry.serial,
        "at": entry.at,
        "kind": entry.kind,
        "index": entry.index,
        "format": entry.format,
        "data": entry.body,
    }
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


def encode_heartbeat(beat: Heartbeat) -> bytes:
    return json.dumps({"heartbeat": beat.serial, "at": beat.at}).encode() + b"\n"


def decode_line(line: bytes) -> ChangelogEntry | Heartbeat:
    """One line of the stream; InvalidInputError for anything else (a broken primary or link)."""
    try:
        item: dict[str, Any] = json.loads(line)
        if "heartbeat" in item:
            return Heartbeat(int(item["heartbeat"]), float(item["at"]))
        return ChangelogEntry(
            serial=int(item["serial"]),
            at=float(item["at"]),
            kind=str(item["kind"]),
            index=item["index"] if item["index"] is None else str(item["index"]),
            body=str(item["data"]),
            format=int(item["format"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"unreadable replication line: {exc}") from exc


def identity_headers(identity: Identity | None) -> dict[str, str]:
    if identity is None:
        return {}
    return {
        DATABASE_ID_HEADER: identity.database_id,
        EPOCH_HEADER: identity.epoch,
        EPOCH_SERIAL_HEADER: str(identity.epoch_serial),
    }


def identity_from(headers: Mapping[str, str]) -> Identity | None:
    """The primary's identity from its headers; None from a primary that sends none."""
    if DATABASE_ID_HEADER not in headers:
        return None
    try:
        return Identity.from_json(
            {
                "database_id": headers[DATABASE_ID_HEADER],
                "epoch": headers.get(EPOCH_HEADER, ""),
                "epoch_serial": int(headers.get(EPOCH_SERIAL_HEADER, "")),
            }
        )
    except (ValueError, KeyError) as exc:
        raise InvalidInputError(f"unreadable database identity from the primary: {exc}") from exc
