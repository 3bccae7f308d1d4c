"""bench/delay.py: the benchmark's stand-in for a far-away upstream adds its round trips."""

from __future__ import annotations

import asyncio
import time

from bench.delay import DelayProxy

DELAY = 0.05
BIG = 4 * 1024 * 1024


class Upstream:
    """Answers each line with the line, or with BIG bytes for the line b"big"."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    async def on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(b"x" * BIG if line == b"big\n" else line)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        self.closed.set()


async def _until_closed(proxy: DelayProxy, upstream: Upstream) -> None:
    await asyncio.wait_for(upstream.closed.wait(), timeout=10)
    if proxy.connections:
        await asyncio.wait(set(proxy.connections), timeout=10)
    assert not proxy.connections


async def test_a_new_connection_costs_two_delays_and_each_request_one() -> None:
    upstream = Upstream()
    up_server = await asyncio.start_server(upstream.on_client, "127.0.0.1", 0)
    proxy = DelayProxy("127.0.0.1", up_server.sockets[0].getsockname()[1], DELAY)
    server = await proxy.start(0)
    async with up_server, server:
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.sockets[0].getsockname()[1]
        )
        writer.write(b"one\n")
        assert await reader.readline() == b"one\n"
        first = time.perf_counter() - started
        started = time.perf_counter()
        writer.write(b"two\n")
        writer.write(b"three\n")
        assert await reader.readline() == b"two\n"
        assert await reader.readline() == b"three\n"
        second = time.perf_counter() - started
        writer.write(b"big\n")
        assert await reader.readexactly(BIG) == b"x" * BIG
        writer.write_eof()
        assert await reader.read() == b""  # the upstream saw the end and closed
        writer.close()
        await writer.wait_closed()
        await _until_closed(proxy, upstream)
    assert first >= 2 * DELAY
    assert second >= DELAY
