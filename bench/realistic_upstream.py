"""The realistic upstream: the same wheels with no PEP 658 metadata, 700,000 root names, 30 ms away.

Real upstreams (Nexus, Artifactory, older devpi, corporate proxies) are tens of milliseconds away
and many offer no `.metadata` files, so uv falls back to a HEAD and Range reads of each wheel's
zip directory. This module derives that shape from the loopback dataset once (hard links to its
wheels, pages without metadata attributes, a ~49 MB root list) and serves it with a second nginx
(its own access log, with the Range header) behind `bench/delay.py`.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.dataset import render_root_html, render_root_json
from bench.procs import BenchError, Service, free_port
from bench.servers import REPO, Nginx

DELAY = 0.030  #: seconds added to every request (and to every new connection)
ROOT_NAMES = 700_000  #: generated names in the root list, besides the dataset's own projects
_STAMP = f"no-metadata variant v1, {ROOT_NAMES} names\n"
_SYLLABLES = tuple(
    a + b for a in "bcdfghklmnprstvz" for b in ("a", "e", "i", "o", "u", "y", "ar", "on")
)
_META_ATTR = re.compile(r' data-(?:dist-info|core)-metadata="[^"]*"')
_BENCH_LOG = "log_format bench '$status $body_bytes_sent $request_method $request_uri';"
_RANGE_LOG = "log_format bench '$status $body_bytes_sent $request_method $request_uri $http_range';"


def _root_names(real: list[str]) -> list[str]:
    """The dataset's projects among ROOT_NAMES made-up ones (~27 characters, like real lists)."""
    rng = random.Random(700_000)  # noqa: S311 - reproducible names, not a secret
    pick = rng.choices
    names = {
        f"{''.join(pick(_SYLLABLES, k=4))}-{''.join(pick(_SYLLABLES, k=4))}-{i}"
        for i in range(ROOT_NAMES)
    }
    names.update(real)
    return sorted(names)


def _link_files(source: Path, dest: Path) -> None:
    """Every file but `*.metadata`, hard-linked (copied across file systems)."""
    dest.mkdir(parents=True)
    for path in source.iterdir():
        if path.name.endswith(".metadata"):
            continue
        try:
            os.link(path, dest / path.name)
        except OSError:
            shutil.copy2(path, dest / path.name)


def _strip_json(text: str) -> str:
    doc = json.loads(text)
    for item in doc.get("files", ()):
        item.pop("core-metadata", None)
        item.pop("dist-info-metadata", None)
    return json.dumps(doc)


def _write_pages(source: Path, dest: Path) -> list[str]:
    """Project pages without metadata attributes; returns the project names."""
    projects = []
    for page in sorted(p for p in source.iterdir() if p.is_dir()):
        out = dest / page.name
        out.mkdir(parents=True)
        (out / "index.html").write_text(_META_ATTR.sub("", (page / "index.html").read_text()))
        (out / "index.json").write_text(_strip_json((page / "index.json").read_text()))
        projects.append(page.name)
    return projects


def ensure_variant(root: Path, source: Callable[[], Path]) -> float | None:
    """The no-metadata tree under `root`, made from the loopback tree `source()` gives unless a
    complete one is there already; returns the seconds generating took (None when reused)."""
    if variant_present(root):
        return None
    started = time.perf_counter()
    ds_root = source()
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _link_files(ds_root / "files", tmp / "files")
    projects = _write_pages(ds_root / "simple", tmp / "simple")
    names = _root_names(projects)
    (tmp / "simple" / "index.html").write_text(render_root_html(names))
    (tmp / "simple" / "index.json").write_text(render_root_json(names))
    (tmp / "STAMP").write_text(_STAMP)
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return time.perf_counter() - started


def variant_present(root: Path) -> bool:
    return (root / "STAMP").is_file() and (root / "STAMP").read_text() == _STAMP


@dataclass(frozen=True, slots=True)
class UpstreamLine:
    """One request the realistic nginx served."""

    status: int
    body_bytes: int
    method: str
    uri: str
    range: str  #: the Range header, "" when none


class RealisticUpstream:
    """nginx over the variant, reached only through the delaying proxy at `url`."""

    def __init__(self, root: Path, work: Path, delay: float = DELAY) -> None:
        self.nginx = Nginx(root, work / "nginx")
        conf = self.nginx.conf.read_text()
        if _BENCH_LOG not in conf:
            raise BenchError(
                "bench/servers.py's nginx log format changed; update realistic_upstream"
            )
        self.nginx.conf.write_text(conf.replace(_BENCH_LOG, _RANGE_LOG))
        self.delay = delay
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.service: Service | None = None

    @property
    def root_bytes(self) -> int:
        return (self.nginx.root / "simple" / "index.html").stat().st_size

    def start(self) -> None:
        self.nginx.start()
        to = f"127.0.0.1:{self.nginx.port}"
        cmd: list[str | Path] = [sys.executable, "-m", "bench.delay", "--listen", str(self.port)]
        cmd += ["--to", to, "--delay", str(self.delay)]
        self.service = Service("delay", cmd, log=self.work / "delay.log", cwd=REPO)
        try:
            self.service.wait_ready(f"{self.url}/simple/tiny/", timeout=20)
        except BenchError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None
        self.nginx.stop()

    def mark(self) -> int:
        return self.nginx.mark()

    def since(self, mark: int) -> list[UpstreamLine]:
        with self.nginx.access_log.open("rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        lines = []
        for raw in text.splitlines():
            status, size, method, uri, rng = raw.split(" ", 4)
            lines.append(
                UpstreamLine(int(status), int(size), method, uri, "" if rng == "-" else rng)
            )
        return lines
