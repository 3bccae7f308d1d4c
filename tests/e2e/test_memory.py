"""Memory that clients can grow stays bounded (issue 9): 100,000 made-up names, RSS flat."""

from __future__ import annotations

import asyncio
import random
import string
from pathlib import Path

import pytest

from tests.conftest import Daemon, DaemonFactory
from tests.fakes.index import ThreadedServer

NAMES = 100_000
BASELINE_AFTER = 10_000
CONNECTIONS = 16
PIPELINE = 50  #: requests written at once on one keep-alive connection
MAX_GROWTH_KB = 30 * 1024  #: RSS after all names, over RSS after the first 10,000


def rss_kb(pid: int) -> int:
    """VmRSS of a process, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def made_up_names(count: int) -> list[str]:
    rng = random.Random(9)  # noqa: S311 - names, not secrets
    return ["".join(rng.choices(string.ascii_lowercase, k=16)) for _ in range(count)]


async def _exchange(host: str, port: int, paths: list[str], statuses: dict[int, int]) -> None:
    """Pipelined keep-alive GETs on one connection: cheap for the client, real for the daemon."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths))
        await writer.drain()
        for _ in paths:
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def ask(daemon: Daemon, names: list[str], rss: dict[str, int]) -> dict[int, int]:
    """GET each name, every fourth on the mirror, the rest private; RSS noted at BASELINE_AFTER."""
    host, port = daemon.url.removeprefix("http://").split(":")
    paths = [
        f"/{'root/solo' if n % 4 else 'root/pypi'}/+simple/{name}/" for n, name in enumerate(names)
    ]
    batches = [paths[i : i + PIPELINE] for i in range(0, len(paths), PIPELINE)]
    statuses: dict[int, int] = {}
    done = 0

    async def worker() -> None:
        nonlocal done
        while batches:
            batch = batches.pop()
            await _exchange(host, int(port), batch, statuses)
            done += len(batch)
            if "baseline" not in rss and done >= BASELINE_AFTER:
                rss["baseline"] = rss_kb(daemon.process.pid)

    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return statuses


def test_rss_stays_flat_over_100k_made_up_names(
    daemon_factory: DaemonFactory, fake_index_server: ThreadedServer, request: pytest.FixtureRequest
) -> None:
    """Small caps, so they fill well before the baseline; defaults are only larger tables."""
    overrides = {
        "indexes": [
            {"name": "root/pypi", "kind": "mirror"},
            {"name": "root/public", "kind": "private", "bases": ["root/pypi"]},
            {"name": "root/solo", "kind": "private"},
        ],
        "logging": {"level": "WARNING"},  # no access log line per request
        "limits": {"private_pages": 1000, "negative_pages": 1000},
    }
    daemon = daemon_factory(fake_index_server.url, overrides)
    start = rss_kb(daemon.process.pid)
    rss: dict[str, int] = {}
    statuses = asyncio.run(ask(daemon, made_up_names(NAMES), rss))
    end = rss_kb(daemon.process.pid)
    figures = (
        f"RSS kB: start {start}, after {BASELINE_AFTER} {rss['baseline']}, after {NAMES} {end}"
    )
    request.node.add_report_section("call", "rss", figures)
    assert statuses == {404: NAMES}
    assert end - rss["baseline"] <= MAX_GROWTH_KB, (start, rss["baseline"], end)
