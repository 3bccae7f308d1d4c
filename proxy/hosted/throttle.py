"""Login throttling and the password-hashing pool: brute force costs the attacker, not the server.

Failed logins are limited by token buckets, one per client address and one per user name: a
bucket holds `limit` attempts and refills at `limit / window` per second, so `limit` failures
can come at once and then one every `window / limit` seconds. An attempt takes its token
before any password is hashed (so a throttled flood costs no CPU) and a successful attempt gives
it back; nothing else is ever reset. The buckets live in an LRU of bounded size, so a flood of
random user names or addresses cannot grow memory. Hashing runs in its own small thread pool with
a bounded queue, so logins never wait in the executor that serves files.

Refused logins are answered late (the tarpit): a flooding connection waits for each answer, so
it sends about one attempt a second instead of thousands, and the daemon's cost is a sleeping
coroutine rather than a request to parse and answer. The tarpit holds a bounded number at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from proxy.errors import TooManyRequestsError

T = TypeVar("T")
#: float slack, so that waiting exactly the announced Retry-After is always enough
_SLACK = 1e-9
#: niceness of the hashing threads: when the CPU is short, serving files and pages wins
HASH_NICENESS = 10
#: a tarpit hold is stretched by up to this share at random, so held requests end apart
TARPIT_SPREAD = 0.5


def _lower_priority() -> None:
    """Linux gives each thread its own niceness; elsewhere this quietly does nothing."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICENESS)


class Limit(StrEnum):
    """Which limit refused an attempt (the `limit` label of wheelwell_login_throttled_total)."""

    ADDRESS = "address"
    USER = "user"
    BUSY = "busy"  #: the hashing pool's queue is full


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True, slots=True)
class Attempt:
    """The tokens one login attempt holds; given back by `LoginThrottle.succeeded`."""

    address: str | None
    user: str | None


class Buckets:
    """Token buckets by key in an LRU of at most `max_keys`; a forgotten key starts full."""

    def __init__(self, limit: int, window: float, max_keys: int) -> None:
        self.limit = limit
        self.rate = limit / window if window > 0 else math.inf
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _refilled(self, key: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(self.limit, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def wait(self, key: str, now: float) -> float:
        """Seconds until `key` may try again; 0 when it may now."""
        if self.limit <= 0:
            return 0.0
        bucket = self._refilled(key, now)
        if bucket is None or bucket.tokens >= 1 - _SLACK:
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def take(self, key: str, now: float) -> bool:
        """Take one token; True when that emptied the bucket (throttling starts)."""
        if self.limit <= 0:
            return False
        bucket = self._refilled(key, now) or _Bucket(float(self.limit), now)
        bucket.tokens -= 1
        self._buckets[key] = bucket
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return bucket.tokens < 1

    def give_back(self, key: str, now: float) -> None:
        bucket = self._refilled(key, now)
        if bucket is not None:
            bucket.tokens = min(self.limit, bucket.tokens + 1)


def address_key(client: str) -> str:
    """An IPv6 client counts by its /64 (one host usually holds a whole /64), IPv4 as is."""
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client
    if not isinstance(ip, ipaddress.IPv6Address):
        return client
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


class LoginThrottle:
    """Per-address and per-user failure limits; `clock` is public so tests can step time."""

    def __init__(
        self,
        per_address: int,
        per_user: int,
        window: float,
        max_keys: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.addresses = Buckets(per_address, window, max_keys)
        self.users = Buckets(per_user, window, max_keys)
        self.clock = clock

    def begin(self, address: str | None, user: str | None) -> tuple[Attempt, list[Limit]]:
        """Take a token for each key, or raise TooManyRequestsError taking none.

        Returns the attempt and the limits this attempt exhausted (to log throttling once).
        """
        now = self.clock()
        address = None if address is None else address_key(address)
        waits = [
            (self.addresses.wait(address, now) if address is not None else 0.0, Limit.ADDRESS),
            (self.users.wait(user, now) if user is not None else 0.0, Limit.USER),
        ]
        wait, limit = max(waits)
        if wait > 0:
            raise TooManyRequestsError(wait, limit.value)
        exhausted = []
        if address is not None and self.addresses.take(address, now):
            exhausted.append(Limit.ADDRESS)
        if user is not None and self.users.take(user, now):
            exhausted.append(Limit.USER)
        return Attempt(address, user), exhausted

    def succeeded(self, attempt: Attempt) -> None:
        """Give back the attempt's tokens: only failures count, and no other key is touched."""
        now = self.clock()
        if attempt.address is not None:
            self.addresses.give_back(attempt.address, now)
        if attempt.user is not None:
            self.users.give_back(attempt.user, now)


class Tarpit:
    """Holds refused logins before they are answered; at most `capacity` at once, then none.

    A hold lasts 1 to 1 + `spread` times what was asked, at random: a flood's connections,
    refused together, would otherwise all come back in the same instant, and answering a
    burst of hundreds at once stalls the loop for everything else.
    """

    def __init__(
        self,
        capacity: int,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        spread: float = TARPIT_SPREAD,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.capacity = capacity
        self.sleep = sleep
        self.spread = spread
        self.rand = rand
        self.held = 0  #: refusals waiting right now

    async def hold(self, seconds: float) -> float:
        """Wait at least `seconds` (if there is room); returns how long, 0 when it did not."""
        if seconds <= 0 or self.held >= self.capacity:
            return 0.0
        seconds *= 1 + self.spread * self.rand()
        self.held += 1
        try:
            await self.sleep(seconds)
        finally:
            self.held -= 1
        return seconds


class HashingPool:
    """A few threads for scrypt with a bounded queue; when it is full, refuse at once."""

    def __init__(self, workers: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="ww-hash", initializer=_lower_priority
        )
        self._slots = threading.BoundedSemaphore(workers + queue)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """fn(*args) in the pool; TooManyRequestsError when workers and queue are all taken."""
        if not self._slots.acquire(blocking=False):
            raise TooManyRequestsError(1.0, Limit.BUSY.value)
        try:
            future: Future[T] = self._executor.submit(fn, *args)
        except RuntimeError:  # shut down
            self._slots.release()
            raise
        # released when the job ends, even if the waiting request was cancelled meanwhile
        future.add_done_callback(lambda _: self._slots.release())
        return await asyncio.wrap_future(future)

    async def close(self) -> None:
        """Drop queued jobs, wait for running ones (a few tens of ms) off the loop."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: self._executor.shutdown(True, cancel_futures=True))
