"""HTTP byte ranges (RFC 9110 14.1): the one `bytes=` range that file handlers answer."""

from __future__ import annotations

import re
from dataclasses import dataclass

_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)\Z", re.ASCII)


@dataclass(frozen=True, slots=True)
class ByteRange:
    """One range of a Range header: `start`-`end` inclusive, or the last `suffix` bytes."""

    start: int | None
    end: int | None
    suffix: int | None = None

    def resolve(self, total: int) -> tuple[int, int] | None:
        """(first, last) inclusive for a file of `total` bytes; None when not satisfiable."""
        if self.suffix is not None:
            if self.suffix == 0 or total == 0:
                return None
            return max(0, total - self.suffix), total - 1
        assert self.start is not None  # noqa: S101 - parse_range sets one of the two
        if self.start >= total:
            return None
        last = total - 1 if self.end is None else min(self.end, total - 1)
        return self.start, last

    def header(self) -> str:
        if self.suffix is not None:
            return f"bytes=-{self.suffix}"
        return f"bytes={self.start}-{'' if self.end is None else self.end}"


def parse_range(header: str) -> ByteRange | None:
    """A single `bytes=` range; None for anything else (several ranges, other units, junk)."""
    match = _RANGE_RE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        return ByteRange(None, None, int(last)) if last else None
    start = int(first)
    end = int(last) if last else None
    if end is not None and end < start:
        return None
    return ByteRange(start, end)
