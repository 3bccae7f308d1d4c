"""Range headers, the bytes kept of upstream files, and zipfile over a partly read wheel."""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO, cast

import pytest

from proxy.distfiles import parse_filename, read_wheel_member
from proxy.httpranges import ByteRange, parse_range
from proxy.mirror.ranges import MissingBytes, RangeCache
from tests.fakes.dists import build_wheel


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=100-", ByteRange(100, None)),
        ("bytes=-500", ByteRange(None, None, 500)),
        (" bytes=5-5 ", ByteRange(5, 5)),
        ("bytes=9-3", None),  # backwards
        ("bytes=0-1,5-9", None),  # several ranges: passed upstream as they are
        ("items=0-9", None),
        ("bytes=-", None),
        ("bytes=x-9", None),
    ],
)
def test_parse_range(header: str, expected: ByteRange | None) -> None:
    assert parse_range(header) == expected


def test_resolve_against_a_size() -> None:
    assert ByteRange(None, None, 500).resolve(100) == (0, 99)
    assert ByteRange(None, None, 10).resolve(100) == (90, 99)
    assert ByteRange(10, None).resolve(100) == (10, 99)
    assert ByteRange(10, 1000).resolve(100) == (10, 99)
    assert ByteRange(100, None).resolve(100) is None  # unsatisfiable
    assert ByteRange(None, None, 0).resolve(100) is None


def test_regions_answer_what_they_cover_and_nothing_more() -> None:
    cache = RangeCache()
    cache.add("k", 100, 10, bytes(range(10, 30)))
    cache.add("k", 100, 25, bytes(range(25, 50)))  # overlapping
    assert cache.read("k", 12, 30) == bytes(range(12, 42))
    assert cache.read("k", 5, 10) is None
    assert cache.read("k", 40, 20) is None
    assert cache.whole("k") is None
    cache.add("k", 100, 0, bytes(range(100)))
    assert cache.whole("k") == bytes(range(100))


def test_cache_stays_within_its_budget() -> None:
    cache = RangeCache(budget=250)
    for n in range(5):
        cache.add(f"k{n}", 1000, 0, b"x" * 100)
    assert cache.read("k4", 0, 100) is not None
    assert cache.read("k0", 0, 100) is None  # least recently used went first
    assert sum(cache.read(f"k{n}", 0, 1) is not None for n in range(5)) == 2
    cache.forget("k4")
    assert cache.read("k4", 0, 1) is None


def test_zipfile_over_a_sparse_file_asks_for_what_it_lacks(tmp_path: Path) -> None:
    built = build_wheel(tmp_path, "sparse", "1.0", payload_size=300_000, metadata_first=True)
    data = built.path.read_bytes()
    cache = RangeCache()
    cache.add("k", len(data), len(data) - 1000, data[-1000:])
    dist = parse_filename(built.filename)
    asked = []
    while True:
        sparse = cache.sparse("k")
        assert sparse is not None
        try:
            body = read_wheel_member(cast(IO[bytes], sparse), dist)
            break
        except MissingBytes as missing:
            asked.append(missing.start)
            end = missing.start + max(missing.length, 4096)
            cache.add("k", len(data), missing.start, data[missing.start : end])
    assert body == built.metadata
    assert asked and asked[-1] < 1000  # METADATA is the first member


def test_sparse_file_is_a_seekable_reader() -> None:
    cache = RangeCache()
    cache.add("k", 10, 0, b"0123456789")
    sparse = cache.sparse("k")
    assert sparse is not None
    assert sparse.seek(-3, io.SEEK_END) == 7
    assert sparse.read() == b"789"
    with pytest.raises(OSError, match="negative"):
        sparse.seek(-1)
