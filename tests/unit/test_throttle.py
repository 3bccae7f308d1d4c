"""Login throttling on its own: token buckets under a stepped clock, the LRU bound, the pool."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from proxy.config import parse_config
from proxy.errors import ConfigError, TooManyRequestsError
from proxy.hosted.throttle import (
    Buckets,
    HashingPool,
    Limit,
    LoginThrottle,
    Tarpit,
    address_key,
)

WINDOW = 60.0


class Clock:
    """A clock tests step by hand, so window expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _throttle(clock: Clock, per_address: int = 10, per_user: int = 30) -> LoginThrottle:
    return LoginThrottle(per_address, per_user, WINDOW, max_keys=1000, clock=clock)


def _fail(throttle: LoginThrottle, address: str | None, user: str | None, times: int) -> None:
    for _ in range(times):
        throttle.begin(address, user)


def test_limit_failures_then_retry_after_the_refill_interval() -> None:
    clock = Clock()
    throttle = _throttle(clock)
    _fail(throttle, "10.0.0.1", "alice", 10)
    with pytest.raises(TooManyRequestsError) as caught:
        throttle.begin("10.0.0.1", "alice")
    assert caught.value.limit == Limit.ADDRESS
    assert caught.value.retry_after == pytest.approx(WINDOW / 10)
    assert caught.value.retry_seconds == 6
    clock.now += WINDOW / 10  # one attempt's worth refilled
    throttle.begin("10.0.0.1", "alice")
    with pytest.raises(TooManyRequestsError):
        throttle.begin("10.0.0.1", "alice")
    clock.now += WINDOW  # a whole window: the full budget again, not more
    _fail(throttle, "10.0.0.1", "alice", 10)
    with pytest.raises(TooManyRequestsError):
        throttle.begin("10.0.0.1", "alice")


def test_per_user_across_addresses_and_per_address_across_users() -> None:
    throttle = _throttle(Clock())
    for n in range(30):
        throttle.begin(f"10.0.1.{n}", "alice")
    with pytest.raises(TooManyRequestsError) as caught:
        throttle.begin("10.0.2.1", "alice")
    assert caught.value.limit == Limit.USER
    throttle.begin("10.0.2.1", "bob")  # the address itself is fine
    for n in range(9):
        throttle.begin("10.0.2.1", f"user{n}")
    with pytest.raises(TooManyRequestsError) as caught:
        throttle.begin("10.0.2.1", "carol")
    assert caught.value.limit == Limit.ADDRESS


def test_a_refused_attempt_takes_no_token() -> None:
    """Being throttled on the address does not also use up the user's budget."""
    throttle = _throttle(Clock(), per_address=1, per_user=2)
    throttle.begin("10.0.0.1", "alice")
    for _ in range(5):
        with pytest.raises(TooManyRequestsError):
            throttle.begin("10.0.0.1", "alice")
    throttle.begin("10.0.0.2", "alice")  # alice's second and last token
    with pytest.raises(TooManyRequestsError):
        throttle.begin("10.0.0.3", "alice")


def test_success_gives_back_only_its_own_tokens() -> None:
    throttle = _throttle(Clock(), per_address=2)
    throttle.begin("10.0.0.1", "mallory")
    throttle.begin("10.0.0.2", "alice")
    attempt, _ = throttle.begin("10.0.0.2", "alice")
    throttle.succeeded(attempt)  # the right password: that attempt does not count ...
    throttle.begin("10.0.0.2", "alice")
    with pytest.raises(TooManyRequestsError):  # ... but the failure before it still does
        throttle.begin("10.0.0.2", "alice")
    throttle.begin("10.0.0.1", "mallory")  # and another address is untouched either way
    with pytest.raises(TooManyRequestsError):
        throttle.begin("10.0.0.1", "mallory")


def test_exhausting_a_limit_is_reported_once() -> None:
    throttle = _throttle(Clock(), per_address=3, per_user=30)
    reported = [throttle.begin("10.0.0.1", f"u{n}")[1] for n in range(3)]
    assert reported == [[], [], [Limit.ADDRESS]]


def test_tokens_count_per_address_only() -> None:
    throttle = _throttle(Clock(), per_user=1)
    for _ in range(5):
        throttle.begin(f"10.0.0.{_}", None)
    assert len(throttle.users) == 0


@pytest.mark.parametrize(
    ("client", "key"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_address_keys(client: str, key: str) -> None:
    assert address_key(client) == key


def test_an_ipv6_host_cannot_hop_addresses_within_its_64() -> None:
    throttle = _throttle(Clock(), per_address=2)
    throttle.begin("2001:db8::1", "a")
    throttle.begin("2001:db8::2", "b")
    with pytest.raises(TooManyRequestsError):
        throttle.begin("2001:db8::3", "c")


def test_zero_disables_a_limit() -> None:
    throttle = _throttle(Clock(), per_address=0, per_user=0)
    _fail(throttle, "10.0.0.1", "alice", 1000)
    assert len(throttle.addresses) == len(throttle.users) == 0


def test_memory_is_bounded_by_the_lru() -> None:
    buckets = Buckets(limit=10, window=WINDOW, max_keys=5000)
    for _ in range(100_000):
        buckets.take(uuid.uuid4().hex, 1000.0)
    assert len(buckets) == 5000


def test_the_least_recent_key_is_forgotten_first() -> None:
    buckets = Buckets(limit=1, window=WINDOW, max_keys=2)
    buckets.take("old", 0.0)
    buckets.take("recent", 0.0)
    buckets.take("recent", 0.0)
    buckets.take("new", 0.0)
    assert buckets.wait("old", 0.0) == 0  # forgotten: starts afresh
    assert buckets.wait("recent", 0.0) > 0


async def test_pool_refuses_at_once_when_its_queue_is_full() -> None:
    pool = HashingPool(workers=1, queue=1)
    release = threading.Event()
    running = [asyncio.ensure_future(pool.run(release.wait, 10.0)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(TooManyRequestsError) as caught:
        await pool.run(sum, [1, 2])
    assert caught.value.limit == Limit.BUSY
    release.set()
    assert await asyncio.gather(*running) == [True, True]
    assert await pool.run(sum, [1, 2]) == 3  # the slots are free again
    await pool.close()


async def test_a_cancelled_waiter_keeps_its_slot_until_the_job_ends() -> None:
    """The thread still runs the job, so its slot must not be handed out early."""
    pool = HashingPool(workers=1, queue=0)
    release = threading.Event()
    waiter = asyncio.ensure_future(pool.run(release.wait, 10.0))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(TooManyRequestsError):
        await pool.run(sum, [1])
    release.set()
    await pool.close()


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("auth: {login_failures_per_address: -1}", "auth.login_failures_per_address"),
        ("auth: {login_failures_per_user: -3}", "auth.login_failures_per_user"),
        ("auth: {login_window: 0s}", "auth.login_window"),
        ("auth: {login_tracked: 0}", "auth.login_tracked"),
        ("auth: {hash_workers: 0}", "auth.hash_workers"),
        ("auth: {hash_queue: -1}", "auth.hash_queue"),
        ("auth: {login_throttled_delay: -1s}", "auth.login_throttled_delay"),
        ("auth: {login_failure_delay: -0.5}", "auth.login_failure_delay"),
        ("auth: {login_failure_delay: 2h}", "auth.login_failure_delay"),
        ("auth: {login_tarpit_size: -1}", "auth.login_tarpit_size"),
    ],
)
def test_bad_limits_name_the_key_and_file(yaml_text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml_text, "w.yaml")
    assert key in str(caught.value)
    assert "w.yaml" in str(caught.value)


def test_limits_load_from_yaml() -> None:
    cfg = parse_config("auth: {login_failures_per_address: 3, login_window: 2m}", "w.yaml")
    assert (cfg.auth.login_failures_per_address, cfg.auth.login_window) == (3, 120.0)
    assert cfg.auth.login_failures_per_user == 30


def test_tarpit_defaults_and_zero_from_yaml() -> None:
    defaults = parse_config("", "w.yaml").auth
    assert (defaults.login_throttled_delay, defaults.login_failure_delay) == (1.0, 0.5)
    assert defaults.login_tarpit_size == 1000
    off = parse_config("auth: {login_throttled_delay: 0, login_failure_delay: 0s}", "w.yaml")
    assert (off.auth.login_throttled_delay, off.auth.login_failure_delay) == (0.0, 0.0)


class Sleeps:
    """Records what the tarpit sleeps; holds every sleeper until `gate` is set, if there is one."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.calls: list[float] = []
        self.gate = gate

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.gate is not None:
            await self.gate.wait()


async def test_tarpit_holds_for_the_time_asked() -> None:
    sleeps = Sleeps()
    tarpit = Tarpit(10, sleeps, spread=0.0)
    assert await tarpit.hold(0.5) == 0.5
    assert await tarpit.hold(0.0) == 0.0  # nothing to wait: no sleep at all
    assert await tarpit.hold(-0.2) == 0.0  # the check alone took longer than the padding
    assert sleeps.calls == [0.5]
    assert tarpit.held == 0


async def test_tarpit_holds_at_most_its_capacity_and_answers_the_rest_at_once() -> None:
    gate = asyncio.Event()
    sleeps = Sleeps(gate)
    tarpit = Tarpit(5, sleeps, spread=0.0)
    held = [asyncio.ensure_future(tarpit.hold(1.0)) for _ in range(5)]
    await asyncio.sleep(0)
    assert tarpit.held == 5
    # the pit is full: more refusals are not held (no sleep, no growth), they answer now
    assert [await tarpit.hold(1.0) for _ in range(100)] == [0.0] * 100
    assert len(sleeps.calls) == 5
    gate.set()
    assert await asyncio.gather(*held) == [1.0] * 5
    assert tarpit.held == 0
    assert await tarpit.hold(1.0) == 1.0  # room again


async def test_a_cancelled_hold_leaves_the_pit() -> None:
    tarpit = Tarpit(1, Sleeps(asyncio.Event()))
    waiter = asyncio.ensure_future(tarpit.hold(1.0))
    await asyncio.sleep(0)
    assert tarpit.held == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert tarpit.held == 0


async def test_a_zero_size_tarpit_holds_nothing() -> None:
    sleeps = Sleeps()
    assert await Tarpit(0, sleeps).hold(1.0) == 0.0
    assert sleeps.calls == []


async def test_holds_that_begin_together_end_apart() -> None:
    """Each hold is stretched by a random share of up to `spread`: no burst of answers."""
    sleeps = Sleeps()
    draws = iter([0.0, 0.5, 1.0])
    tarpit = Tarpit(10, sleeps, spread=0.5, rand=lambda: next(draws))
    assert [await tarpit.hold(1.0) for _ in range(3)] == [1.0, 1.25, 1.5]
    assert sleeps.calls == [1.0, 1.25, 1.5]  # never shorter than asked
