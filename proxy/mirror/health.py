"""Health per upstream origin: failures in a row, rest periods, and probes while resting.

One dead upstream (a user's mirror, say) never rests another. While an upstream rests, requests
that have no cached answer may probe it, one at a time and at most every `probe_interval`: the
first success ends the rest, so service resumes within about a second of the upstream's return.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from proxy.config import UpstreamConfig
from proxy.errors import UpstreamError, UpstreamOfflineError, UpstreamStatusError
from proxy.metrics import Metrics
from proxy.model import mask_url

log = logging.getLogger(__name__)

#: statuses that mean the upstream is in trouble (others are answers)
RETRY_STATUSES = frozenset({500, 502, 503, 504, 429})
#: origins remembered; the least recently used beyond this are forgotten (a page may name many)
MAX_ORIGINS = 256


@functools.lru_cache(maxsize=256)
def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, credentials dropped: the unit of health."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


@dataclass(slots=True)
class Health:
    """The mutable state of one upstream origin, for one scope (root's or users' mirrors)."""

    origin: str
    scope: str  #: "root" or "user"
    failures: int = 0  #: failures in a row
    resting_until: float = 0.0  #: monotonic time before which only probes ask it
    next_probe_at: float = 0.0
    probing: bool = False  #: a probe is in flight
    last_error: str | None = None
    last_error_at: float | None = None  #: wall-clock time

    def resting(self, now: float) -> bool:
        return now < self.resting_until


@dataclass(frozen=True, slots=True)
class Ticket:
    """Leave to ask an upstream; `probe` while it rests (one attempt, no retries)."""

    health: Health
    probe: bool


class HealthBook:
    """Every upstream's health; admits requests, records outcomes, exports gauges."""

    def __init__(
        self, cfg: UpstreamConfig, metrics: Metrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.clock = clock
        self._entries: OrderedDict[tuple[str, str], Health] = OrderedDict()
        # read at scrape time: a rest that ends while nothing asks shows as over all the same
        metrics.upstream_offline.set_function(
            lambda: 1 if cfg.offline or self.any_resting("root") else 0
        )

    def entry(self, url: str, scope: str) -> Health:
        key = (scope, origin_of(url))
        health = self._entries.get(key)
        if health is None:
            health = self._entries[key] = Health(key[1], scope)
            self.metrics.upstream_available.labels(_label(health.origin), scope).set_function(
                lambda: 0 if health.resting(self.clock()) else 1
            )
            while len(self._entries) > MAX_ORIGINS:
                _, old = self._entries.popitem(last=False)
                self._gauge_remove(old)
        self._entries.move_to_end(key)
        return health

    def entries(self) -> list[Health]:
        return list(self._entries.values())

    def any_resting(self, scope: str) -> bool:
        now = self.clock()
        return any(h.resting(now) for h in self._entries.values() if h.scope == scope)

    def admit(self, url: str, scope: str, *, may_probe: bool) -> Ticket:
        """A ticket to ask `url`, or UpstreamOfflineError (offline mode, or resting)."""
        if self.cfg.offline:
            raise UpstreamOfflineError(mask_url(url), "offline mode, and this is not cached")
        health = self.entry(url, scope)
        now = self.clock()
        if not health.resting(now):
            return Ticket(health, probe=False)
        if may_probe and not health.probing and now >= health.next_probe_at:
            health.probing = True
            health.next_probe_at = now + self.cfg.probe_interval
            return Ticket(health, probe=True)
        raise UpstreamOfflineError(
            mask_url(url),
            f"failing ({health.last_error}); resting for {health.resting_until - now:.0f}s "
            "more, and this is not cached",
        )

    def usable(self, ticket: Ticket) -> bool:
        """Whether a failed attempt may be retried: not a probe, and not resting meanwhile."""
        return not ticket.probe and not ticket.health.resting(self.clock())

    def done(self, ticket: Ticket) -> None:
        """The ticket's request ended, however: the next probe may start."""
        if ticket.probe:
            ticket.health.probing = False

    def succeeded(self, ticket: Ticket) -> None:
        health = ticket.health
        if health.resting_until or health.failures >= self.cfg.failure_threshold:
            log.warning("upstream %s answers again; its rest is over", health.origin)
        health.failures = 0
        health.resting_until = 0.0

    def failed(self, ticket: Ticket, exc: UpstreamError) -> None:
        health = ticket.health
        health.last_error = str(exc)
        health.last_error_at = time.time()
        if isinstance(exc, UpstreamStatusError) and exc.status not in RETRY_STATUSES:
            return  # the upstream answered; it is not down
        health.failures += 1
        if ticket.probe or health.failures >= self.cfg.failure_threshold:
            starting = not health.resting(self.clock())
            health.resting_until = self.clock() + self.cfg.offline_retry
            if starting and not ticket.probe:
                log.warning(
                    "upstream %s failed %d times in a row; probing it at most every %.0fs "
                    "for %.0fs: %s",
                    health.origin,
                    health.failures,
                    self.cfg.probe_interval,
                    self.cfg.offline_retry,
                    exc,
                )

    def _gauge_remove(self, health: Health) -> None:
        with contextlib.suppress(KeyError):
            self.metrics.upstream_available.remove(_label(health.origin), health.scope)

    def report(self) -> list[dict[str, Any]]:
        """For /+status: a user upstream's last error stays in the log, like its callers' errors."""
        now = self.clock()
        rows: list[dict[str, Any]] = []
        for health in self._entries.values():
            row: dict[str, Any] = {
                "upstream": _label(health.origin),
                "scope": health.scope,
                "available": not health.resting(now) and not self.cfg.offline,
                "failures": health.failures,
                "resting_seconds": round(max(0.0, health.resting_until - now), 1),
            }
            if health.scope == "root":
                row["last_error"] = health.last_error
                row["last_error_at"] = health.last_error_at
            rows.append(row)
        return rows


def _label(origin: str) -> str:
    return mask_url(origin)
