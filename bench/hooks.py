"""Scenario 12: upload latency with 5 webhooks whose receiver hangs, against an index with none.

One standalone daemon, two private indexes: `root/plain` (no hooks) and `root/hooked` (5
webhooks, all pointing at a receiver that accepts connections and never answers, so every
delivery waits out `hooks.timeout` and is retried). The same wheels are uploaded to both, in
alternating rounds on one keep-alive connection each, so drift hits both alike. An upload only
inserts the events' rows in its transaction; the figure says whether that holds under load.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from bench.procs import BenchError
from bench.replication import ROOT_PASSWORD, fresh_work, standalone
from bench.report import Check, splice, table

HEADING = "## 12. Upload latency with hung webhooks"
HOOKS = 5
UPLOADS = 300  #: per index
ROUND = 1  #: uploads to one index before switching to the other
RATIO_LIMIT = 1.10


@dataclass(frozen=True, slots=True)
class HooksResult:
    plain_ms: list[float]
    hooked_ms: list[float]
    queued: int  #: events pending on root/hooked at the end (none can have been delivered)

    @property
    def ratio(self) -> float:
        return statistics.median(self.hooked_ms) / statistics.median(self.plain_ms)


@contextlib.contextmanager
def hung_receiver() -> Iterator[str]:
    """A TCP server that accepts and reads, and never answers; yields its URL."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = server.accept()
                held.append(conn)  # kept open, never answered

    thread = threading.Thread(target=accept, name="hung receiver", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


class Client:
    """One keep-alive connection as root."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        token = base64.b64encode(f"root:{ROOT_PASSWORD}".encode()).decode()
        self.auth = f"Basic {token}"

    def call(self, method: str, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type, "Authorization": self.auth}
        headers["Accept"] = "application/json"
        self.conn.request(method, path, body, headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def upload(self, index: str, body: bytes, content_type: str) -> float:
        sent = time.perf_counter()
        status, answer = self.call("POST", f"/{index}/", body, content_type)
        took = time.perf_counter() - sent
        if status != 200:
            raise BenchError(f"upload to {index} answered {status}: {answer[:300]!r}")
        return took * 1000

    def close(self) -> None:
        self.conn.close()


def measure_hooks(say: Callable[[str], None] = lambda _: None) -> HooksResult:
    work, bodies = fresh_work("hooks", UPLOADS)
    plain: list[float] = []
    hooked: list[float] = []
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(hung_receiver())
        daemon = stack.enter_context(standalone(work))
        client = Client(daemon.port)
        stack.callback(client.close)
        hooks = [{"url": f"{url}/hook{n}", "secret": f"bench-{n}"} for n in range(HOOKS)]
        for name, config in (("root/plain", {}), ("root/hooked", {"webhooks": hooks})):
            body = json.dumps({"type": "private", **config}).encode()
            status, answer = client.call("PUT", f"/{name}", body, "application/json")
            if status != 201:
                raise BenchError(f"PUT {name} answered {status}: {answer[:300]!r}")
        say(f"hooks: {UPLOADS} uploads to each index, {HOOKS} hung hooks on one")
        for start in range(0, UPLOADS, ROUND):
            batch = bodies[start : start + ROUND]
            order = [("root/plain", plain), ("root/hooked", hooked)]
            if (start // ROUND) % 2:
                order.reverse()
            for index, into in order:
                into.extend(client.upload(index, body, ctype) for body, ctype in batch)
        status, answer = client.call("GET", "/root/hooked/+hooks", b"", "application/json")
        if status != 200:
            raise BenchError(f"+hooks answered {status}")
        queued = sum(int(h["pending"]) for h in json.loads(answer)["webhooks"])
    return HooksResult(plain, hooked, queued)


def _p(values: Sequence[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


def hooks_checks(result: HooksResult | None) -> list[Check]:
    what = f"upload p50 with {HOOKS} hung webhooks vs none"
    goal = f"<= {RATIO_LIMIT:.2f}x"
    if result is None:
        return [Check(what, "no figure", goal, False)]
    measured = (
        f"{result.ratio:.2f}x ({statistics.median(result.hooked_ms):.1f} ms vs "
        f"{statistics.median(result.plain_ms):.1f} ms)"
    )
    return [Check(what, measured, goal, result.ratio <= RATIO_LIMIT)]


def hooks_section(result: HooksResult | None, errors: Sequence[str]) -> str:
    text = (
        f"{HEADING}\n\n"
        f"One daemon, two private indexes: `root/plain` without hooks and `root/hooked` with "
        f"{HOOKS} webhooks whose receiver accepts connections and never answers (each delivery "
        f"waits out `hooks.timeout`, then is retried). The same {UPLOADS} wheels go to both, "
        "alternately (one to each in turn, the first index alternating too) on one keep-alive "
        "connection; latency is the client's, request sent to answer read.\n\n"
    )
    if result is None:
        return text + "No figures: " + "; ".join(errors) + "\n"
    rows = [
        [
            name,
            f"{statistics.median(values):.1f}",
            f"{_p(values, 90):.1f}",
            f"{_p(values, 99):.1f}",
        ]
        for name, values in (("no hooks", result.plain_ms), (f"{HOOKS} hung", result.hooked_ms))
    ]
    text += table(["index", "p50 ms", "p90 ms", "p99 ms"], rows)
    return text + (
        f"\nRatio of the medians: {result.ratio:.2f}. Events still queued on `root/hooked` at "
        f"the end: {result.queued:,} (of {UPLOADS * HOOKS:,}: none can be delivered).\n"
    )


def splice_hooks(existing: str, result: HooksResult | None, errors: list[str]) -> str:
    return splice(existing, hooks_checks(result), HEADING, hooks_section(result, errors))
