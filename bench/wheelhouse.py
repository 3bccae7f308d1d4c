"""Scenario 7: how long wheelwell takes to start with 10,000 files in a wheelhouse directory.

At start the daemon loads what earlier runs learnt from SQLite, scans the wheelhouse (hashing
only new or changed files) and only then listens, so start-up time is from the process start
until `GET /+health` answers 200. The first start over a fresh data dir hashes every file; the
later ones over the same data dir should hash nothing (or only what was added since).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.load import JSON_ACCEPT
from bench.procs import BenchError, Service, free_port, http_status
from bench.servers import REPO, WORK
from tests.fakes.dists import build_wheel

WHEELHOUSE = WORK / "wheelhouse"  #: the 10,000 wheels, generated once and reused
PROJECTS = 2000
VERSIONS = tuple(f"1.0.{i}" for i in range(5))
FILES = PROJECTS * len(VERSIONS)
EXTRA_PROJECTS = 2  #: x 5 versions: the 10 files added before the last start
ADDED_FILES = EXTRA_PROJECTS * len(VERSIONS)
START_LIMIT = 300.0  #: seconds a start may take before the scenario fails (the cold scan too)
#: bump when the generated data changes, so an old wheelhouse is regenerated
_FORMAT = {"projects": PROJECTS, "versions": list(VERSIONS), "format": 1}
_MARKER = ".bench-complete"  #: dot files are not distributions: the daemon ignores them


def project(i: int) -> str:
    return f"wh-{i:04d}"


def extra_project(i: int) -> str:
    return f"whextra-{i}"


#: whose pages are checked after each start: the first, one in the middle and the last
CHECKED = (project(0), project(PROJECTS // 2 + 7), project(PROJECTS - 1))


@dataclass(frozen=True, slots=True)
class Start:
    """One start of the daemon over the wheelhouse."""

    label: str
    seconds: float  #: process start until /+health answered 200
    files: int  #: distribution files in the wheelhouse at this start
    new_files: int  #: files the daemon had not seen before (what it must hash)
    checked: tuple[str, ...]  #: projects whose page listed exactly their files with their hashes


@dataclass(frozen=True, slots=True)
class WheelhouseResult:
    cold: Start
    unchanged: tuple[Start, ...]
    added: Start
    peak_rss_kib: int
    generate_seconds: float | None  #: None when the wheelhouse of an earlier run was reused

    @property
    def unchanged_median(self) -> float:
        return statistics.median(s.seconds for s in self.unchanged)

    @property
    def after_first_scan(self) -> tuple[Start, ...]:
        return (*self.unchanged, self.added)


def _marker_ok(root: Path) -> bool:
    try:
        found = json.loads((root / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return bool(found == _FORMAT) and sum(1 for _ in root.glob("wh_*.whl")) == FILES


def ensure_wheelhouse(root: Path = WHEELHOUSE) -> float | None:
    """Generate the 10,000 wheels unless a complete set is there; seconds spent, None if reused."""
    if _marker_ok(root):
        return None
    started = time.perf_counter()
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for i in range(PROJECTS):
        for version in VERSIONS:
            build_wheel(tmp, project(i), version, requires_python=">=3.8", summary="bench")
    (tmp / _MARKER).write_text(json.dumps(_FORMAT))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return time.perf_counter() - started


def _remove_extras(root: Path) -> None:
    for path in root.glob("whextra_*"):
        path.unlink()


def _add_extras(root: Path) -> None:
    for i in range(EXTRA_PROJECTS):
        for version in VERSIONS:
            build_wheel(root, extra_project(i), version, requires_python=">=3.8")


def _write_config(config: Path, port: int, data: Path, wheelhouse: Path, upstream: str) -> None:
    config.write_text(
        f"server: {{host: 127.0.0.1, port: {port}}}\n"
        f"storage: {{data_dir: {json.dumps(str(data))}, wheelhouse_poll: 2s}}\n"
        f"upstream: {{url: {json.dumps(upstream)}}}\n"
        "indexes:\n"
        "  - {name: root/pypi, kind: mirror}\n"
        "  - {name: root/public, kind: private, bases: [root/pypi], "
        f"wheelhouse: [{json.dumps(str(wheelhouse))}]}}\n"
        "logging: {level: WARNING}\n"
    )


def _check_page(base: str, name: str, wheelhouse: Path) -> None:
    """The private index's JSON page lists exactly the project's files, with their sha256."""
    dist = name.replace("-", "_")
    expected = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in wheelhouse.glob(f"{dist}-*.whl")
    }
    url = f"{base}/root/public/+simple/{name}/"
    req = urllib.request.Request(url, headers={"Accept": JSON_ACCEPT})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            doc = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        raise BenchError(f"GET {url}: {exc}") from exc
    listed = {f["filename"]: f["hashes"]["sha256"] for f in doc.get("files", [])}
    if len(expected) != len(VERSIONS) or listed != expected:
        raise BenchError(
            f"{url} lists {sorted(listed)}; the wheelhouse holds {sorted(expected)}"
            " (or a hash differs)"
        )


class _Daemon:
    """wheelwell over one data dir; each `start` is a new process, timed until /+health is 200."""

    def __init__(self, work: Path, wheelhouse: Path, upstream: str) -> None:
        self.work = work
        self.wheelhouse = wheelhouse
        self.upstream = upstream
        self.service: Service | None = None
        self.peak_rss_kib = 0

    def start(self) -> tuple[str, float]:
        """Start and wait; returns (base URL, seconds from process start to ready)."""
        self.stop()
        port = free_port()
        config = self.work / "wheelwell.yaml"
        _write_config(config, port, self.work / "data", self.wheelhouse, self.upstream)
        base = f"http://127.0.0.1:{port}"
        cmd: list[str | Path] = [sys.executable, "-m", "proxy", "serve", "--config", config]
        started = time.perf_counter()
        self.service = Service("wheelwell", cmd, log=self.work / "server.log", cwd=REPO)
        while True:
            if self.service.proc.poll() is not None:
                tail = self.service.log_tail()
                raise BenchError(f"wheelwell exited {self.service.proc.returncode}: {tail}")
            if http_status(f"{base}/+health", timeout=5) == 200:
                return base, time.perf_counter() - started
            if time.perf_counter() - started > START_LIMIT:
                raise BenchError(f"wheelwell not ready after {START_LIMIT:.0f}s")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.peak_rss_kib = max(self.peak_rss_kib, self.service.peak_rss_kib)
            self.service = None

    def timed_start(
        self, label: str, files: int, new_files: int, checked: tuple[str, ...]
    ) -> Start:
        """One start, its pages checked, then a clean stop (SIGTERM) so the next start is real."""
        try:
            base, seconds = self.start()
            for name in checked:
                _check_page(base, name, self.wheelhouse)
            if self.service is not None:
                self.service.read_rss()
        finally:
            self.stop()
        return Start(label, seconds, files, new_files, checked)


def measure_wheelhouse(runs: int, upstream: str | None = None) -> WheelhouseResult:
    """The first start (cold scan), `runs` starts with nothing changed, one after adding 10 files.

    `upstream` is the mirror's URL; nothing is fetched from it (every checked project is hosted
    in the wheelhouse, which hides the mirror), so by default it is a loopback port nobody uses.
    """
    generate_seconds = ensure_wheelhouse()
    _remove_extras(WHEELHOUSE)  # left behind by an interrupted run
    work = WORK / "servers" / "wheelhouse"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    daemon = _Daemon(work, WHEELHOUSE, upstream or f"http://127.0.0.1:{free_port()}/simple/")
    try:
        cold = daemon.timed_start("first start (cold scan)", FILES, FILES, CHECKED)
        unchanged = tuple(
            daemon.timed_start(f"unchanged, start {n + 2}", FILES, 0, CHECKED) for n in range(runs)
        )
        _add_extras(WHEELHOUSE)
        extras = tuple(extra_project(i) for i in range(EXTRA_PROJECTS))
        added = daemon.timed_start(
            f"{ADDED_FILES} files added, start {runs + 2}",
            FILES + ADDED_FILES,
            ADDED_FILES,
            CHECKED + extras,
        )
    finally:
        daemon.stop()
        _remove_extras(WHEELHOUSE)
    return WheelhouseResult(cold, unchanged, added, daemon.peak_rss_kib, generate_seconds)
