"""Background-task mechanisms written once: single flight, write-behind, a supervised task set.

Stdlib only (layer 0), so storage, mirror and hosted code share one tested implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")


async def _await(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a finished task's exception as seen, so nobody awaiting it is no error."""
    if not task.cancelled():
        task.exception()


class Background:
    """Keeps fire-and-forget tasks referenced (RUF006) and awaits or cancels them at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self, grace: float = 0.0) -> None:
        """Let the tasks finish within `grace` seconds, then cancel and await the rest."""
        if not self._tasks:
            return
        pending = set(self._tasks)
        if grace > 0:
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


class SingleFlight(Generic[K, V]):
    """One task per key at a time; every caller for the key awaits that task's result."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: dict[K, asyncio.Task[V]] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def get(self, key: K) -> asyncio.Task[V] | None:
        return self._tasks.get(key)

    async def run(self, key: K, factory: Callable[[], Awaitable[V]]) -> V:
        """Join the flight for `key`, starting it with `factory` if none runs.

        A caller that is cancelled stops waiting; the shared task goes on for the others. The
        entry is dropped when the task ends, so the next call after an error tries again.
        """
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.create_task(_await(factory), name=f"{self.name} {key}")
            self._tasks[key] = task
            task.add_done_callback(functools.partial(self._done, key))
        return await asyncio.shield(task)

    def _done(self, key: K, task: asyncio.Task[V]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        _retrieve(task)

    async def close(self) -> None:
        """Cancel every flight still running and wait for them to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class WriteBehind(Generic[K, V]):
    """The latest value per key, written in batches by one supervised task behind the caller.

    `flush` gets a batch; if it raises, the error is logged once with the batch size, the batch
    is dropped (or requeued with `retry`, for the next put or close), and the writer goes on.
    """

    def __init__(
        self,
        name: str,
        flush: Callable[[dict[K, V]], Awaitable[None]],
        *,
        delay: float = 0.0,
        retry: bool = False,
    ) -> None:
        self.name = name
        self._flush = flush
        self._delay = delay  #: collect a burst of puts into one batch
        self._retry = retry
        self._pending: dict[K, V] = {}
        self._writing: dict[K, V] = {}  #: the batch being flushed, still visible to readers
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()  #: set by close(): no more collect delays

    def __len__(self) -> int:
        return len(self._pending) + len(self._writing)

    def put(self, key: K, value: V) -> None:
        """Queue `value` for `key`, replacing any value not yet written (after close: at once)."""
        self._pending[key] = value
        self._wakeup.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._run(), name=f"{self.name} writer")

    def pending(self, key: K) -> V | None:
        """The value queued or being written for `key`; None once it is on disk (or never was)."""
        value = self._pending.get(key)
        return value if value is not None else self._writing.get(key)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if self._delay and not self._closing.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self._delay)
            self._wakeup.clear()
            await self._drain()
            if self._closing.is_set() and not self._pending:
                return

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            self._writing = batch
            try:
                await self._flush(batch)
            except Exception as exc:  # the supervisor: the writer must live on
                requeue = self._retry and not self._closing.is_set()
                log.error(
                    "%s: could not write %d entries (%s): %s",
                    self.name,
                    len(batch),
                    "will retry" if requeue else "dropped",
                    exc,
                    exc_info=exc,
                )
                if requeue:
                    self._pending = {**batch, **self._pending}
                    return  # try again on the next put or at close, not in a tight loop
            finally:
                self._writing = {}

    async def close(self) -> None:
        """Write what is pending, then stop the writer; a later put is written without delay."""
        self._closing.set()
        if self._writer is None:
            return
        self._wakeup.set()
        try:
            await self._writer
        finally:
            self._writer = None
