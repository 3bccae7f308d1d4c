"""The test suite's one way of waiting: poll a condition, fail naming what was awaited."""

from __future__ import annotations

import itertools

import pytest

from tests.polling import eventually, wait_until


def test_wait_until_returns_the_first_truthy_value() -> None:
    counter = itertools.count()
    assert wait_until(lambda: next(counter) >= 3 and "done", timeout=5, interval=0, message="x")


def test_wait_until_fails_naming_what_it_awaited() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"timed out after 0\.01s waiting for the moon"):
        wait_until(lambda: False, timeout=0.01, interval=0.001, message="the moon")


def test_wait_until_message_is_built_at_failure_time() -> None:
    log: list[str] = []

    def predicate() -> bool:
        log.append("polled")
        return False

    with pytest.raises(pytest.fail.Exception, match=r"waiting for .*polled"):
        wait_until(predicate, timeout=0.01, interval=0.001, message=lambda: " ".join(log))


async def test_eventually_takes_sync_and_async_predicates() -> None:
    counter = itertools.count()

    async def ready() -> int:
        return max(next(counter) - 2, 0)

    assert await eventually(ready, timeout=5, interval=0, message="ready") == 1
    assert await eventually(lambda: [1], timeout=5, message="a list") == [1]


async def test_eventually_fails_naming_what_it_awaited() -> None:
    async def never() -> bool:
        return False

    with pytest.raises(pytest.fail.Exception, match="waiting for the tide"):
        await eventually(never, timeout=0.01, interval=0.001, message="the tide")
