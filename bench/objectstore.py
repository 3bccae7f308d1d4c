"""Scenario 13: files through storage.backend s3 (a real SeaweedFS) against the local backend.

One 200 MB wheel (incompressible) is uploaded to a local-backend daemon and to an s3-backend
daemon on a SeaweedFS bucket on 127.0.0.1. A warm GET of it is timed (MB/s, median of `runs`):
- local: sendfile from the data dir;
- s3, disk-cached: the same file on the s3 daemon's disk (sendfile too);
- s3, streamed: its disk copy removed before each GET, so the bytes stream from the bucket
  through wheelwell (and are kept on the disk on the way);
- s3, redirected: `redirect: true`, disk copy removed: a 302 to a presigned URL, which the
  client follows to SeaweedFS.
Then a cold mirror download of a second 200 MB wheel from a static upstream (nginx, loopback),
once through each backend: the client's wall time and the bytes it got.
Ratios within this one run are the figures to read: the machine is shared and noisy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import BenchError, Service, free_port, http_status
from bench.replication import Uploader, _clean_env, encode_upload
from bench.report import Check, splice, table
from bench.servers import REPO, WORK, Nginx
from tests.fakes.dists import Built, build_wheel
from tests.seaweed import BUCKET, CREDENTIALS, SeaweedFS, seaweedfs

HEADING = "## 13. Files through an S3-compatible store"
SIZE = 200 * 1000**2
#: the streamed figure should stay within this factor of the local backend's sendfile
STREAMED_FLOOR = 0.15
CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ObjectStoreResult:
    size: int
    warm_mbps: dict[str, float]  #: path → MB/s (median)
    cold_seconds: dict[str, float]  #: backend → seconds of one cold mirror download


class _Daemon:
    """A `python -m proxy serve` with its own storage section."""

    def __init__(self, name: str, work: Path, storage: Mapping[str, Any], upstream: str) -> None:
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data = work / f"{name}-data"
        self.config = work / f"{name}.yaml"
        self.config.write_text(
            json.dumps(
                {
                    "server": {"host": "127.0.0.1", "port": self.port, "shutdown_timeout": "3s"},
                    "storage": {"data_dir": str(self.data), **storage},
                    "upstream": {"url": upstream, "retries": 0, "read_timeout": "60s"},
                    "logging": {"level": "WARNING"},
                }
            )
        )
        self.log = work / f"{name}.log"
        self.service: Service | None = None

    def start(self) -> None:
        cmd: list[str | Path] = [sys.executable, "-m", "proxy", "serve", "--config", self.config]
        self.service = Service(
            self.name, cmd, log=self.log, cwd=REPO, env={**_clean_env(), **CREDENTIALS}
        )
        deadline = time.monotonic() + 60
        while http_status(self.base + "/+health") != 200:
            if self.service.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{self.name} did not start: {self.service.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None


def _get(url: str) -> tuple[float, int, str]:
    """Seconds, bytes and sha256 of one whole GET (redirects followed)."""
    digest = hashlib.sha256()
    size = 0
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as response:
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return time.perf_counter() - started, size, digest.hexdigest()


def _mbps(url: str, built: Built, runs: int, before: Callable[[], None]) -> float:
    rates = []
    for _ in range(runs):
        before()
        seconds, size, sha = _get(url)
        if size != built.size or sha != built.sha256:
            raise BenchError(f"{url}: got {size} bytes, sha256 {sha[:12]}…")
        rates.append(size / seconds / 1e6)
    return statistics.median(rates)


def _static_upstream(root: Path, built: Built) -> None:
    """A PEP 503 page for one project, its file beside it (nginx serves the directory)."""
    page = root / "simple" / built.name
    page.mkdir(parents=True)
    files = root / "files"
    files.mkdir()
    shutil.copy(built.path, files / built.filename)
    link = f"../../files/{built.filename}#sha256={built.sha256}"
    page.joinpath("index.html").write_text(f'<a href="{link}">{built.filename}</a>\n')
    root.joinpath("simple", "index.html").write_text(f'<a href="{built.name}/">{built.name}</a>\n')
    meta = {"api-version": "1.0"}
    entry = {"filename": built.filename, "url": link.split("#")[0], "size": built.size}
    entry["hashes"] = {"sha256": built.sha256}
    page.joinpath("index.json").write_text(
        json.dumps({"meta": meta, "name": built.name, "files": [entry]})
    )
    root.joinpath("simple", "index.json").write_text(
        json.dumps({"meta": meta, "projects": [{"name": built.name}]})
    )


@contextlib.contextmanager
def _running(*things: Any) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for thing in things:
            stack.callback(thing.stop)
        yield


def measure_objectstore(
    runs: int, say: Callable[[str], None] = lambda _: None
) -> ObjectStoreResult:
    work = WORK / "servers" / "objectstore"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    say("s3: building two 200 MB wheels")
    hosted = build_wheel(work / "wheels", "hostedbig", "1.0", payload_size=SIZE)
    mirrored = build_wheel(work / "wheels", "mirroredbig", "1.0", payload_size=SIZE)
    _static_upstream(work / "upstream", mirrored)
    nginx = Nginx(work / "upstream", work / "nginx")
    store: SeaweedFS = seaweedfs(work / "seaweedfs")
    s3 = {"endpoint": "", "bucket": BUCKET, "prefix": "bench/", "addressing": "path"}
    warm: dict[str, float] = {}
    cold: dict[str, float] = {}
    with _running(nginx, store):
        nginx.start()
        store.start()
        s3["endpoint"] = store.endpoint
        upstream = f"{nginx.url}/simple/"
        local = _Daemon("local", work, {}, upstream)
        remote = _Daemon("s3", work, {"backend": "s3", "s3": s3}, upstream)
        body = encode_upload(hosted)
        path = f"/root/public/+f/{hosted.sha256}/{hosted.filename}"
        with _running(local, remote):
            for daemon in (local, remote):
                daemon.start()
                say(f"s3: upload to the {daemon.name} backend")
                Uploader(daemon.base).send([body], 1)
            copy = remote.data / "blobs" / hosted.sha256[:2] / hosted.sha256

            def drop() -> None:
                copy.unlink(missing_ok=True)

            say("s3: warm GETs")
            warm["local backend (sendfile)"] = _mbps(local.base + path, hosted, runs, lambda: None)
            warm["s3, on this disk (sendfile)"] = _mbps(
                remote.base + path, hosted, runs, lambda: None
            )
            warm["s3, streamed from the bucket"] = _mbps(remote.base + path, hosted, runs, drop)
            for daemon in (local, remote):
                say(f"s3: cold mirror download through the {daemon.name} backend")
                url = f"{daemon.base}/root/pypi/+f/{mirrored.sha256}/{mirrored.filename}"
                cold[daemon.name] = _get(url)[0]
        redirected = _Daemon(
            "s3", work, {"backend": "s3", "s3": {**s3, "redirect": True}}, upstream
        )
        with _running(redirected):
            redirected.start()
            copy.unlink(missing_ok=True)
            warm["s3, redirected to a presigned URL"] = _mbps(
                redirected.base + path, hosted, runs, lambda: copy.unlink(missing_ok=True)
            )
    return ObjectStoreResult(SIZE, warm, cold)


def objectstore_checks(result: ObjectStoreResult | None) -> list[Check]:
    what = "a 200 MB file streamed from the bucket, vs the local backend's sendfile"
    goal = f">= {STREAMED_FLOOR:g}x"
    if result is None:
        return [Check(what, "no figure", goal, False)]
    local = result.warm_mbps["local backend (sendfile)"]
    streamed = result.warm_mbps["s3, streamed from the bucket"]
    ratio = streamed / local
    measured = f"{ratio:.2f}x ({streamed:.0f} vs {local:.0f} MB/s)"
    return [Check(what, measured, goal, ratio >= STREAMED_FLOOR)]


def objectstore_section(result: ObjectStoreResult | None, errors: Sequence[str]) -> str:
    text = (
        f"{HEADING}\n\n"
        "A 200 MB incompressible wheel, uploaded to a local-backend daemon and to an "
        "s3-backend daemon on a real SeaweedFS bucket (both on loopback), then fetched whole by "
        "a Python client (median MB/s). `streamed`: the daemon's disk copy removed before each "
        "GET; `redirected`: `redirect: true`, the client follows the 302 to the store. The cold "
        "row: one mirror download of another 200 MB wheel from a loopback nginx upstream.\n\n"
    )
    if result is None:
        return text + "No figures: " + "; ".join(errors) + "\n"
    local = result.warm_mbps["local backend (sendfile)"]
    rows = [
        [name, f"{mbps:.0f}", f"{mbps / local:.2f}x"] for name, mbps in result.warm_mbps.items()
    ]
    text += table(["warm GET of 200 MB", "MB/s", "vs local"], rows)
    cold = [[name, f"{seconds:.2f}"] for name, seconds in result.cold_seconds.items()]
    return text + "\n" + table(["cold mirror download, 200 MB", "seconds"], cold)


def splice_objectstore(existing: str, result: ObjectStoreResult | None, errors: list[str]) -> str:
    return splice(
        existing, objectstore_checks(result), HEADING, objectstore_section(result, errors)
    )
