"""The replication stream's lines and the health marks /+status shows."""

from __future__ import annotations

import pytest

from proxy.cluster.protocol import (
    Heartbeat,
    decode_line,
    encode_entry,
    encode_heartbeat,
    health_mark,
    secret_matches,
)
from proxy.errors import InvalidInputError
from proxy.storage.db import ChangelogEntry


def test_entries_and_heartbeats_survive_the_wire() -> None:
    entry = ChangelogEntry(7, 1700000000.5, "upload", "root/public", '{"a": "b\\n"}', 1)
    line = encode_entry(entry)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one line, whatever the body
    assert decode_line(line) == entry
    assert decode_line(encode_heartbeat(Heartbeat(9, 5.0))) == Heartbeat(9, 5.0)


@pytest.mark.parametrize("line", [b"not json\n", b'{"serial": 1}\n', b"[]\n"])
def test_a_broken_line_is_a_clear_error(line: bytes) -> None:
    with pytest.raises(InvalidInputError, match="unreadable replication line"):
        decode_line(line)


def test_secrets_compare_whole_and_none_admits_nobody() -> None:
    assert secret_matches("s" * 20, "s" * 20)
    assert not secret_matches("s" * 19, "s" * 20)
    assert not secret_matches(None, "s" * 20)
    assert not secret_matches("", "")


@pytest.mark.parametrize(
    ("silent", "behind", "mark"),
    [
        (1.0, 0.0, "ok"),
        (61.0, 0.0, "warn"),
        (301.0, 0.0, "fatal"),
        (1.0, 301.0, "warn"),
        (1.0, 3601.0, "fatal"),
        (None, 0.0, "warn"),
    ],
)
def test_health_marks_follow_devpi_webs_thresholds(
    silent: float | None, behind: float, mark: str
) -> None:
    assert health_mark(silent, behind) == mark
