"""Scenario 9: the realistic upstream (30 ms away, no PEP 658 metadata, a 700,000-name root list).

For direct, wheelwell, proxpi and devpi, each with the delaying proxy as its upstream:
(a) `uv pip compile` of the 100-package graph, cold (a fresh target data dir) and warm (the same
target process right after; uv's cache is fresh each time), with the upstream's requests, bytes,
HEADs and Range requests from its nginx log; (b) the same for a real `pip install --target DIR
--no-cache-dir` of the 20 download wheels; (c) on a fresh target, the root list: a cold fetch
(curl, its own process) while one client requests a warm 1-file page every 10 ms (p99), then
warm fetches (median), then the server's peak RSS (VmHWM) over all of it.
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from bench import clients, dataset
from bench.load import HTML_ACCEPT, fetch
from bench.procs import BenchError, group_pids, read_vm
from bench.realistic_upstream import ROOT_NAMES, RealisticUpstream, UpstreamLine, ensure_variant
from bench.servers import PROXIES, WORK, Direct, Target

ROOT = WORK / "realistic"
WARM_ROOT_FETCHES = 5
ROOT_LIST_TIMEOUT = 600.0
PAGE_INTERVAL = 0.010  #: one 1-file page request due every 10 ms during the cold root list


class Phase(StrEnum):
    COLD = "cold"
    WARM = "warm"


@dataclass(frozen=True, slots=True)
class Traffic:
    """What the upstream served during one client run."""

    requests: int
    body_bytes: int
    heads: int
    ranges: int  #: requests with a Range header

    @classmethod
    def of(cls, lines: Sequence[UpstreamLine]) -> Traffic:
        return cls(
            requests=len(lines),
            body_bytes=sum(ln.body_bytes for ln in lines),
            heads=sum(ln.method == "HEAD" for ln in lines),
            ranges=sum(bool(ln.range) for ln in lines),
        )


@dataclass(frozen=True, slots=True)
class ClientRow:
    """The median over runs of one client, one phase, one target."""

    target: str
    seconds: float
    traffic: Traffic
    runs: int


@dataclass(frozen=True, slots=True)
class RootListRow:
    """One target's root-list figures (the medians over runs)."""

    target: str
    root_bytes: int  #: what the client received on the cold fetch
    cold_seconds: float
    page_samples: int  #: warm 1-file page requests due during the cold fetch
    page_p50_ms: float
    page_p99_ms: float
    page_max_ms: float
    page_errors: int
    warm_ms: float  #: median of WARM_ROOT_FETCHES warm fetches
    peak_rss_kib: int  #: VmHWM of the server's processes (0 for direct)
    upstream: Traffic  #: what the upstream served from the cold fetch to the last warm one
    runs: int


@dataclass
class RealisticResult:
    uv: dict[Phase, dict[str, ClientRow]] = field(default_factory=dict)
    pip: dict[Phase, dict[str, ClientRow]] = field(default_factory=dict)
    root: dict[str, RootListRow] = field(default_factory=dict)
    root_list_bytes: int = 0  #: the upstream's HTML root list
    generate_seconds: float | None = None  #: None when the variant was reused
    runs: int = 0


Say = Callable[[str], None]
Client = Callable[[Target], float]


def _uv(target: Target) -> float:
    work = ROOT / "clients" / "uv" / target.name
    return clients.uv_compile(target.index_url, ("graph-000",), dataset.GRAPH_SIZE, work)


def _pip(target: Target) -> float:
    work = ROOT / "clients" / "pip" / target.name
    return clients.pip_install(target.index_url, dataset.DOWNLOAD_SET, work)


def _settle(upstream: RealisticUpstream, quiet: float = 0.5, limit: float = 15.0) -> None:
    """Wait until the upstream log stops growing, so a fill or a prefetch that outlived its
    client counts for the run that caused it, not the next one."""
    deadline = time.monotonic() + limit
    size = upstream.mark()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = upstream.mark()
        if now == size:
            return
        size = now


def _cold_and_warm(
    target: Target, upstream: RealisticUpstream, client: Client
) -> dict[Phase, tuple[float, Traffic]]:
    """One fresh target: the client twice, with what the upstream served each time."""
    out = {}
    try:
        target.start()
        for phase in Phase:
            mark = upstream.mark()
            seconds = client(target)
            _settle(upstream)
            out[phase] = seconds, Traffic.of(upstream.since(mark))
            target.sample_rss()
    finally:
        target.stop()
    return out


def _median_traffic(samples: Sequence[Traffic]) -> Traffic:
    def med(values: Iterable[int]) -> int:
        return int(statistics.median(values))

    return Traffic(
        requests=med(t.requests for t in samples),
        body_bytes=med(t.body_bytes for t in samples),
        heads=med(t.heads for t in samples),
        ranges=med(t.ranges for t in samples),
    )


def _client_rows(
    samples: dict[str, list[dict[Phase, tuple[float, Traffic]]]],
) -> dict[Phase, dict[str, ClientRow]]:
    rows: dict[Phase, dict[str, ClientRow]] = {phase: {} for phase in Phase}
    for name, runs in samples.items():
        if not runs:
            continue
        for phase in Phase:
            rows[phase][name] = ClientRow(
                target=name,
                seconds=statistics.median(r[phase][0] for r in runs),
                traffic=_median_traffic([r[phase][1] for r in runs]),
                runs=len(runs),
            )
    return rows


def _sample_page(url: str, busy: Callable[[], bool]) -> tuple[list[float], int]:
    """GETs of `url` on one keep-alive connection, one due every PAGE_INTERVAL, while `busy()`;
    each latency counts from when its request was due, so a stall counts for every request it
    held up (as wrk2 does), not for one; returns latencies in ms and the errors."""
    parts = urlsplit(url)
    samples: list[float] = []
    errors = 0
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    due = time.perf_counter()
    try:
        while busy():
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            try:
                conn.request("GET", parts.path, headers={"Accept": HTML_ACCEPT})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    errors += 1
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
            samples.append((time.perf_counter() - due) * 1000)
            due += PAGE_INTERVAL
    finally:
        conn.close()
    return samples, errors


def _curl(url: str) -> subprocess.Popen[str]:
    """A root-list GET in its own process (so it never shares a GIL with the page sampler)."""
    cmd = ["curl", "-sS", "-o", "/dev/null", "-H", f"Accept: {HTML_ACCEPT}"]
    cmd += ["--max-time", str(int(ROOT_LIST_TIMEOUT))]
    cmd += ["-w", "%{http_code} %{size_download} %{time_total}", url]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _curl_result(proc: subprocess.Popen[str], url: str) -> tuple[int, float]:
    """(bytes, seconds) of a finished `_curl`; a non-200 answer is an error."""
    out, err = proc.communicate(timeout=ROOT_LIST_TIMEOUT + 30)
    fields = out.split()
    if proc.returncode != 0 or len(fields) != 3 or fields[0] != "200":
        raise BenchError(f"GET {url}: curl exited {proc.returncode}: {out.strip()} {err.strip()}")
    return int(fields[1]), float(fields[2])


def _percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _root_list_once(target: Target, upstream: RealisticUpstream) -> RootListRow:
    """A fresh target: warm the 1-file page, fetch the root list cold while sampling the page,
    then warm root-list fetches, then the peak RSS."""
    try:
        target.start()
        page = target.page_url(dataset.TINY)
        fetch(page, HTML_ACCEPT)
        fetch(page, HTML_ACCEPT)
        url = target.index_url
        mark = upstream.mark()
        proc = _curl(url)
        samples, errors = _sample_page(page, lambda: proc.poll() is None)
        size, cold = _curl_result(proc, url)
        warm = []
        for _ in range(WARM_ROOT_FETCHES):
            warm.append(_curl_result(_curl(url), url)[1] * 1000)
        rss = 0
        if target.service is not None:
            rss = sum(read_vm(pid, "VmHWM") for pid in group_pids(target.service.pid))
        target.sample_rss()
        return RootListRow(
            target=target.name,
            root_bytes=size,
            cold_seconds=cold,
            page_samples=len(samples),
            page_p50_ms=statistics.median(samples) if samples else 0.0,
            page_p99_ms=_percentile(samples, 0.99),
            page_max_ms=max(samples, default=0.0),
            page_errors=errors,
            warm_ms=statistics.median(warm),
            peak_rss_kib=rss,
            upstream=Traffic.of(upstream.since(mark)),
            runs=1,
        )
    finally:
        target.stop()


def _median_root(rows: Sequence[RootListRow]) -> RootListRow:
    def med(get: Callable[[RootListRow], float]) -> float:
        return statistics.median(get(r) for r in rows)

    first = rows[0]
    return RootListRow(
        target=first.target,
        root_bytes=first.root_bytes,
        cold_seconds=med(lambda r: r.cold_seconds),
        page_samples=int(med(lambda r: r.page_samples)),
        page_p50_ms=med(lambda r: r.page_p50_ms),
        page_p99_ms=med(lambda r: r.page_p99_ms),
        page_max_ms=med(lambda r: r.page_max_ms),
        page_errors=sum(r.page_errors for r in rows),
        warm_ms=med(lambda r: r.warm_ms),
        peak_rss_kib=int(med(lambda r: r.peak_rss_kib)),
        upstream=_median_traffic([r.upstream for r in rows]),
        runs=len(rows),
    )


class NearDirect(Direct):
    """The clients straight at the variant's nginx, without the delay: their own floor (their
    CPU, the no-metadata fallback at loopback speed), the least a warm proxy could take."""

    name = "nginx-near"

    @property
    def index_url(self) -> str:
        assert isinstance(self.upstream, RealisticUpstream)
        return f"{self.upstream.nginx.url}/simple/"


def make_targets(upstream: RealisticUpstream, proxies: Sequence[str]) -> list[Target]:
    """Direct and the proxies, all with the delaying proxy as their upstream."""
    targets: list[Target] = [
        Direct(upstream),
        NearDirect(upstream),
        *(PROXIES[name](upstream) for name in proxies),
    ]
    for target in targets:
        target.work_dir = ROOT / "servers"
    return targets


def measure_realistic(
    source: Callable[[], Path],
    proxies: Sequence[str],
    runs: int,
    say: Say,
    errors: list[str],
) -> RealisticResult:
    """The whole scenario; `source()` gives the loopback dataset's root when the variant must be
    (re)generated. A failing target is recorded in `errors` and left out of the later steps."""
    result = RealisticResult(runs=runs)
    variant = ROOT / "upstream"
    result.generate_seconds = ensure_variant(variant, source)
    upstream = RealisticUpstream(variant, ROOT / "upstream-server")
    result.root_list_bytes = upstream.root_bytes
    targets = make_targets(upstream, proxies)
    with contextlib.ExitStack() as stack:
        stack.callback(upstream.stop)
        for target in targets:
            stack.callback(target.stop)
        upstream.start()
        for label, client, store in (
            ("uv pip compile", _uv, result.uv),
            ("pip install", _pip, result.pip),
        ):
            samples: dict[str, list[dict[Phase, tuple[float, Traffic]]]] = {
                t.name: [] for t in targets
            }
            failed: set[str] = set()
            for _ in range(runs):
                for target in targets:
                    if target.name in failed:
                        continue
                    started = time.perf_counter()
                    try:
                        samples[target.name].append(_cold_and_warm(target, upstream, client))
                        say(
                            f"realistic {label}, cold + warm: {target.name}: "
                            f"{time.perf_counter() - started:.1f}s"
                        )
                    except (BenchError, OSError) as exc:
                        failed.add(target.name)
                        errors.append(f"realistic {label}: {target.name}: {exc}")
                        say(f"realistic {label}: {target.name}: FAILED: {exc}")
            store.update(_client_rows(samples))
        roots: dict[str, list[RootListRow]] = {
            t.name: [] for t in targets if not isinstance(t, NearDirect)
        }
        say(f"realistic root list ({ROOT_NAMES:,} names): {runs} runs x {len(roots)} targets")
        for _ in range(runs):
            for target in targets:
                if isinstance(target, NearDirect):
                    continue  # the root list's reference is direct through the delay
                try:
                    roots[target.name].append(_root_list_once(target, upstream))
                except (BenchError, OSError, subprocess.TimeoutExpired) as exc:
                    errors.append(f"realistic root list: {target.name}: {exc}")
                    say(f"realistic root list: {target.name}: FAILED: {exc}")
        result.root = {name: _median_root(rows) for name, rows in roots.items() if rows}
    shutil.rmtree(ROOT / "clients", ignore_errors=True)
    return result
