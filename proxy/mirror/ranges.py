"""Byte ranges of upstream files: what was read is kept, so nothing is asked for twice.

A wheel's core metadata is its `*.dist-info/METADATA` member. Without a PEP 658 file upstream,
it is read with Range requests: the tail (end of central directory, usually the whole central
directory and the dist-info members too), then whatever zipfile still lacks. zipfile itself
parses the archive, over a `SparseFile` that raises `MissingBytes` for bytes not yet fetched; the
reader fetches them and tries again. The regions read stay in a bounded `RangeCache`, which also
answers clients' own HEAD and Range requests on files not cached whole.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import IO, cast

import aiohttp

from proxy.distfiles import (
    MetadataTooLargeError,
    UnreadableArchiveError,
    parse_filename,
    read_wheel_member,
)
from proxy.errors import DistributionNotFoundError, UpstreamProtocolError, UpstreamUnavailableError
from proxy.httpranges import ByteRange
from proxy.mirror.upstream import UpstreamClient
from proxy.model import mask_url

#: the first read: the central directory of most wheels, and often their METADATA, fit in it
TAIL_BYTES = 64 * 1024
#: a later read asks for at least this much, so a member's header and body come in one trip
MIN_READ = 64 * 1024
#: most upstream reads for one file's metadata (tail, directory, member, and two spare)
MAX_READS = 5
#: the largest single read: a zip's recorded directory size is the uploader's word, and a
#: bigger directory (or a hostile one) is read out of a download to disk instead
MAX_READ = 16 * 1024 * 1024
#: a client's Range request on an uncached file up to this size is fetched, kept and answered
CACHED_RANGE_LIMIT = 1024 * 1024
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+)\Z", re.ASCII)


class RangeUnsupportedError(UpstreamProtocolError):
    """The upstream answered a Range request with the whole file (200): no ranges there."""


class MissingBytes(Exception):
    """zipfile asked for bytes not read yet: `start`, `length` of them."""

    def __init__(self, start: int, length: int) -> None:
        self.start = start
        self.length = length
        super().__init__(f"bytes {start}+{length} not read yet")


@dataclass(slots=True)
class _Record:
    total: int | None  #: the file's size, when an answer said it
    regions: dict[int, bytes] = field(default_factory=dict)  #: start offset -> bytes

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.regions.values())

    def read(self, start: int, length: int) -> bytes | None:
        """`length` bytes from `start`, if the regions cover them (they may overlap)."""
        out = bytearray()
        pos, end = start, start + length
        while pos < end:
            piece = next(
                (
                    data[pos - begin : end - begin]
                    for begin, data in self.regions.items()
                    if begin <= pos < begin + len(data)
                ),
                None,
            )
            if not piece:
                return None
            out += piece
            pos += len(piece)
        return bytes(out)


class RangeCache:
    """Regions of upstream files read so far, and their sizes; LRU within `budget` bytes."""

    def __init__(self, budget: int = 16 * 1024 * 1024, max_files: int = 100_000) -> None:
        self.budget = budget
        self.max_files = max_files
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._bytes = 0

    def total(self, key: str) -> int | None:
        record = self._records.get(key)
        return None if record is None else record.total

    def note_total(self, key: str, total: int) -> None:
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = _Record(total)
            self._trim()
        record.total = total

    def read(self, key: str, start: int, length: int) -> bytes | None:
        record = self._records.get(key)
        if record is None:
            return None
        self._records.move_to_end(key)
        return record.read(start, length)

    def add(self, key: str, total: int, start: int, data: bytes) -> None:
        self.note_total(key, total)
        record = self._records[key]
        old = record.regions.get(start)
        if old is not None and len(old) >= len(data):
            return
        record.regions[start] = data
        self._bytes += len(data) - (len(old) if old is not None else 0)
        self._records.move_to_end(key)
        self._trim()

    def forget(self, key: str) -> None:
        """The whole file is stored now: its regions are not needed any more."""
        record = self._records.pop(key, None)
        if record is not None:
            self._bytes -= record.size

    def _trim(self) -> None:
        """Oldest first; the file being read (the most recent) stays even over the budget."""
        while len(self._records) > 1 and (
            self._bytes > self.budget or len(self._records) > self.max_files
        ):
            _, record = self._records.popitem(last=False)
            self._bytes -= record.size

    def whole(self, key: str) -> bytes | None:
        """The whole file, when the regions read so far cover it."""
        record = self._records.get(key)
        if record is None or record.total is None:
            return None
        return record.read(0, record.total)

    def sparse(self, key: str) -> SparseFile | None:
        record = self._records.get(key)
        if record is None or record.total is None:
            return None
        # a snapshot: the file is read on a worker thread while the loop may add regions
        return SparseFile(record.total, _Record(record.total, dict(record.regions)))


class SparseFile(io.RawIOBase):
    """A read-only, seekable view of a file of which only some regions are known."""

    def __init__(self, total: int, record: _Record) -> None:
        super().__init__()
        self._total = total
        self._record = record
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._total}[whence]
        position = base + offset
        if position < 0:
            raise OSError("negative seek position")
        self._pos = position
        return position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        length = min(len(buffer), max(0, self._total - self._pos))
        if length == 0:
            return 0
        data = self._record.read(self._pos, length)
        if data is None:
            raise MissingBytes(self._pos, length)
        buffer[:length] = data
        self._pos += length
        return length


async def fetch_range(
    client: UpstreamClient, url: str, wanted: ByteRange, *, index: str, limit: int
) -> tuple[int, bytes, int] | None:
    """(start, bytes, total size) of one upstream range, at most `limit` bytes read.

    A 200 is the whole file: taken when it fits in `limit` (servers answer so when the range
    covers the file), else None (the upstream ignores ranges; the rest is not read).
    """
    headers = {"Range": wanted.header(), "Accept-Encoding": "identity"}
    async with client.open_file(url, headers=headers, index=index) as resp:
        if resp.status == 200:
            if resp.content_length is not None and resp.content_length > limit:
                return None
            data = await _read_at_most(resp.content, limit)
            return None if data is None else (0, data, len(data))
        match = _CONTENT_RANGE_RE.match(resp.headers.get("Content-Range", "").strip())
        if match is None:
            raise UpstreamProtocolError(mask_url(url), "a 206 answer without a Content-Range")
        first, last, total = (int(g) for g in match.groups())
        length = last - first + 1
        if length > limit or last >= total:
            raise UpstreamProtocolError(mask_url(url), "a range larger than was asked for")
        try:
            data = await resp.content.readexactly(length) if length else b""
        except asyncio.IncompleteReadError as exc:
            raise UpstreamUnavailableError(mask_url(url), "a range ended early") from exc
        return first, data, total


async def _read_at_most(content: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is longer than `limit`."""
    data = bytearray()
    async for chunk in content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)


async def read_metadata(
    client: UpstreamClient,
    cache: RangeCache,
    key: str,
    url: str,
    filename: str,
    *,
    index: str,
    limit: int,
    first_read: int = TAIL_BYTES,
) -> bytes:
    """A wheel's METADATA read with Range requests (usually one), the regions kept in `cache`.

    The first read is the last `first_read` bytes (all of a file no larger).

    DistributionNotFoundError when the wheel has none or it is over `limit`;
    RangeUnsupportedError when the upstream does not do ranges.
    """
    dist = parse_filename(filename)
    for _ in range(MAX_READS):
        sparse = cache.sparse(key)
        if sparse is None:  # never read, or evicted meanwhile by other reads
            tail = ByteRange(None, None, first_read)
            answer = await fetch_range(client, url, tail, index=index, limit=first_read)
            _store(cache, key, url, answer)
            continue
        try:
            body = await asyncio.to_thread(
                read_wheel_member, cast(IO[bytes], sparse), dist, limit=limit
            )
        except MissingBytes as missing:
            if missing.length > MAX_READ:
                raise UpstreamProtocolError(
                    mask_url(url), f"a zip directory over {MAX_READ} bytes"
                ) from None
            total = cache.total(key) or 0
            length = min(max(missing.length, MIN_READ), total - missing.start)
            wanted = ByteRange(missing.start, missing.start + length - 1)
            answer = await fetch_range(client, url, wanted, index=index, limit=length)
            _store(cache, key, url, answer)
            continue
        except MetadataTooLargeError as exc:
            raise DistributionNotFoundError(filename + ".metadata", exc.reason) from exc
        except UnreadableArchiveError as exc:
            raise UpstreamProtocolError(
                mask_url(url), f"not a readable wheel: {exc.reason}"
            ) from exc
        if body is None:
            raise DistributionNotFoundError(filename + ".metadata", "wheel has no METADATA")
        return body
    raise UpstreamProtocolError(mask_url(url), f"METADATA not found in {MAX_READS} range reads")


def _store(cache: RangeCache, key: str, url: str, answer: tuple[int, bytes, int] | None) -> None:
    if answer is None:
        raise RangeUnsupportedError(mask_url(url), "the upstream ignores Range requests")
    start, data, total = answer
    cache.add(key, total, start, data)
