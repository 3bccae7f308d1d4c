"""Login throttling through the real app: 429 with Retry-After, per address and per user.

The test client always comes from 127.0.0.1; other addresses are the `client` argument of the
app's own Auth, which is what `identify()` passes from `request.remote`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import tracemalloc
import uuid
from typing import Any

import aiohttp
import pytest

from proxy.errors import TooManyRequestsError, UnauthorizedError
from proxy.hosted.auth import Auth
from proxy.hosted.throttle import Tarpit
from proxy.web import keys
from tests.integration.conftest import ROOT_PASSWORD, Mirror
from tests.polling import eventually

PER_ADDRESS = 10  # the defaults
PER_USER = 30
WINDOW = 60.0
ACCESS = "aiohttp.access"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


def _auth(mirror: Mirror) -> Auth:
    auth: Auth = mirror.client.app[keys.AUTH]
    return auth


async def _login(mirror: Mirror, user: str, password: str) -> tuple[int, dict[str, str], Any]:
    resp = await mirror.client.post(
        "/+login", json={"user": user, "password": password}, headers={"Accept": "application/json"}
    )
    return resp.status, dict(resp.headers), await resp.json()


async def _tokens(mirror: Mirror, user: str, password: str) -> aiohttp.ClientResponse:
    resp = await mirror.client.get("/+tokens", headers=_basic(user, password))
    await resp.read()
    return resp


class Clock:
    """Stepped by hand; it stands still otherwise, so slow hashing never refills a bucket."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(mirror: Mirror) -> Clock:
    stepped = Clock()
    _auth(mirror).throttle.clock = stepped
    return stepped


async def test_wrong_passwords_get_429_with_retry_after(mirror: Mirror) -> None:
    statuses = [(await _login(mirror, "root", f"wrong{n}"))[0] for n in range(PER_ADDRESS)]
    assert statuses == [401] * PER_ADDRESS
    status, headers, body = await _login(mirror, "root", "wrong again")
    assert status == 429
    assert headers["Retry-After"] == str(int(WINDOW / PER_ADDRESS))
    assert "too many failed logins from this address" in body["error"]
    # Basic credentials on any other route are throttled alike, and a right password too
    assert (await _tokens(mirror, "root", ROOT_PASSWORD)).status == 429
    assert (await _login(mirror, "nobody", "x"))[0] == 429


async def test_per_user_across_addresses(mirror: Mirror) -> None:
    auth = _auth(mirror)
    for n in range(PER_USER):
        with pytest.raises(UnauthorizedError):
            await auth.authenticate("root", "guess", client=f"10.1.0.{n}")
    with pytest.raises(TooManyRequestsError) as caught:
        await auth.authenticate("root", ROOT_PASSWORD, client="10.1.1.1")
    assert caught.value.limit == "user"
    resp = await _tokens(mirror, "root", ROOT_PASSWORD)  # the lockout trade-off, documented
    assert resp.status == 429
    assert resp.headers["Retry-After"] == str(int(WINDOW / PER_USER))
    with pytest.raises(UnauthorizedError):  # others are not affected
        await auth.authenticate("alice", "guess", client="10.1.1.1")


async def test_per_address_across_users_and_another_address_still_works(mirror: Mirror) -> None:
    for n in range(PER_ADDRESS):
        assert (await _login(mirror, f"user{n}", "guess"))[0] == 401
    assert (await _login(mirror, "root", ROOT_PASSWORD))[0] == 429  # refused while throttled
    who = await _auth(mirror).authenticate("root", ROOT_PASSWORD, client="10.2.0.1")
    assert who.user == "root"


async def test_success_does_not_reset_other_addresses(mirror: Mirror) -> None:
    auth = _auth(mirror)
    for _ in range(PER_ADDRESS):
        with pytest.raises(UnauthorizedError):
            await auth.authenticate("root", "guess", client="10.3.0.1")
    assert (await auth.authenticate("root", ROOT_PASSWORD, client="10.3.0.2")).user == "root"
    status, _, _ = await _login(mirror, "root", ROOT_PASSWORD)  # from 127.0.0.1: fine
    assert status == 200
    with pytest.raises(TooManyRequestsError):
        await auth.authenticate("root", ROOT_PASSWORD, client="10.3.0.1")


async def test_bad_tokens_count_per_address(mirror: Mirror) -> None:
    for n in range(PER_ADDRESS):
        assert (await _tokens(mirror, "__token__", f"ww_bogus{n}")).status == 401
    assert (await _tokens(mirror, "__token__", "ww_bogus")).status == 429
    assert len(_auth(mirror).throttle.users) == 0  # no user name to count a token against


async def test_window_expiry_with_a_stepped_clock(mirror: Mirror, clock: Clock) -> None:
    for _ in range(PER_ADDRESS):
        assert (await _login(mirror, "root", "guess"))[0] == 401
    assert (await _login(mirror, "root", "guess"))[0] == 429
    clock.now += WINDOW / PER_ADDRESS - 0.01
    assert (await _login(mirror, "root", ROOT_PASSWORD))[0] == 429
    clock.now += 0.01  # one attempt refilled
    assert (await _login(mirror, "root", ROOT_PASSWORD))[0] == 200
    assert (await _login(mirror, "root", "guess"))[0] == 401  # the refilled token, used
    assert (await _login(mirror, "root", "guess"))[0] == 429
    clock.now += WINDOW
    statuses = [(await _login(mirror, "root", "guess"))[0] for _ in range(PER_ADDRESS + 1)]
    assert statuses == [401] * PER_ADDRESS + [429]


def _address(n: int) -> str:
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


async def test_memory_bound_with_100k_random_user_names(mirror: Mirror) -> None:
    """100,000 random names from as many addresses: at most login_tracked of each is kept."""
    throttle = _auth(mirror).throttle
    limit = _auth(mirror).cfg.login_tracked
    for n in range(80_000):
        throttle.begin(_address(n), uuid.uuid4().hex)
    tracemalloc.start()  # only for the last 20,000: it slows every allocation down
    try:
        for n in range(80_000, 90_000):  # by now every kept key was made under tracing
            throttle.begin(_address(n), uuid.uuid4().hex)
        settled, _ = tracemalloc.get_traced_memory()
        for n in range(90_000, 100_000):
            throttle.begin(_address(n), uuid.uuid4().hex)
        grown = tracemalloc.get_traced_memory()[0] - settled
    finally:
        tracemalloc.stop()
    assert (len(throttle.users), len(throttle.addresses)) == (limit, limit)
    assert grown < 200_000  # flat once the LRUs are full: each new key pushes out an old one


async def test_memory_bound_through_authenticate(mirror: Mirror) -> None:
    """The same through whole login attempts (unknown users), with a smaller bound to be quick."""
    app_auth = _auth(mirror)
    cfg = dataclasses.replace(app_auth.cfg, login_tracked=200)
    auth = Auth(app_auth.db, cfg, app_auth.metrics, clock=Clock())
    try:

        async def attempt(n: int) -> None:
            with pytest.raises(UnauthorizedError):
                await auth.authenticate(uuid.uuid4().hex, "x", client=_address(n))

        await asyncio.gather(*(attempt(n) for n in range(2000)))
        assert (len(auth.throttle.users), len(auth.throttle.addresses)) == (200, 200)
    finally:
        await auth.close()


async def test_a_flood_is_refused_without_hashing_beyond_the_pool(mirror: Mirror) -> None:
    """200 concurrent wrong passwords from 200 addresses: at most the pool's size are hashed."""
    auth = _auth(mirror)

    async def attempt(n: int) -> str:
        try:
            await auth.authenticate("root", "guess", client=f"10.4.{n >> 8}.{n & 255}")
        except UnauthorizedError:
            return "401"
        except TooManyRequestsError as exc:
            return exc.limit
        return "200"

    outcomes = await asyncio.gather(*(attempt(n) for n in range(200)))
    hashed = outcomes.count("401")
    assert 1 <= hashed <= auth.cfg.hash_workers + auth.cfg.hash_queue
    assert outcomes.count("busy") == PER_USER - hashed
    assert outcomes.count("user") == 200 - PER_USER
    # busy refusals gave their tokens back: the user's budget holds only the real failures
    assert auth.throttle.users.wait("root", auth.throttle.clock()) == 0


async def test_failed_logins_are_logged_once_and_counted(
    mirror: Mirror, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await _login(mirror, "root", "s3cret-guess")
    ours = [(r.name, r.levelname, r.getMessage()) for r in caplog.records if r.name != ACCESS]
    assert ours == [  # the security line, then the request line: one of each, nothing twice
        ("proxy.hosted.auth", "WARNING", "failed login for user 'root' from 127.0.0.1: password"),
        ("proxy.web.middleware", "INFO", "POST /+login -> 401: invalid credentials"),
    ]
    await _login(mirror, "ghost", "s3cret-guess")
    await _tokens(mirror, "__token__", "ww_s3cret-token")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "failed login for user 'root' from 127.0.0.1: password",
        "failed login for user 'ghost' from 127.0.0.1: unknown-user",
        "failed login for user '__token__' from 127.0.0.1: token",
    ]
    assert not any("s3cret" in r.getMessage() for r in caplog.records)
    for n in range(PER_ADDRESS):
        await _login(mirror, "root", f"wrong{n}")
    await _login(mirror, "root", "wrong")
    throttled = [r.getMessage() for r in caplog.records if "throttled" in r.getMessage()]
    assert throttled == ["login throttled for address 127.0.0.1: too many failed logins"]
    text = await (await mirror.client.get("/+metrics")).text()
    assert 'wheelwell_login_failures_total{reason="password"} 8.0' in text
    assert 'wheelwell_login_failures_total{reason="unknown-user"} 1.0' in text
    assert 'wheelwell_login_failures_total{reason="token"} 1.0' in text
    assert 'wheelwell_login_throttled_total{limit="address"} 4.0' in text


# ---- the tarpit: refusals answered late, right credentials never -------------------------

FAILURE_DELAY = 0.5
THROTTLED_DELAY = 1.0


class Sleeps:
    """Records the tarpit's sleeps instead of sleeping; holds them until `gate`, when given."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.calls: list[float] = []
        self.gate = gate

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.gate is not None:
            await self.gate.wait()


def _tarpit(mirror: Mirror, sleeps: Sleeps, size: int = 1000) -> Auth:
    """The app's Auth with the default delays (test configs turn them off) and `sleeps`."""
    auth = _auth(mirror)
    auth.cfg = dataclasses.replace(
        auth.cfg, login_failure_delay=FAILURE_DELAY, login_throttled_delay=THROTTLED_DELAY
    )
    auth.tarpit = Tarpit(size, sleeps, spread=0.0)  # exact holds, to compare
    return auth


async def test_a_failed_login_is_padded_alike_for_unknown_users_and_wrong_passwords(
    mirror: Mirror,
) -> None:
    sleeps = Sleeps()
    _tarpit(mirror, sleeps)
    assert (await _login(mirror, "root", "guess"))[0] == 401
    assert (await _login(mirror, "ghost", "guess"))[0] == 401
    assert (await _tokens(mirror, "__token__", "ww_bogus")).status == 401
    # the stepped clock stands still, so each is padded by the whole delay
    assert sleeps.calls == [FAILURE_DELAY] * 3


async def test_a_throttled_login_waits_and_its_retry_after_counts_from_the_answer(
    mirror: Mirror,
) -> None:
    sleeps = Sleeps()
    _tarpit(mirror, sleeps)
    for n in range(PER_ADDRESS):
        assert (await _login(mirror, "root", f"wrong{n}"))[0] == 401
    sleeps.calls.clear()
    status, headers, _ = await _login(mirror, "root", "wrong again")
    assert status == 429
    assert sleeps.calls == [THROTTLED_DELAY]  # min(6 s to wait, the 1 s delay)
    assert headers["Retry-After"] == str(int(WINDOW / PER_ADDRESS - THROTTLED_DELAY))
    assert (await _tokens(mirror, "root", ROOT_PASSWORD)).status == 429  # held like the rest
    assert sleeps.calls == [THROTTLED_DELAY] * 2


async def test_a_short_retry_after_is_held_only_that_long(mirror: Mirror) -> None:
    sleeps = Sleeps()
    auth = _tarpit(mirror, sleeps)
    auth.cfg = dataclasses.replace(auth.cfg, login_throttled_delay=5.0)  # above the 2 s wait
    for n in range(PER_USER):
        with pytest.raises(UnauthorizedError):
            await auth.authenticate("root", "guess", client=f"10.5.0.{n}")
    sleeps.calls.clear()
    with pytest.raises(TooManyRequestsError) as caught:
        await auth.authenticate("root", "guess", client="10.5.1.1")
    assert sleeps.calls == [pytest.approx(WINDOW / PER_USER)]
    assert caught.value.limit == "user"
    assert caught.value.retry_seconds == 1  # never 0, although the wait is over


async def test_the_right_password_and_a_valid_token_are_never_held(mirror: Mirror) -> None:
    sleeps = Sleeps()
    auth = _tarpit(mirror, sleeps)
    for n in range(PER_ADDRESS - 1):  # failures before, but not throttled
        assert (await _login(mirror, "root", f"wrong{n}"))[0] == 401
    sleeps.calls.clear()
    status, _, body = await _login(mirror, "root", ROOT_PASSWORD)
    assert status == 200
    assert (await _tokens(mirror, "root", ROOT_PASSWORD)).status == 200
    assert (await _tokens(mirror, "__token__", body["token"])).status == 200
    _, scoped = await auth.create_token("root", "root/public", None, "ci")
    assert (await auth.authenticate("__token__", scoped, client="10.6.0.1")).user == "root"
    assert sleeps.calls == []


async def test_the_tarpit_holds_a_bounded_number_and_answers_the_rest_at_once(
    mirror: Mirror,
) -> None:
    """200 refusals at once into a pit of 20: 20 are held, 180 answered without waiting."""
    gate = asyncio.Event()
    sleeps = Sleeps(gate)
    auth = _tarpit(mirror, sleeps, size=20)

    async def attempt(n: int) -> str:
        try:
            await auth.authenticate(f"nobody{n}", "guess", client=_address(70_000 + n))
        except UnauthorizedError:
            return "401"
        return "200"

    pending = [asyncio.ensure_future(attempt(n)) for n in range(200)]
    await eventually(  # unknown users: a database read each, then answered
        lambda: sum(task.done() for task in pending) >= 180,
        timeout=30,
        message="the refusals beyond the tarpit's size to be answered",
    )
    assert auth.tarpit.held == 20
    assert len(sleeps.calls) == 20
    assert sum(task.done() for task in pending) == 180
    gate.set()
    assert await asyncio.gather(*pending) == ["401"] * 200
    assert auth.tarpit.held == 0
