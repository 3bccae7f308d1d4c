"""The servers under test: nginx as the upstream (and the limit), wheelwell, proxpi and devpi."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.procs import BenchError, Service, free_port, run

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "work"
BENCH_VENV = REPO / ".bench-venv"

_NGINX_CONF = """\
daemon off;
user root;
worker_processes {workers};
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{
        text/html html;
        application/vnd.pypi.simple.v1+json json;
        application/octet-stream whl metadata;
    }}
    default_type application/octet-stream;
    log_format bench '$status $body_bytes_sent $request_method $request_uri';
    access_log {work}/access.log bench;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    absolute_redirect off;
    map $http_accept $simple_doc {{
        default index.html;
        "~application/vnd\\.pypi\\.simple\\.v1\\+json" index.json;
    }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location ~ ^/simple/[^/]+$ {{ return 301 $uri/; }}
        location /simple/ {{
            add_header Vary Accept;
            try_files $uri$simple_doc =404;
        }}
        location /files/ {{ }}
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class LogLine:
    """One request in nginx's access log."""

    status: int
    body_bytes: int
    method: str
    uri: str


class Nginx:
    """The local upstream: a static PEP 503/691 index and its files, with a parseable access log."""

    def __init__(self, root: Path, work: Path, workers: int = 2) -> None:
        self.work = work
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = work / "access.log"
        shutil.rmtree(work, ignore_errors=True)
        (work / "tmp").mkdir(parents=True)
        self.conf = work / "nginx.conf"
        self.conf.write_text(
            _NGINX_CONF.format(work=work, port=self.port, root=root, workers=workers)
        )
        self.access_log.touch()
        self.service: Service | None = None

    def start(self) -> None:
        run(["nginx", "-t", "-p", self.work, "-c", self.conf], timeout=30)
        self.stop()
        self.service = Service(
            "nginx", ["nginx", "-p", self.work, "-c", self.conf], log=self.work / "stderr.log"
        )
        try:
            self.service.wait_ready(f"{self.url}/simple/", timeout=20)
        except BenchError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None

    def mark(self) -> int:
        """A position in the access log; `since(mark)` returns the requests after it."""
        return self.access_log.stat().st_size

    def since(self, mark: int) -> list[LogLine]:
        with self.access_log.open("rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        lines = []
        for raw in text.splitlines():
            status, size, method, uri = raw.split(" ", 3)
            lines.append(LogLine(int(status), int(size), method, uri))
        return lines


class Upstream(Protocol):
    """What a target needs of its upstream: where it is (nginx itself, or a delaying proxy)."""

    url: str


class Target:
    """A server that pip and uv can use as `--index-url`; `start` gives it a fresh data dir."""

    name = "target"
    #: whether the target caches (so its RSS and its upstream traffic mean something)
    is_proxy = True

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        #: where `start` makes its fresh data dirs (a second scenario gives its own)
        self.work_dir = WORK / "servers"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.service: Service | None = None
        self.runs = 0
        self.peak_rss_kib = 0

    @property
    def index_url(self) -> str:
        raise NotImplementedError

    def page_url(self, project: str) -> str:
        return f"{self.index_url}{project}/"

    def _fresh_dir(self) -> Path:
        self.runs += 1
        data = self.work_dir / self.name / f"run{self.runs}"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        return data

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.peak_rss_kib = max(self.peak_rss_kib, self.service.peak_rss_kib)
            self.service = None

    def _launch(
        self,
        cmd: list[str | Path],
        ready_url: str,
        data: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Start the server (stopping any previous one) and wait for it; stop it if it never is."""
        self.stop()
        self.service = Service(self.name, cmd, log=data / "server.log", env=env, cwd=cwd)
        try:
            self.service.wait_ready(ready_url, timeout=60)
        except BenchError:
            self.stop()
            raise

    def sample_rss(self) -> None:
        if self.service is not None:
            self.service.read_rss()
            self.peak_rss_kib = max(self.peak_rss_kib, self.service.peak_rss_kib)


class Direct(Target):
    """nginx itself: what a client gets with no proxy at all."""

    name = "nginx"
    is_proxy = False

    @property
    def index_url(self) -> str:
        return f"{self.upstream.url}/simple/"

    def start(self) -> None:
        return None


class DirectOneWorker(Direct):
    """A second nginx with one worker process: the limit for a single-process server."""

    name = "nginx-1w"

    def __init__(self, upstream: Nginx) -> None:
        super().__init__(upstream)
        self.own = Nginx(upstream.root, upstream.work.with_name("nginx-1w"), workers=1)

    @property
    def index_url(self) -> str:
        return f"{self.own.url}/simple/"

    def start(self) -> None:
        self.own.start()

    def stop(self) -> None:
        self.own.stop()


def _upstream_extra() -> str:
    """More `upstream:` keys for A/B runs, e.g. WHEELWELL_BENCH_UPSTREAM='prefetch_metadata: 0'."""
    extra = os.environ.get("WHEELWELL_BENCH_UPSTREAM", "").strip()
    return f", {extra}" if extra else ""


class Wheelwell(Target):
    name = "wheelwell"

    @property
    def index_url(self) -> str:
        return f"{self.base}/root/pypi/+simple/"

    def start(self) -> None:
        data = self._fresh_dir()
        config = data / "wheelwell.yaml"
        config.write_text(
            f"server: {{host: 127.0.0.1, port: {self.port}}}\n"
            f"storage: {{data_dir: {data / 'data'}}}\n"
            f'upstream: {{url: "{self.upstream.url}/simple/"{_upstream_extra()}}}\n'
            "indexes: [{name: root/pypi, kind: mirror}]\n"
            "logging: {level: WARNING}\n"
        )
        cmd: list[str | Path] = [sys.executable, "-m", "proxy", "serve", "--config", config]
        self._launch(cmd, f"{self.base}/+health", data, cwd=REPO)


class Proxpi(Target):
    name = "proxpi"

    @property
    def index_url(self) -> str:
        return f"{self.base}/index/"

    def start(self) -> None:
        data = self._fresh_dir()
        env = dict(os.environ)
        env.update(
            PROXPI_INDEX_URL=f"{self.upstream.url}/simple/",
            PROXPI_CACHE_DIR=str(data / "cache"),
            PROXPI_LOGGING_LEVEL="WARNING",
        )
        gunicorn = BENCH_VENV / "bin" / "gunicorn"
        cmd: list[str | Path] = [
            gunicorn,
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "1",
            "--threads",
            "4",
        ]
        cmd += ["--log-level", "warning", "proxpi.server:app"]
        self._launch(cmd, f"{self.base}/health", data, env=env)


class Devpi(Target):
    name = "devpi"

    @property
    def index_url(self) -> str:
        return f"{self.base}/root/pypi/+simple/"

    def start(self) -> None:
        data = self._fresh_dir()
        bindir = BENCH_VENV / "bin"
        serverdir = data / "server"
        run([bindir / "devpi-init", "--serverdir", serverdir, "--no-root-pypi"], timeout=120)
        cmd: list[str | Path] = [
            bindir / "devpi-server",
            "--serverdir",
            serverdir,
            "--host",
            "127.0.0.1",
        ]
        cmd += ["--port", str(self.port), "--enable-core-metadata"]
        self._launch(cmd, f"{self.base}/+api", data)
        self._create_mirror()

    def _create_mirror(self) -> None:
        """root/pypi as a mirror of the local upstream, through devpi's JSON API."""
        login = _json_request(f"{self.base}/+login", "POST", {"user": "root", "password": ""})
        token = str(login["result"]["password"])
        auth = base64.b64encode(f"root:{token}".encode()).decode()
        body = {"type": "mirror", "mirror_url": f"{self.upstream.url}/simple/"}
        _json_request(f"{self.base}/root/pypi", "PUT", body, {"X-Devpi-Auth": auth})


def _json_request(
    url: str, method: str, body: object, headers: dict[str, str] | None = None
) -> dict[str, dict[str, object]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method=method)
    req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            result: dict[str, dict[str, object]] = json.loads(resp.read())
            return result
    except OSError as exc:
        raise BenchError(f"{method} {url} failed: {exc}") from exc


PROXIES: dict[str, type[Target]] = {"wheelwell": Wheelwell, "proxpi": Proxpi, "devpi": Devpi}
