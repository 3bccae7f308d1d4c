"""Scenario 10: a primary and a read replica on loopback: lag during upload bursts, catch-up rate.

A real primary and a real replica (`python -m proxy serve`, `replication.secret_file`, 1 s
heartbeat) run as subprocesses. (a) The primary is filled with 1,000 releases (real uploads of
1,000 tiny distinct wheels across 100 projects, POSTed multipart like twine), then a fresh
replica with an empty data dir is started and timed until its `/+status` reports the primary's
serial, and until `files_pending` is 0 (private files copy in the background). (b) Then, per
run, bursts of 100 uploads (one client, and a few concurrent clients) go to the primary twice:
with the replica stopped (0 replicas) and with it streaming. During the streaming bursts a
separate thread keeps one keep-alive connection to the replica issuing `HEAD /+health` every
2 ms and notes when each `X-Wheelwell-Serial` value is first seen: an upload's lag is from the
primary's 200 (which carries the serial it committed) until the replica is seen at that serial.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.procs import BenchError, Service, free_port, http_status
from bench.servers import REPO, WORK
from tests.e2e.conftest import encode_multipart, upload_fields
from tests.fakes.dists import Built, build_wheel

ROOT_PASSWORD = "bench-root-password"  # noqa: S105 - a throwaway daemon's password
SECRET = "bench-replication-secret-0123456789"  # noqa: S105 - a throwaway cluster's secret
SERIAL_HEADER = "X-Wheelwell-Serial"
RELEASES = 1000  #: the catch-up's changelog: releases across PROJECTS projects
PROJECTS = 100
BURST = 100  #: uploads per burst
CLIENTS = 4  #: concurrent uploaders in the concurrent bursts
POLL = 0.002  #: the watcher's pause between two HEADs to the replica
CATCH_UP_POLL = 0.02  #: the catch-up's /+status polling period
LAG_P99_LIMIT_MS = 1000.0
WAIT = 120.0  #: longest wait for a catch-up before the scenario fails


#: the two ways a burst is sent: one client after another, and a few at once
MODES = (1, CLIENTS)


@dataclass(frozen=True, slots=True)
class Upload:
    """One upload the primary answered: when its 200 arrived and the serial it carried."""

    answered: float  #: time.monotonic() when the response was read
    serial: int
    seconds: float  #: request sent until response read


@dataclass(frozen=True, slots=True)
class Burst:
    """One burst of uploads to the primary."""

    replicas: int  #: 0 or 1 replica streaming while it ran
    clients: int
    uploads: int
    seconds: float
    primary_cpu: float  #: the primary's CPU seconds (user + system) during the burst
    #: the replica's, until it had applied the burst and copied its files; 0 with no replica
    replica_cpu: float
    watched: bool  #: the watcher polled the replica during it (the lag bursts)
    lags_ms: tuple[float, ...]  #: per upload, with a replica; empty without
    watch_requests: int  #: HEADs the watcher made during the burst

    @property
    def rate(self) -> float:
        return self.uploads / max(self.seconds, 1e-9)


@dataclass(frozen=True, slots=True)
class CatchUp:
    """A fresh replica following a primary that already holds `releases` releases."""

    entries: int  #: the primary's serial: changelog entries to replay
    releases: int
    files: int  #: blobs to copy (wheels and their PEP 658 metadata files)
    healthy_s: float  #: process start until /+status first answered
    serial_at_healthy: int
    caught_up_s: float  #: process start until /+status showed the primary's serial
    files_done_s: float  #: process start until files_pending was 0 (and the serial reached)

    @property
    def entries_per_s(self) -> float:
        """Replay rate, from the first answer (start-up excluded) until caught up."""
        todo = self.entries - self.serial_at_healthy
        return todo / max(self.caught_up_s - self.healthy_s, 1e-9)

    @property
    def files_per_s(self) -> float:
        return self.files / max(self.files_done_s - self.healthy_s, 1e-9)


@dataclass(frozen=True, slots=True)
class LagStats:
    uploads: int
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True, slots=True)
class ReplicationResult:
    catch_up: CatchUp
    fill_seconds: float  #: the 1,000 fill uploads, one client, no replica
    bursts: tuple[Burst, ...]
    runs: int
    build_seconds: float

    def lag(self, clients: int | None = None) -> LagStats:
        lags = [
            lag
            for b in self.bursts
            if b.watched and (clients is None or b.clients == clients)
            for lag in b.lags_ms
        ]
        return lag_stats(lags)

    def rate(self, replicas: int, clients: int) -> float:
        """Median uploads/s over the runs' bursts of this kind."""
        rates = [b.rate for b in self._unwatched(replicas, clients)]
        return statistics.median(rates) if rates else 0.0

    def _unwatched(self, replicas: int, clients: int) -> list[Burst]:
        """The throughput bursts: no watcher's load on the shared cores."""
        return [
            b
            for b in self.bursts
            if b.replicas == replicas and b.clients == clients and not b.watched
        ]

    def replica_cpu_ms(self, clients: int) -> float:
        """The replica's median CPU ms per upload it followed (unwatched bursts)."""
        per = [b.replica_cpu * 1000 / b.uploads for b in self._unwatched(1, clients)]
        return statistics.median(per) if per else 0.0

    def cpu_ms(self, replicas: int, clients: int) -> float:
        """The primary's median CPU ms per upload over the runs' bursts of this kind."""
        per = [b.primary_cpu * 1000 / b.uploads for b in self._unwatched(replicas, clients)]
        return statistics.median(per) if per else 0.0


# ---- pure helpers ----------------------------------------------------------------------------


def quantile(samples: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank method; 0.0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 1)))
    return ordered[int(rank) - 1]


def lag_stats(lags_ms: Sequence[float]) -> LagStats:
    return LagStats(
        len(lags_ms), quantile(lags_ms, 0.5), quantile(lags_ms, 0.99), max(lags_ms, default=0.0)
    )


def lags(uploads: Sequence[Upload], seen: Sequence[tuple[float, int]]) -> list[float | None]:
    """Per upload, ms from its 200 until the replica was first seen at its serial or later.

    `seen` is (time, serial) in time order, one row per serial rise; None: never seen. A serial
    already there when the 200 arrived counts 0 (the watcher cannot tell how much earlier).
    """
    result: list[float | None] = []
    for upload in uploads:
        first = next((t for t, serial in seen if serial >= upload.serial), None)
        result.append(None if first is None else max(0.0, (first - upload.answered) * 1000))
    return result


def encode_upload(built: Built) -> tuple[bytes, str]:
    """(body, content type): the multipart form twine POSTs for `built` (the e2e tests' own)."""
    data = built.path.read_bytes()
    head, content_type, tail = encode_multipart(upload_fields(built), built.filename, data)
    return head + data + tail, content_type


def cpu_seconds(stat_line: str, ticks: int) -> float:
    """utime + stime of a /proc/<pid>/stat line (all its threads), in seconds."""
    fields = stat_line.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks


# ---- processes -------------------------------------------------------------------------------


def _cpu(pid: int) -> float:
    try:
        line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    return cpu_seconds(line, os.sysconf("SC_CLK_TCK"))


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHEELWELL_", "PIP_"))}
    env["WHEELWELL_ROOT_PASSWORD"] = ROOT_PASSWORD
    return env


class Daemon:
    """One `python -m proxy serve` of the cluster, with its config and data dir under `work`."""

    def __init__(self, name: str, work: Path, replication: Mapping[str, object]) -> None:
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = work / f"{name}.yaml"
        unused = f"http://127.0.0.1:{free_port()}/simple/"  # the mirror is never asked
        self.config.write_text(
            f"server: {{host: 127.0.0.1, port: {self.port}, shutdown_timeout: 3s}}\n"
            f"storage: {{data_dir: {json.dumps(str(work / name))}}}\n"
            f"upstream: {{url: {json.dumps(unused)}, retries: 0}}\n"
            "logging: {level: WARNING}\n"
            f"replication: {json.dumps(dict(replication))}\n"
        )
        self.log = work / f"{name}.log"
        self.service: Service | None = None

    def start(self) -> float:
        """Start the process; returns its time.monotonic() start."""
        cmd: list[str | Path] = [sys.executable, "-m", "proxy", "serve", "--config", self.config]
        started = time.monotonic()
        self.service = Service(self.name, cmd, log=self.log, cwd=REPO, env=_clean_env())
        return started

    def wait_healthy(self) -> None:
        service = self._running()
        deadline = time.monotonic() + 60
        while http_status(self.base + "/+health") != 200:
            if service.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{self.name} did not start: {service.log_tail()}")
            time.sleep(0.02)

    def _running(self) -> Service:
        if self.service is None:
            raise BenchError(f"{self.name} is not running")
        return self.service

    @property
    def pid(self) -> int:
        return self._running().pid

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None

    def status(self) -> dict[str, object] | None:
        """/+status as JSON, or None when nothing answers yet."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/+status", headers={"Accept": "application/json"})
                resp = conn.getresponse()
                body = resp.read()
            finally:
                conn.close()
        except OSError:
            return None
        if resp.status != 200:
            return None
        got: dict[str, object] = json.loads(body)
        return got


def _hosted_blobs(data_dir: Path) -> int:
    """Blobs the primary's hosted rows name (wheels and their PEP 658 metadata files)."""
    conn = sqlite3.connect(f"file:{data_dir / 'wheelwell.sqlite3'}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT count(sha256) + count(metadata_sha256) FROM files").fetchone()
    finally:
        conn.close()
    return int(row[0])


def _serial(status: Mapping[str, object]) -> int:
    value = status.get("serial", 0)
    return value if isinstance(value, int) else 0


def _files_pending(status: Mapping[str, object]) -> int:
    primary = status.get("primary")
    pending = primary.get("files_pending", -1) if isinstance(primary, dict) else -1
    return pending if isinstance(pending, int) else -1


# ---- traffic ---------------------------------------------------------------------------------


class Uploader:
    """Keep-alive POSTs of prepared multipart bodies to the primary's `root/public`."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        token = base64.b64encode(f"root:{ROOT_PASSWORD}".encode()).decode()
        self.auth = f"Basic {token}"

    def send(self, bodies: Sequence[tuple[bytes, str]], clients: int) -> list[Upload]:
        """Upload every body with `clients` connections at once; each must answer 200."""
        queue = iter(bodies)
        lock = threading.Lock()
        done: list[Upload] = []

        def client() -> None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                while True:
                    with lock:
                        item = next(queue, None)
                    if item is None:
                        return
                    upload = self._one(conn, *item)
                    with lock:
                        done.append(upload)
            finally:
                conn.close()

        with ThreadPoolExecutor(clients) as pool:
            for future in [pool.submit(client) for _ in range(clients)]:
                future.result()
        return done

    def _one(self, conn: http.client.HTTPConnection, body: bytes, content_type: str) -> Upload:
        headers = {"Content-Type": content_type, "Authorization": self.auth}
        sent = time.monotonic()
        conn.request("POST", "/root/public/", body, headers)
        resp = conn.getresponse()
        answer = resp.read()
        answered = time.monotonic()
        if resp.status != 200:
            raise BenchError(f"upload answered {resp.status}: {answer[:300]!r}")
        serial = resp.headers.get(SERIAL_HEADER, "")
        if not serial.isdigit():
            raise BenchError(f"the primary's 200 has no {SERIAL_HEADER} header")
        return Upload(answered, int(serial), answered - sent)


class SerialWatch:
    """HEAD /+health on one keep-alive connection every POLL s, from a thread of its own."""

    def __init__(self, base: str, pause: float = POLL) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.pause = pause
        self.seen: list[tuple[float, int]] = []  #: (time, serial) at each rise of the serial
        self.requests = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serial watch", daemon=True)

    def __enter__(self) -> SerialWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        last = -1
        try:
            while not self._stop.is_set():
                conn.request("HEAD", "/+health")
                resp = conn.getresponse()
                resp.read()
                now = time.monotonic()
                self.requests += 1
                serial = int(resp.headers.get(SERIAL_HEADER) or -1)
                if serial > last:
                    self.seen.append((now, serial))
                    last = serial
                time.sleep(self.pause)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    def wait_for(self, serial: int, timeout: float = WAIT) -> None:
        """Until the replica was seen at `serial` (the burst's last uploads have arrived)."""
        deadline = time.monotonic() + timeout
        while not (self.seen and self.seen[-1][1] >= serial):
            if self.error is not None:
                raise BenchError(f"watching the replica failed: {self.error}")
            if time.monotonic() > deadline:
                raise BenchError(f"the replica never reached serial {serial}")
            time.sleep(0.01)


# ---- the scenario ----------------------------------------------------------------------------


def _project(i: int) -> str:
    return f"repl-{i % PROJECTS:03d}"


def _wheels(dest: Path, start: int, count: int) -> list[Built]:
    """`count` distinct tiny wheels: release i is project i mod 100, version (i div 100).0."""
    return [
        build_wheel(dest, _project(i), f"{i // PROJECTS}.0", summary=f"release {i}")
        for i in range(start, start + count)
    ]


def fresh_work(name: str, uploads: int) -> tuple[Path, list[tuple[bytes, str]]]:
    """An emptied `servers/<name>` work dir and the bodies of `uploads` distinct wheels."""
    work = WORK / "servers" / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work, [encode_upload(w) for w in _wheels(work / "wheels", 0, uploads)]


@contextlib.contextmanager
def standalone(work: Path) -> Iterator[Daemon]:
    """A standalone daemon on `work`, healthy; stopped on the way out whatever happens."""
    daemon = Daemon("server", work, {})
    try:
        daemon.start()
        daemon.wait_healthy()
        yield daemon
    finally:
        daemon.stop()


def _wait_caught_up(replica: Daemon, serial: int) -> None:
    """Until the replica is at `serial` with every file copied (nothing left in the background)."""
    deadline = time.monotonic() + WAIT
    while True:
        status = replica.status()
        if status is not None and _serial(status) >= serial and _files_pending(status) == 0:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{replica.name} did not catch up to serial {serial}: {status}")
        time.sleep(0.05)


def _catch_up(replica: Daemon, primary: Daemon, releases: int, files: int) -> CatchUp:
    """Start the fresh replica and poll its /+status until it has everything."""
    target_status = primary.status()
    if target_status is None:
        raise BenchError("the primary's /+status did not answer")
    target = _serial(target_status)
    started = replica.start()
    healthy_s = caught_up_s = -1.0
    serial_at_healthy = 0
    deadline = started + WAIT
    while True:
        status = replica.status()
        now = time.monotonic() - started
        if status is not None:
            serial = _serial(status)
            if healthy_s < 0:
                healthy_s, serial_at_healthy = now, serial
            if serial >= target and caught_up_s < 0:
                caught_up_s = now
            if caught_up_s >= 0 and _files_pending(status) == 0:
                return CatchUp(
                    target, releases, files, healthy_s, serial_at_healthy, caught_up_s, now
                )
        if replica.service is not None and replica.service.proc.poll() is not None:
            raise BenchError(f"the replica exited: {replica.service.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"the fresh replica did not catch up within {WAIT:.0f} s: {status}")
        time.sleep(CATCH_UP_POLL)


def _burst(
    primary: Daemon,
    replica: Daemon | None,
    bodies: Sequence[tuple[bytes, str]],
    clients: int,
    watched: bool = False,
) -> Burst:
    """Upload `bodies`; with a replica, until it has them all (watched: noting each serial)."""
    uploader = Uploader(primary.base)
    watch = SerialWatch(replica.base) if replica is not None and watched else None
    with watch if watch is not None else contextlib.nullcontext():
        replica_cpu = _cpu(replica.pid) if replica is not None else 0.0
        primary_cpu = _cpu(primary.pid)
        started = time.monotonic()
        done = uploader.send(bodies, clients)
        seconds = time.monotonic() - started
        primary_cpu = _cpu(primary.pid) - primary_cpu
        last = max(u.serial for u in done)
        if watch is not None:
            watch.wait_for(last)
        if replica is not None:
            _wait_caught_up(replica, last)
            replica_cpu = _cpu(replica.pid) - replica_cpu
    lags_ms: tuple[float, ...] = ()
    requests = 0
    if watch is not None:
        found = lags(done, watch.seen)
        if any(lag is None for lag in found):
            raise BenchError("the replica was never seen at some uploads' serials")
        lags_ms = tuple(lag for lag in found if lag is not None)
        requests = watch.requests
    return Burst(
        replicas=0 if replica is None else 1,
        clients=clients,
        uploads=len(done),
        seconds=seconds,
        primary_cpu=primary_cpu,
        replica_cpu=replica_cpu,
        watched=watch is not None,
        lags_ms=lags_ms,
        watch_requests=requests,
    )


def measure_replication(
    runs: int = 3, say: Callable[[str], None] = lambda _: None
) -> ReplicationResult:
    """Fill, fresh catch-up, then `runs` x (0 replicas, 1 replica, 1 watched) x MODES bursts."""
    work = WORK / "servers" / "replication"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    secret_file = work / "secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    started = time.perf_counter()
    wheels = _wheels(work / "wheels", 0, RELEASES + runs * 3 * len(MODES) * BURST)
    bodies = [encode_upload(w) for w in wheels]
    build_seconds = time.perf_counter() - started
    common = {"secret_file": str(secret_file), "heartbeat": "1s"}
    primary = Daemon("primary", work, {"role": "primary", **common})
    replica = Daemon(
        "replica", work, {"primary_url": primary.base, "replica_id": "bench-replica", **common}
    )
    with contextlib.ExitStack() as stack:
        stack.callback(primary.stop)
        stack.callback(replica.stop)
        primary.start()
        primary.wait_healthy()
        say(f"replication: {RELEASES:,} releases into the primary")
        fill = Uploader(primary.base)
        t0 = time.monotonic()
        fill.send(bodies[:RELEASES], 1)
        fill_seconds = time.monotonic() - t0
        files = _hosted_blobs(work / "primary")
        say("replication: a fresh replica catches up")
        catch_up = _catch_up(replica, primary, RELEASES, files)
        rest = iter(_chunks(bodies[RELEASES:], BURST))
        bursts: list[Burst] = []
        for run in range(runs):
            say(f"replication: run {run + 1}/{runs}: bursts of {BURST} uploads")
            replica.stop()
            for clients in MODES:
                bursts.append(_burst(primary, None, next(rest), clients))
            replica.start()
            replica.wait_healthy()
            status = primary.status() or {}
            _wait_caught_up(replica, _serial(status))
            for watched in (False, True):
                for clients in MODES:
                    bursts.append(_burst(primary, replica, next(rest), clients, watched))
    return ReplicationResult(catch_up, fill_seconds, tuple(bursts), runs, build_seconds)


def _chunks(items: Sequence[tuple[bytes, str]], size: int) -> Iterator[Sequence[tuple[bytes, str]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
