"""The measurements: warm pages and files under wrk, cold real clients, 16 clients on one file."""

from __future__ import annotations

import re
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from packaging.utils import canonicalize_name

from bench import clients, dataset
from bench.load import (
    HTML_ACCEPT,
    JSON_ACCEPT,
    WrkResult,
    fetch,
    fetch_together,
    median_wrk,
    run_wrk,
)
from bench.procs import BenchError
from bench.security import SecurityResult
from bench.servers import WORK, Nginx, Target
from bench.wheelhouse import WheelhouseResult

PAGES = {"1 file": dataset.TINY, "2,000 files": dataset.BIG_PAGE}
FORMATS = {"HTML": HTML_ACCEPT, "JSON": JSON_ACCEPT}
STAMPEDE_CLIENTS = 16


@dataclass(frozen=True, slots=True)
class Settings:
    runs: int = 3  #: repetitions per figure; the median is reported
    duration: float = 3.0  #: seconds per wrk run
    connections: int = 16  #: wrk connections for pages
    file_connections: int = 1  #: wrk connections for the scored 20 MB file figure (one client)
    file_connections_parallel: int = 4  #: a second, informational figure with parallel clients


@dataclass(frozen=True, slots=True)
class PageRow:
    target: str
    page: str
    fmt: str
    result: WrkResult | None
    note: str = ""


@dataclass(frozen=True, slots=True)
class ColdRow:
    target: str
    seconds: float
    upstream_bytes: int
    upstream_requests: int
    runs: int


@dataclass(frozen=True, slots=True)
class StampedeRow:
    target: str
    upstream_gets: int
    correct_bodies: int
    failures: tuple[str, ...]
    seconds: float


@dataclass
class Results:
    pages: list[PageRow] = field(default_factory=list)
    files: dict[str, WrkResult] = field(default_factory=dict)
    files_parallel: dict[str, WrkResult] = field(default_factory=dict)
    #: upstream requests a proxy made while wrk ran against it (warm should mean 0)
    warm_upstream: dict[str, int] = field(default_factory=dict)
    pip: dict[str, ColdRow] = field(default_factory=dict)
    uv: dict[str, ColdRow] = field(default_factory=dict)
    uv_chain: dict[str, ColdRow] = field(default_factory=dict)
    stampede: dict[str, StampedeRow] = field(default_factory=dict)
    wheelhouse: WheelhouseResult | None = None
    security: SecurityResult | None = None
    errors: list[str] = field(default_factory=list)


def _status_no_redirect(url: str, accept: str | None = None) -> int:
    """The status of a GET that does not follow redirects (wrk does not either)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with opener.open(req, timeout=60) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def file_url(target: Target, filename: str) -> str:
    """The absolute URL the target's own HTML page gives for `filename`."""
    project = canonicalize_name(filename.split("-")[0])
    page = target.page_url(project)
    _, body = fetch(page, HTML_ACCEPT)
    match = re.search(rf'href="([^"#]*{re.escape(filename)})[#"]', body.decode())
    if match is None:
        raise BenchError(f"{target.name}: no link to {filename} on {page}")
    return urllib.parse.urljoin(page, str(match[1]))


def _warm_page(target: Target, url: str, fmt: str) -> str:
    """Request once so the page is cached; returns a note when the format is not served."""
    fetched, _ = fetch(url, FORMATS[fmt])
    if fmt == "JSON" and not fetched.content_type.startswith(JSON_ACCEPT):
        return f"no JSON (got {fetched.content_type})"
    status = _status_no_redirect(url, FORMATS[fmt])
    if status != 200:
        raise BenchError(f"{target.name}: warm GET {url} answered {status}")
    return ""


def _warm_file(target: Target, entry: dataset.FileEntry) -> str:
    """Fetch the big wheel until the target serves it itself (proxpi redirects while filling)."""
    url = file_url(target, entry.filename)
    deadline = time.monotonic() + 60
    while True:
        fetched, _ = fetch(url)
        if fetched.sha256 != entry.sha256:
            raise BenchError(f"{target.name}: {url} body sha256 {fetched.sha256} != {entry.sha256}")
        if _status_no_redirect(url) == 200:
            return url
        if time.monotonic() > deadline:
            raise BenchError(f"{target.name}: {url} still not served from cache after 60s")
        time.sleep(0.5)


def measure_warm(
    target: Target,
    upstream: Nginx,
    ds: dataset.Dataset,
    cfg: Settings,
    out: Results,
    pages: bool = True,
) -> None:
    """Scenarios 1 and 2 for one target: pages and the 20 MB file, each requested once first."""
    try:
        target.start()
        notes = {}
        for page, project in PAGES.items() if pages else ():
            for fmt in FORMATS:
                notes[page, fmt] = _warm_page(target, target.page_url(project), fmt)
        big_url = _warm_file(target, ds.big_wheel)
        mark = upstream.mark()
        samples: dict[tuple[str, str], list[WrkResult]] = {key: [] for key in notes}
        files: list[WrkResult] = []
        files_parallel: list[WrkResult] = []
        for _ in range(cfg.runs):
            for (page, fmt), note in notes.items():
                if not note:
                    url = target.page_url(PAGES[page])
                    run = run_wrk(
                        url, connections=cfg.connections, duration=cfg.duration, accept=FORMATS[fmt]
                    )
                    samples[page, fmt].append(run)
                target.sample_rss()
            files.append(run_wrk(big_url, connections=cfg.file_connections, duration=cfg.duration))
            files_parallel.append(
                run_wrk(big_url, connections=cfg.file_connections_parallel, duration=cfg.duration)
            )
            target.sample_rss()
        for (page, fmt), note in notes.items():
            result = median_wrk(samples[page, fmt]) if samples[page, fmt] else None
            out.pages.append(PageRow(target.name, page, fmt, result, note))
        out.files[target.name] = median_wrk(files)
        out.files_parallel[target.name] = median_wrk(files_parallel)
        if target.is_proxy:
            out.warm_upstream[target.name] = len(upstream.since(mark))
    finally:
        target.stop()


ColdClient = Callable[[Target], float]


def measure_cold(
    targets: Sequence[Target], upstream: Nginx, client: ColdClient, runs: int, label: str
) -> tuple[dict[str, ColdRow], list[str]]:
    """Scenarios 3 and 4: a fresh target per run; time and what the upstream served meanwhile."""
    seconds: dict[str, list[float]] = {t.name: [] for t in targets}
    traffic: dict[str, list[tuple[int, int]]] = {t.name: [] for t in targets}
    errors: list[str] = []
    failed: set[str] = set()
    for _ in range(runs):
        for target in targets:
            if target.name in failed:
                continue
            try:
                target.start()
                mark = upstream.mark()
                seconds[target.name].append(client(target))
                target.sample_rss()
                lines = upstream.since(mark)
                traffic[target.name].append((sum(ln.body_bytes for ln in lines), len(lines)))
            except (BenchError, OSError) as exc:
                failed.add(target.name)
                errors.append(f"{target.name}: {label}: {exc}")
            finally:
                target.stop()
    rows = {}
    for name, times in seconds.items():
        if times:
            rows[name] = ColdRow(
                target=name,
                seconds=statistics.median(times),
                upstream_bytes=int(statistics.median(b for b, _ in traffic[name])),
                upstream_requests=int(statistics.median(n for _, n in traffic[name])),
                runs=len(times),
            )
    return rows, errors


def pip_client(ds: dataset.Dataset) -> ColdClient:
    def client(target: Target) -> float:
        work = WORK / "clients" / "pip" / target.name
        return clients.pip_download(target.index_url, ds.download_requirements, work)

    return client


def uv_client(requirements: Sequence[str]) -> ColdClient:
    def client(target: Target) -> float:
        work = WORK / "clients" / "uv" / target.name
        return clients.uv_compile(target.index_url, requirements, dataset.GRAPH_SIZE, work)

    return client


def measure_stampede(target: Target, upstream: Nginx, ds: dataset.Dataset) -> StampedeRow:
    """Scenario 5: 16 clients ask a cold proxy for the same 20 MB file at the same instant."""
    try:
        target.start()
        entry = ds.big_wheel
        url = file_url(target, entry.filename)  # the page is fetched cold; the file is not
        mark = upstream.mark()
        start = time.perf_counter()
        results = fetch_together(url, STAMPEDE_CLIENTS)
        elapsed = time.perf_counter() - start
        time.sleep(1.0)  # let a background fill that outlived its clients reach the log
        target.sample_rss()
        gets = [
            ln
            for ln in upstream.since(mark)
            if ln.method == "GET" and ln.uri.split("?")[0].endswith("/" + entry.filename)
        ]
        failures = []
        correct = 0
        for res in results:
            if isinstance(res, str):
                failures.append(res)
            elif res.status == 200 and res.sha256 == entry.sha256:
                correct += 1
            else:
                failures.append(f"status {res.status}, {res.size} bytes, sha256 {res.sha256[:12]}")
        return StampedeRow(target.name, len(gets), correct, tuple(failures), elapsed)
    finally:
        target.stop()
