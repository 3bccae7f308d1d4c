"""Waiting for a condition by polling it, never by sleeping a fixed time; one place for both."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import pytest

T = TypeVar("T")

#: what was awaited, or a function that says it at failure time (e.g. with the daemon's log)
Message = str | Callable[[], str]


def _failure(message: Message, timeout: float) -> str:
    text = message() if callable(message) else message
    return f"timed out after {timeout:g}s waiting for {text}"


def wait_until(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.05, message: Message
) -> T:
    """Call predicate until it returns something truthy and return that; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(_failure(message, timeout))
        time.sleep(interval)


@overload
async def eventually(
    predicate: Callable[[], Awaitable[T]],
    *,
    timeout: float,  # noqa: ASYNC109 - see below
    interval: float = ...,
    message: Message,
) -> T: ...


@overload
async def eventually(
    predicate: Callable[[], T],
    *,
    timeout: float,  # noqa: ASYNC109 - see below
    interval: float = ...,
    message: Message,
) -> T: ...


async def eventually(
    predicate: Callable[[], Any],
    *,
    timeout: float,  # noqa: ASYNC109 - it bounds the polling and is named in the failure
    interval: float = 0.05,
    message: Message,
) -> Any:
    """The async wait_until: predicate may be sync or async; the loop keeps running meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() >= deadline:
            pytest.fail(_failure(message, timeout))
        await asyncio.sleep(interval)
