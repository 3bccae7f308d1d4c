"""A TCP proxy that puts a round trip between clients and a loopback upstream (no tc/netem here).

Every chunk a client sends reaches the upstream `delay` seconds after it arrived (scheduled in
order, so a slow chunk never holds a later one back by more than its own delay), and a new
connection costs one `delay` before its first byte goes on, as a TCP handshake would. Answers
flow back unthrottled, so a request costs one round trip more than on loopback and a big file
still streams at loopback speed. Run as its own process:
`python -m bench.delay --listen PORT --to 127.0.0.1:PORT --delay 0.030`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

CHUNK = 256 * 1024


async def _pump_back(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Upstream to client as fast as both sides go."""
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _read_delayed(
    reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes]]
) -> None:
    """Client to the queue: each chunk with the time it arrived; b"" marks the client's EOF."""
    loop = asyncio.get_running_loop()
    try:
        while chunk := await reader.read(CHUNK):
            queue.put_nowait((loop.time(), chunk))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((loop.time(), b""))


async def _write_delayed(
    queue: asyncio.Queue[tuple[float, bytes]],
    writer: asyncio.StreamWriter,
    ready: float,
    delay: float,
) -> None:
    """Queue to upstream: each chunk `delay` after it arrived (or after the connection was up)."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            arrived, chunk = await queue.get()
            wait = max(arrived, ready) + delay - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        writer.close()


async def _handle(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    host: str,
    port: int,
    delay: float,
) -> None:
    """One client connection: a delayed connect, then both directions until either side ends."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    reading = asyncio.create_task(_read_delayed(client_r, queue))
    await asyncio.sleep(delay)
    try:
        up_r, up_w = await asyncio.open_connection(host, port, limit=CHUNK)
    except OSError:
        reading.cancel()
        client_w.close()
        return
    writing = asyncio.create_task(_write_delayed(queue, up_w, loop.time(), delay))
    try:
        await _pump_back(up_r, client_w)
    finally:
        for task in (reading, writing):
            task.cancel()
        for task in (reading, writing):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        up_w.close()
        with contextlib.suppress(ConnectionError, OSError):
            await up_w.wait_closed()


class DelayProxy:
    """The proxy's listening side; `connections` are the client connections still open."""

    def __init__(self, host: str, port: int, delay: float) -> None:
        self.host, self.port, self.delay = host, port, delay
        self.connections: set[asyncio.Task[object]] = set()

    async def _on_client(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
        try:
            await _handle(r, w, self.host, self.port, self.delay)
        finally:
            if task is not None:
                self.connections.discard(task)

    async def start(self, listen: int) -> asyncio.Server:
        """Listen on 127.0.0.1:`listen` (0: any free port)."""
        return await asyncio.start_server(
            self._on_client, "127.0.0.1", listen, limit=CHUNK, backlog=1024
        )


async def serve(listen: int, host: str, port: int, delay: float) -> None:
    """Accept on 127.0.0.1:`listen` until SIGTERM or SIGINT."""
    server = await DelayProxy(host, port, delay).start(listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--to", required=True, help="HOST:PORT of the upstream")
    parser.add_argument("--delay", type=float, default=0.030, help="seconds per request")
    args = parser.parse_args(argv)
    host, _, port = str(args.to).rpartition(":")
    asyncio.run(serve(args.listen, host, int(port), args.delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
