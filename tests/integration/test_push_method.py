"""PushAwareRunner: a connection opening with PUSH is parsed in Python; others by llhttp."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from proxy.web.pushmethod import PushAwareRunner

BODY = b'{"name": "x"}'
PUSH = (
    b"PUSH /root/dev HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY)
) + BODY
CLOSE = b"GET /root/dev HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


async def _echo(request: web.Request) -> web.Response:
    return web.Response(text=f"{request.method} {request.path} {await request.text()}")


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_route("PUSH", "/root/dev", _echo)
    app.router.add_get("/root/dev", _echo)
    runner = PushAwareRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield int(runner.addresses[0][1])
    await runner.cleanup()


async def _talk(port: int, *chunks: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    return answer


@pytest.mark.parametrize(
    "chunks",
    [
        (PUSH + CLOSE,),
        (PUSH[:2], PUSH[2:4], PUSH[4:] + CLOSE),  # the deciding bytes over several reads
        (PUSH[:30], PUSH[30:], CLOSE),
    ],
    ids=["one-read", "split-method", "split-headers"],
)
async def test_a_connection_opening_with_push_reaches_the_handler(
    port: int, chunks: tuple[bytes, ...]
) -> None:
    answer = await _talk(port, *chunks)
    assert answer.count(b"HTTP/1.1 200 OK") == 2, answer
    assert b'PUSH /root/dev {"name": "x"}' in answer
    assert answer.endswith(b"GET /root/dev ")


async def test_other_connections_are_unchanged(port: int) -> None:
    answer = await _talk(port, CLOSE)
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"GET /root/dev ")
    assert (
        await _talk(port, b"P", b"OST /root/dev HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    ).startswith(b"HTTP/1.1 405")
    assert (await _talk(port, b"BREW /root/dev HTTP/1.1\r\nHost: a\r\n\r\n")).startswith(
        b"HTTP/1.0 400"
    )
