"""Scenario 8: a cached file under a flood of wrong passwords, and RSS after 100,000 random names.

(a) One client fetches a cached mirror file over and over (keep-alive, one request at a time),
first on a quiet daemon, then while `bench/hammer.py` (its own process) sends wrong passwords
for existing users from 250 loopback source addresses: each address and user has its own
budget, so password hashing really runs the whole time, and the file figure shows whether it
slows serving. (b) 100,000 random project names asked of `root/public` (a private index over
the mirror, whose upstream answers 404), then the daemon's VmRSS: memory that clients can grow
must be bounded.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from bench.load import JSON_ACCEPT
from bench.procs import BenchError, Service, free_port, http_status, read_vm
from bench.servers import REPO, WORK
from tests.fakes.dists import build_wheel
from tests.fakes.index import FakeIndex, ThreadedServer

ROOT_PASSWORD = "bench-root-password"  # noqa: S105 - a throwaway daemon's password
FLOOD_ADDRESSES = 250
FLOOD_USERS = 25
FLOOD_CONNECTIONS = 200  #: as in the issue: 200 concurrent wrong passwords, back to back
PACED_PAUSE = 1.0  #: the informational paced row: each of the 200 clients tries once a second
SAMPLE_SECONDS = 10.0  #: how long the file is fetched, quiet and under the flood each
NAMES = 100_000
NAMES_CONNECTIONS = 16
P99_RATIO_LIMIT = 2.0
RSS_LIMIT_MB = 100.0


@dataclass(frozen=True, slots=True)
class Latency:
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass(frozen=True, slots=True)
class SecurityResult:
    quiet: Latency
    flood: Latency
    flood_answers: dict[str, int]  #: status (or error) → count, from the flooding process
    #: informational: the same flood for unknown users (nothing is hashed), to tell what the
    #: request volume alone costs from what hashing adds
    control: Latency
    control_answers: dict[str, int]
    #: informational: the wrong passwords paced (a load the loop can absorb), so the figure
    #: shows hashing's effect on serving rather than a saturated event loop
    paced: Latency
    paced_answers: dict[str, int]
    names: int
    names_answers: dict[str, int]
    names_seconds: float
    rss_before_kib: int  #: VmRSS before the names
    rss_after_kib: int  #: VmRSS after them
    hwm_kib: int  #: VmHWM at the end

    @property
    def p99_ratio(self) -> float:
        return self.flood.p99_ms / max(self.quiet.p99_ms, 1e-9)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _request(base: str, method: str, path: str, body: object = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        base + path,
        data,
        {"Authorization": _basic("root", ROOT_PASSWORD), "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        status: int = resp.status
        return status


def _cached_file_path(base: str, project: str) -> str:
    """Warm the file (one cold fetch through the mirror) and return its path on the daemon."""
    page_url = f"{base}/root/pypi/+simple/{project}/"
    req = urllib.request.Request(page_url, headers={"Accept": JSON_ACCEPT})
    with urllib.request.urlopen(req, timeout=60) as resp:
        link: str = json.loads(resp.read())["files"][0]["url"]
    url = urljoin(page_url, link)
    with urllib.request.urlopen(url, timeout=60) as resp:
        resp.read()
    return urlsplit(url).path


def measure_latency(base: str, path: str, seconds: float) -> Latency:
    """Sequential keep-alive GETs of one file for `seconds`; p50/p99 of the whole exchange."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    samples: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    errors += 1
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
                continue
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        conn.close()
    if len(samples) < 2:  # before login throttling, a flood left 1 request in 10 s
        raise BenchError(f"only {len(samples)} file request(s) answered in {seconds:.0f} s")
    cuts = statistics.quantiles(samples, n=100)
    return Latency(len(samples), cuts[49], cuts[98], errors)


def _hammer(*args: object) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "bench.hammer", *map(str, args)]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)


def _answers(proc: subprocess.Popen[str], timeout: float) -> dict[str, int]:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise BenchError(f"bench.hammer exited {proc.returncode}")
    answers: dict[str, int] = json.loads(out)
    return answers


def _wait_for_failures(base: str, timeout: float = 30.0) -> None:
    """Until the daemon has answered logins: the flood is on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(base + "/+metrics", timeout=10) as resp:
            if b'wheelwell_http_requests_total{route="login"' in resp.read():
                return
        time.sleep(0.05)
    raise BenchError("the login flood never reached the daemon")


def _start_daemon(work: Path, upstream: str) -> tuple[Service, str]:
    port = free_port()
    config = work / "wheelwell.yaml"
    config.write_text(
        f"server: {{host: 127.0.0.1, port: {port}}}\n"
        f"storage: {{data_dir: {json.dumps(str(work / 'data'))}}}\n"
        f"upstream: {{url: {json.dumps(upstream)}}}\n"
        "logging: {level: WARNING}\n"
    )
    cmd: list[str | Path] = [sys.executable, "-m", "proxy", "serve", "--config", config]
    env = {**_clean_env(), "WHEELWELL_ROOT_PASSWORD": ROOT_PASSWORD}
    service = Service("wheelwell", cmd, log=work / "server.log", cwd=REPO, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while http_status(base + "/+health") != 200:
        if service.proc.poll() is not None or time.monotonic() > deadline:
            service.stop()
            raise BenchError(f"wheelwell did not start: {service.log_tail()}")
        time.sleep(0.05)
    return service, base


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("WHEELWELL_", "PIP_"))}


def measure_security(sample_seconds: float = SAMPLE_SECONDS) -> SecurityResult:
    """Both parts against one fresh daemon whose upstream is a loopback FakeIndex."""
    work = WORK / "servers" / "security"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    fake = FakeIndex(work / "upstream")
    fake.add(build_wheel(work / "dists", "cachedfile", "1.0", summary="x" * 2000))
    with ThreadedServer(fake.app) as upstream:
        service, base = _start_daemon(work, upstream.url + "/simple/")
        try:
            return _measure(service, base, sample_seconds)
        finally:
            service.stop()


def _under_flood(
    base: str, path: str, sample_seconds: float, users: int, pause: float = 0.0
) -> tuple[Latency, dict[str, int]]:
    """The file's latency while bench.hammer floods logins for `users` users (0: unknown ones)."""
    flood_seconds = sample_seconds + 5
    args = (flood_seconds, FLOOD_ADDRESSES, users, FLOOD_CONNECTIONS, pause)
    proc = _hammer("login", base, *args)
    try:
        _wait_for_failures(base)
        latency = measure_latency(base, path, sample_seconds)
        return latency, _answers(proc, flood_seconds + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _measure(service: Service, base: str, sample_seconds: float) -> SecurityResult:
    from bench.hammer import victim

    path = _cached_file_path(base, "cachedfile")
    for n in range(FLOOD_USERS):
        _request(base, "PUT", f"/{victim(n)}", {"password": f"right-{n}"})
    measure_latency(base, path, 1.0)  # warm the connection and the daemon's code paths
    quiet = measure_latency(base, path, sample_seconds)
    flood, flood_answers = _under_flood(base, path, sample_seconds, FLOOD_USERS)
    control, control_answers = _under_flood(base, path, sample_seconds, 0)
    paced, paced_answers = _under_flood(base, path, sample_seconds, FLOOD_USERS, PACED_PAUSE)
    rss_before = read_vm(service.pid, "VmRSS")
    started = time.perf_counter()
    names_answers = _answers(_hammer("names", base, NAMES, NAMES_CONNECTIONS), 3600)
    names_seconds = time.perf_counter() - started
    return SecurityResult(
        quiet=quiet,
        flood=flood,
        flood_answers=flood_answers,
        control=control,
        control_answers=control_answers,
        paced=paced,
        paced_answers=paced_answers,
        names=NAMES,
        names_answers=names_answers,
        names_seconds=names_seconds,
        rss_before_kib=rss_before,
        rss_after_kib=read_vm(service.pid, "VmRSS"),
        hwm_kib=read_vm(service.pid, "VmHWM"),
    )
