"""Load: wrk (C, so Python never bottlenecks) for req/s and latency; threads for N cold clients."""

from __future__ import annotations

import hashlib
import re
import statistics
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bench.procs import BenchError, run

JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
HTML_ACCEPT = "text/html"

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_SIZES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run's figures."""

    requests_per_s: float
    p99_ms: float
    mib_per_s: float
    bad_responses: int  #: non-2xx/3xx plus socket errors


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise BenchError(f"unparseable wrk latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def _size_bytes(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(B|KB|MB|GB|TB)", text)
    if match is None:
        raise BenchError(f"unparseable wrk size {text!r}")
    return float(match[1]) * _SIZES[match[2]]


def parse_wrk(output: str) -> WrkResult:
    """Read wrk --latency's report."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    transfer = re.search(r"Transfer/sec:\s+(\S+)", output)
    if rps is None or p99 is None or transfer is None:
        raise BenchError(f"unexpected wrk output:\n{output}")
    bad = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        bad += int(non2xx[1])
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        bad += sum(int(g) for g in sock.groups())
    return WrkResult(
        requests_per_s=float(rps[1]),
        p99_ms=_duration_ms(p99[1]),
        mib_per_s=_size_bytes(transfer[1]) / 1024**2,
        bad_responses=bad,
    )


def run_wrk(url: str, *, connections: int, duration: float, accept: str | None = None) -> WrkResult:
    """Closed-loop load on one URL with 2 threads (the machine has 2 cores)."""
    threads = str(min(2, connections))  # wrk needs at least one connection per thread
    cmd = ["wrk", "--latency", "-t", threads, "-c", str(connections), "-d", f"{duration:g}s"]
    cmd += ["--timeout", "10s"]
    if accept:
        cmd += ["-H", f"Accept: {accept}"]
    done = run([*cmd, url], timeout=duration + 60)
    return parse_wrk(done.stdout)


def median_wrk(results: list[WrkResult]) -> WrkResult:
    """Per-figure medians over repeated runs."""
    return WrkResult(
        requests_per_s=statistics.median(r.requests_per_s for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        mib_per_s=statistics.median(r.mib_per_s for r in results),
        bad_responses=sum(r.bad_responses for r in results),
    )


@dataclass(frozen=True, slots=True)
class Fetched:
    """One client's download."""

    status: int
    sha256: str
    size: int
    content_type: str


def fetch(url: str, accept: str | None = None, timeout: float = 120.0) -> tuple[Fetched, bytes]:
    """A GET that streams the body through sha256; also returns the first 64 KiB of it."""
    req = urllib.request.Request(url)
    if accept:
        req.add_header("Accept", accept)
    digest = hashlib.sha256()
    size = 0
    head = b""
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        while chunk := resp.read(1 << 16):
            digest.update(chunk)
            size += len(chunk)
            if len(head) < 1 << 16:
                head += chunk[: (1 << 16) - len(head)]
        fetched = Fetched(resp.status, digest.hexdigest(), size, resp.headers["Content-Type"] or "")
    return fetched, head


def fetch_together(url: str, clients: int, timeout: float = 120.0) -> list[Fetched | str]:
    """`clients` GETs released at the same instant; each result is a download or an error text."""
    barrier = threading.Barrier(clients)

    def one(_: int) -> Fetched | str:
        barrier.wait(timeout=30)
        try:
            return fetch(url, timeout=timeout)[0]
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(one, range(clients)))
