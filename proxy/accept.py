"""The one Accept negotiator: parse a header into media ranges, choose the best of our offers.

Pure. RFC 9110 12.5.1: an offer's q-value is that of the most specific range matching it (exact
type, then `type/*`, then `*/*`); q=0 means "not acceptable"; a malformed q counts as 0. Among
offers with the same q the server's order wins, so `*/*` (which an absent or empty header means)
is a question of offer order, answered once per use:

- simple API (`simple_api.negotiate`): legacy `text/html` first, as PEP 691 suggests, since every
  installer understands it; pip and uv name the JSON type with a higher q and get JSON.
- UI/API URLs (`web.ui.wants_html`): JSON first, so curl and `Accept: */*` get JSON and only a
  client naming `text/html` (a browser) above JSON gets a page.
- error bodies (`web.middleware`): plain text first, so curl and browsers get text and clients
  that name a JSON type above HTML (pip, uv, the UI's JSON clients) get a JSON error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

_Offer = TypeVar("_Offer", bound=str)


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One `type/subtype;q=` range of an Accept header, lower-cased; other parameters dropped."""

    type: str
    subtype: str
    q: float = 1.0

    def specificity(self, media_type: str) -> int | None:
        """2 for an exact match, 1 for `type/*`, 0 for `*/*`, None if the range misses it."""
        main, _, sub = media_type.lower().partition("/")
        if self.type == "*":
            return 0
        if self.type != main:
            return None
        if self.subtype == "*":
            return 1
        return 2 if self.subtype == sub else None


def _parse_q(value: str) -> float:
    try:
        q = float(value)
    except ValueError:
        return 0.0
    return 0.0 if math.isnan(q) else min(max(q, 0.0), 1.0)


def parse_accept(
    header: str | None, aliases: Mapping[str, str] | None = None
) -> tuple[MediaRange, ...]:
    """The header's media ranges in order; an absent or empty header is `*/*` (RFC 9110)."""
    ranges: list[MediaRange] = []
    for part in (header or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        if aliases:
            media = aliases.get(media, media)
        main, slash, sub = media.partition("/")
        if not slash or not main or not sub or (main == "*" and sub != "*"):
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                q = _parse_q(value.strip())
                break
        ranges.append(MediaRange(main, sub, q))
    return tuple(ranges) if ranges else (MediaRange("*", "*"),)


def quality(ranges: Iterable[MediaRange], media_type: str) -> float:
    """The q-value of the most specific range matching media_type; 0 if none matches."""
    best_specificity, best_q = -1, 0.0
    for media_range in ranges:
        specificity = media_range.specificity(media_type)
        if specificity is not None and specificity > best_specificity:
            best_specificity, best_q = specificity, media_range.q
    return best_q


def choose(
    accept: str | None,
    offers: Iterable[_Offer],
    *,
    aliases: Mapping[str, str] | None = None,
) -> _Offer | None:
    """The offer with the highest q, the earliest offer on ties; None when none is acceptable."""
    ranges = parse_accept(accept, aliases)
    best: _Offer | None = None
    best_q = 0.0
    for offer in offers:
        q = quality(ranges, offer)
        if q > best_q:
            best, best_q = offer, q
    return best
