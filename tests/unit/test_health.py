"""HealthBook on a hand-driven clock: rests per origin and scope, one probe a second, recovery."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from proxy.config import UpstreamConfig
from proxy.errors import UpstreamOfflineError, UpstreamStatusError, UpstreamUnavailableError
from proxy.metrics import Metrics
from proxy.mirror.health import HealthBook, origin_of

DEAD = "http://10.0.0.1:8080/simple/x/"
OTHER = "https://index.example/simple/x/"


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def book(clock: Clock, **overrides: float) -> HealthBook:
    settings = {"failure_threshold": 2, "offline_retry": 30.0, "probe_interval": 1.0}
    settings.update(overrides)
    return HealthBook(UpstreamConfig(**settings), Metrics(), clock)  # type: ignore[arg-type]


def fail(health: HealthBook, url: str, scope: str = "root") -> None:
    ticket = health.admit(url, scope, may_probe=True)
    health.failed(ticket, UpstreamUnavailableError(url, "cannot connect"))
    health.done(ticket)


def available(health: HealthBook, url: str, scope: str) -> float | None:
    labels = {"upstream": origin_of(url), "scope": scope}
    return health.metrics.registry.get_sample_value("wheelwell_upstream_available", labels)


def test_origin_drops_credentials_and_path() -> None:
    assert origin_of("https://u:secret@h.example:8443/simple/x/") == "https://h.example:8443"


def test_one_dead_upstream_rests_only_itself_and_only_in_its_scope() -> None:
    clock = Clock()
    health = book(clock)
    fail(health, DEAD, "user")
    fail(health, DEAD, "user")
    with pytest.raises(UpstreamOfflineError):
        health.admit(DEAD, "user", may_probe=False)
    assert not health.admit(OTHER, "user", may_probe=False).probe
    assert not health.admit(DEAD, "root", may_probe=False).probe  # root's own view of it
    assert available(health, DEAD, "user") == 0
    assert health.metrics.registry.get_sample_value("wheelwell_upstream_offline") == 0


def test_while_resting_one_probe_a_second_and_a_success_ends_the_rest() -> None:
    clock = Clock()
    health = book(clock)
    fail(health, DEAD)
    fail(health, DEAD)
    probe = health.admit(DEAD, "root", may_probe=True)
    assert probe.probe and not health.usable(probe)  # a probe is never retried
    with pytest.raises(UpstreamOfflineError):  # one probe in flight
        health.admit(DEAD, "root", may_probe=True)
    health.failed(probe, UpstreamUnavailableError(DEAD, "timed out"))
    health.done(probe)
    with pytest.raises(UpstreamOfflineError):  # and not again within the interval
        health.admit(DEAD, "root", may_probe=True)
    clock.now += 1.0
    probe = health.admit(DEAD, "root", may_probe=True)
    assert probe.probe
    health.succeeded(probe)
    health.done(probe)
    assert not health.admit(DEAD, "root", may_probe=False).probe  # back in service
    assert available(health, DEAD, "root") == 1


def test_cached_answers_never_probe() -> None:
    clock = Clock()
    health = book(clock)
    fail(health, DEAD)
    fail(health, DEAD)
    clock.now += 5.0
    with pytest.raises(UpstreamOfflineError):
        health.admit(DEAD, "root", may_probe=False)


def test_an_answered_4xx_is_not_a_failure() -> None:
    health = book(Clock(), failure_threshold=1)
    ticket = health.admit(DEAD, "root", may_probe=True)
    health.failed(ticket, UpstreamStatusError(DEAD, 403))
    assert not health.admit(DEAD, "root", may_probe=False).probe


def test_users_last_errors_stay_out_of_the_report() -> None:
    health = book(Clock())
    fail(health, DEAD, "user")
    fail(health, OTHER, "root")
    rows = {row["scope"]: row for row in health.report()}
    assert "last_error" not in rows["user"]
    assert rows["root"]["last_error"] is not None


def test_gauges_follow_the_clock_on_an_idle_instance() -> None:
    """A rest that ends with no request after it: the gauges say so at the next scrape."""
    clock = Clock()
    health = book(clock)
    fail(health, DEAD)
    fail(health, DEAD)
    offline = health.metrics.registry.get_sample_value
    assert offline("wheelwell_upstream_offline") == 1
    assert available(health, DEAD, "root") == 0
    clock.now += 31.0  # offline_retry is over; nothing asked the upstream since
    assert offline("wheelwell_upstream_offline") == 0
    assert available(health, DEAD, "root") == 1
