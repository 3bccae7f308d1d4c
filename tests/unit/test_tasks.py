"""SingleFlight, WriteBehind and Background: the shared task mechanisms of proxy/tasks.py."""

from __future__ import annotations

import asyncio
import logging

import pytest

from proxy.tasks import Background, SingleFlight, WriteBehind


async def _until(condition: object, limit: int = 1000) -> None:
    """Yield to the loop until `condition()` holds (no fixed sleeps)."""
    for _ in range(limit):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


# ---- SingleFlight --------------------------------------------------------------------------


async def test_one_factory_call_for_concurrent_callers() -> None:
    flight: SingleFlight[str, int] = SingleFlight("test")
    calls = 0
    gate = asyncio.Event()

    async def factory() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    callers = [asyncio.create_task(flight.run("k", factory)) for _ in range(10)]
    await _until(lambda: "k" in flight)
    task = flight.get("k")
    assert task is not None and "test k" in task.get_name()
    gate.set()
    assert await asyncio.gather(*callers) == [42] * 10
    assert calls == 1
    assert len(flight) == 0 and "k" not in flight


async def test_error_reaches_every_caller_and_the_next_call_retries() -> None:
    flight: SingleFlight[str, int] = SingleFlight("test")
    calls = 0
    gate = asyncio.Event()

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise ValueError("boom")

    callers = [asyncio.create_task(flight.run("k", failing)) for _ in range(3)]
    await _until(lambda: "k" in flight)
    gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert [type(r) for r in results] == [ValueError] * 3
    assert calls == 1

    async def working() -> int:
        return 7

    assert await flight.run("k", working) == 7


async def test_a_cancelled_caller_leaves_the_shared_task_running() -> None:
    flight: SingleFlight[str, str] = SingleFlight("test")
    gate = asyncio.Event()

    async def factory() -> str:
        await gate.wait()
        return "done"

    first = asyncio.create_task(flight.run("k", factory))
    second = asyncio.create_task(flight.run("k", factory))
    await _until(lambda: "k" in flight)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    task = flight.get("k")
    assert task is not None and not task.done()
    gate.set()
    assert await second == "done"


async def test_close_cancels_running_flights() -> None:
    flight: SingleFlight[str, None] = SingleFlight("test")
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    caller = asyncio.create_task(flight.run("k", forever))
    await started.wait()
    task = flight.get("k")
    await flight.close()
    assert task is not None and task.cancelled()
    assert len(flight) == 0
    with pytest.raises(asyncio.CancelledError):
        await caller


# ---- WriteBehind ---------------------------------------------------------------------------


class Sink:
    """A flush target that records batches and can be told to fail or to hold."""

    def __init__(self) -> None:
        self.batches: list[dict[str, int]] = []
        self.fail: BaseException | None = None
        self.gate: asyncio.Event | None = None

    async def flush(self, batch: dict[str, int]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        self.batches.append(dict(batch))

    def written(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for batch in self.batches:
            merged.update(batch)
        return merged


async def test_latest_value_wins_and_is_written_once() -> None:
    sink = Sink()
    writes: WriteBehind[str, int] = WriteBehind("test", sink.flush)
    writes.put("a", 1)
    writes.put("a", 2)
    writes.put("b", 3)
    await writes.close()
    assert sink.batches == [{"a": 2, "b": 3}]


async def test_pending_is_visible_until_the_flush_returns() -> None:
    sink = Sink()
    sink.gate = asyncio.Event()
    writes: WriteBehind[str, int] = WriteBehind("test", sink.flush, delay=0.001)
    writes.put("a", 1)
    assert writes.pending("a") == 1
    await _until(lambda: writes._writing)  # the writer holds the batch, not yet written
    assert writes.pending("a") == 1
    writes.put("a", 2)  # a newer value while the old one is written
    assert writes.pending("a") == 2
    sink.gate.set()
    await _until(lambda: len(writes) == 0)
    assert writes.pending("a") is None
    assert sink.written() == {"a": 2}
    await writes.close()


async def test_a_failing_flush_does_not_kill_the_writer(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    sink.fail = RuntimeError("disk on fire")
    writes: WriteBehind[str, int] = WriteBehind("test", sink.flush)
    writes.put("lost", 1)
    with caplog.at_level(logging.ERROR, logger="proxy.tasks"):
        await _until(lambda: len(writes) == 0)
    assert [r.getMessage() for r in caplog.records] == [
        "test: could not write 1 entries (dropped): disk on fire"
    ]
    writes.put("later", 2)
    await _until(lambda: sink.batches)
    assert sink.written() == {"later": 2}
    await writes.close()


async def test_retry_requeues_a_failed_batch_for_the_next_write() -> None:
    sink = Sink()
    sink.fail = OSError("full")
    writes: WriteBehind[str, int] = WriteBehind("test", sink.flush, retry=True)
    writes.put("a", 1)
    await _until(lambda: sink.fail is None and not writes._writing)
    assert writes.pending("a") == 1  # requeued, not lost
    writes.put("b", 2)
    await writes.close()
    assert sink.written() == {"a": 1, "b": 2}


async def test_close_flushes_and_later_puts_are_written_at_once() -> None:
    sink = Sink()
    writes: WriteBehind[str, int] = WriteBehind("test", sink.flush, delay=30.0)
    writes.put("a", 1)
    await writes.close()  # does not wait out the collect delay
    assert sink.written() == {"a": 1}
    writes.put("b", 2)
    await _until(lambda: len(writes) == 0)  # no 30 s delay once closed
    await writes.close()
    assert sink.written() == {"a": 1, "b": 2}


async def test_close_without_puts_is_a_no_op() -> None:
    sink = Sink()
    writes: WriteBehind[str, int] = WriteBehind("test", sink.flush)
    await writes.close()
    assert sink.batches == []


# ---- Background ----------------------------------------------------------------------------


async def test_background_close_waits_for_grace_then_cancels() -> None:
    background = Background()
    quick_done = asyncio.Event()

    async def quick() -> None:
        quick_done.set()

    async def forever() -> None:
        await asyncio.Event().wait()

    background.spawn(quick(), "quick")
    slow = background.spawn(forever(), "forever")
    assert len(background) == 2
    await background.close(grace=0.01)
    assert quick_done.is_set()
    assert slow.cancelled()
    assert len(background) == 0
