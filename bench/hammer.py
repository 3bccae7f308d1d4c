"""Load for scenario 8, run as its own process so its CPU never counts against the measurer.

`python -m bench.hammer login BASE SECONDS ADDRESSES USERS CONNECTIONS PAUSE`: wrong passwords
for USERS existing users (0: unknown names) from ADDRESSES loopback source addresses
(127.0.1.x), CONNECTIONS at once, each waiting PAUSE seconds between attempts (0: none).
`python -m bench.hammer names BASE COUNT CONNECTIONS`: COUNT random project names on root/public.
Both print one JSON object: how many answers of each status (and of each error).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections import Counter

import aiohttp

LOOPBACK_NET = "127.0.1."  #: Linux answers on all of 127/8, so each client can have its address


def source_address(n: int) -> str:
    return f"{LOOPBACK_NET}{n % 250 + 1}"


def victim(n: int) -> str:
    return f"victim{n}"


async def _login_flood(
    base: str, seconds: float, addresses: int, users: int, connections: int, pause: float
) -> Counter[str]:
    counts: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    sessions = [
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source_address(a), 0)))
        for a in range(addresses)
    ]

    async def worker(w: int) -> None:
        session = sessions[w % addresses]
        n = w
        while time.monotonic() < deadline:
            user = victim(n % users) if users else f"nobody{n}"  # 0: unknown users, no hashing
            body = {"user": user, "password": f"wrong-{n}"}
            n += connections
            try:
                async with session.post(base + "/+login", json=body) as resp:
                    await resp.read()
                    counts[str(resp.status)] += 1
            except aiohttp.ClientError as exc:
                counts[type(exc).__name__] += 1
            if pause:
                await asyncio.sleep(pause)

    try:
        await asyncio.gather(*(worker(w) for w in range(connections)))
    finally:
        for session in sessions:
            await session.close()
    return counts


async def _random_names(base: str, count: int, connections: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    todo = iter(range(count))
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    ) as session:

        async def worker() -> None:
            for _ in todo:
                name = "rnd-" + uuid.uuid4().hex[:16]
                try:
                    async with session.get(f"{base}/root/public/+simple/{name}/") as resp:
                        await resp.read()
                        counts[str(resp.status)] += 1
                except aiohttp.ClientError as exc:
                    counts[type(exc).__name__] += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    return counts


def main(argv: list[str]) -> int:
    mode, base, *rest = argv
    if mode == "login":
        seconds, addresses, users, connections = float(rest[0]), *map(int, rest[1:4])
        flood = _login_flood(base, seconds, addresses, users, connections, float(rest[4]))
        counts = asyncio.run(flood)
    elif mode == "names":
        counts = asyncio.run(_random_names(base, int(rest[0]), int(rest[1])))
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    print(json.dumps(dict(counts)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
