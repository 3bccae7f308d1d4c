"""Shared fixtures: built dists, the fake upstream, the daemon as a subprocess, real clients."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.dists import Built, build_sdist, build_wheel
from tests.fakes.index import FakeIndex, ThreadedServer
from tests.polling import wait_until

#: `make test-deploy` runs tests/deploy (real engines, minutes); `make test` leaves it out
collect_ignore = [] if os.environ.get("WHEELWELL_TEST_DEPLOY") == "1" else ["deploy"]

ROOT_PASSWORD = "root-e2e-secret"
HEALTH_TIMEOUT = 20.0
CLIENT_TIMEOUT = 180.0


@dataclass(frozen=True, slots=True)
class Dists:
    """The packages every test can rely on, built once per session."""

    alpha: Built  #: alpha 1.0, requires beta>=1 and Python >=3.8
    alpha_future: Built  #: alpha 2.0, requires Python >=4: clients must skip it
    beta1: Built
    beta2: Built
    beta_yanked: Built  #: beta 3.0, yanked with a reason: clients must skip it
    gamma: Built  #: gamma 1.0, sdist only
    gamma_yanked: Built  #: gamma 0.9, sdist, yanked without a reason
    bulky: Built  #: ~5 MB wheel, for streaming and single-flight tests

    def load_into(self, fake: FakeIndex) -> None:
        """Register every dist with the right yanked flags."""
        for built in (self.alpha, self.alpha_future, self.beta1, self.beta2, self.gamma):
            fake.add(built)
        fake.add(self.beta_yanked, yanked="broken build")
        fake.add(self.gamma_yanked, yanked=True)
        fake.add(self.bulky)


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    dest = tmp_path_factory.mktemp("dists")
    return Dists(
        alpha=build_wheel(dest, "alpha", "1.0", requires=["beta>=1"], requires_python=">=3.8"),
        alpha_future=build_wheel(dest, "alpha", "2.0", requires=["beta>=1"], requires_python=">=4"),
        beta1=build_wheel(dest, "beta", "1.0"),
        beta2=build_wheel(dest, "beta", "2.0"),
        beta_yanked=build_wheel(dest, "beta", "3.0"),
        gamma=build_sdist(dest, "gamma", "1.0"),
        gamma_yanked=build_sdist(dest, "gamma", "0.9"),
        bulky=build_wheel(dest, "bulky", "1.0", payload_size=5 * 1024 * 1024),
    )


@pytest.fixture
def fake_index(tmp_path: Path, dists: Dists) -> FakeIndex:
    fake = FakeIndex(tmp_path / "upstream")
    dists.load_into(fake)
    return fake


@pytest.fixture
def fake_index_server(fake_index: FakeIndex) -> Iterator[ThreadedServer]:
    """The fake upstream on its own thread, for tests that block in subprocesses."""
    with ThreadedServer(fake_index.app) as server:
        yield server


@dataclass(frozen=True, slots=True)
class Fetched:
    """A plain urllib response, error statuses included."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 30.0) -> Fetched:
    """GET with urllib, the dumbest possible client, returning 4xx/5xx instead of raising."""
    return send(urllib.request.Request(url, headers=dict(headers or {})), timeout)


def send(request: urllib.request.Request, timeout: float = 30.0) -> Fetched:
    """One request with urllib; a 4xx/5xx answer comes back as a `Fetched`, not an exception."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Fetched(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Fetched(exc.code, dict(exc.headers), exc.read())


def terminate(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, then SIGKILL if the process outlives `timeout`; returns its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """This machine's environment minus pip/uv settings and proxies, plus `extra`."""
    dropped = ("PIP_", "UV_", "PYTHON")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(dropped)}
    env = {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.update(extra)
    return env


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class Daemon:
    """A running `python -m proxy serve`; `url` has no trailing slash."""

    url: str
    config_path: Path
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def index_url(self, index: str = "root/pypi") -> str:
        return f"{self.url}/{index}/+simple/"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it outlives `timeout`; returns the exit code."""
        return terminate(self.process, timeout)


def _healthy(daemon: Daemon) -> bool:
    if daemon.process.poll() is not None:
        pytest.fail(f"daemon exited with {daemon.process.returncode}:\n{daemon.log()}")
    try:
        with urllib.request.urlopen(f"{daemon.url}/+health", timeout=1) as response:
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(daemon: Daemon, timeout: float = HEALTH_TIMEOUT) -> None:
    """Poll /+health until 200; fail with the daemon's log if it exits or never answers."""
    try:
        wait_until(
            lambda: _healthy(daemon),
            timeout=timeout,
            interval=0.1,
            message=lambda: f"{daemon.url}/+health to answer 200:\n{daemon.log()}",
        )
    except BaseException:
        daemon.stop()
        raise


@dataclass
class DaemonFactory:
    """Writes a config under `workdir` and starts daemons; all are stopped at teardown."""

    workdir: Path
    started: list[Daemon] = field(default_factory=list)

    def __call__(
        self,
        upstream: str,
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Daemon:
        n = len(self.started)
        port = free_port()
        config: dict[str, Any] = {
            "server": {
                "host": "127.0.0.1",
                "port": port,
                "default_index": "root/pypi",
                "shutdown_timeout": "3s",  # below Daemon.stop's 10 s, so SIGTERM stays graceful
            },
            "storage": {"data_dir": str(self.workdir / f"data{n}")},
            "upstream": {
                "url": f"{upstream.rstrip('/')}/simple/",
                "page_ttl": "10m",
                "not_found_ttl": "1m",
                "retries": 0,
                "read_timeout": "5s",
                "connect_timeout": "2s",
            },
            "indexes": [
                {"name": "root/pypi", "kind": "mirror"},
                {"name": "root/public", "kind": "private", "bases": ["root/pypi"]},
            ],
            "logging": {"level": "INFO", "format": "text"},
            # refused logins answered at once; test_login_flood turns the tarpit on for itself
            "auth": {"login_throttled_delay": 0, "login_failure_delay": 0},
        }
        config = _merge(config, overrides or {})
        config_path = self.workdir / f"wheelwell{n}.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        log_path = self.workdir / f"daemon{n}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "proxy", "serve", "--config", str(config_path)],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(
                    PYTHONUNBUFFERED="1", WHEELWELL_ROOT_PASSWORD=ROOT_PASSWORD, **(env or {})
                ),
            )
        daemon = Daemon(
            f"http://127.0.0.1:{port}",
            config_path,
            Path(config["storage"]["data_dir"]),
            log_path,
            process,
        )
        self.started.append(daemon)
        wait_healthy(daemon)
        return daemon


@pytest.fixture
def daemon_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DaemonFactory]:
    factory = DaemonFactory(tmp_path / "daemon")
    factory.workdir.mkdir()
    yield factory
    for i, daemon in enumerate(factory.started):
        code = daemon.stop()
        request.node.add_report_section("teardown", f"daemon{i} log (exit {code})", daemon.log())


@pytest.fixture
def daemon(daemon_factory: DaemonFactory, fake_index_server: ThreadedServer) -> Daemon:
    """One daemon mirroring the threaded fake index."""
    return daemon_factory(fake_index_server.url)


class ClientError(AssertionError):
    """A client subprocess failed; the message carries its command and output."""


@dataclass
class Clients:
    """Runs pip, uv, twine and python with an environment no machine config can leak into."""

    workdir: Path

    @property
    def env(self) -> dict[str, str]:
        return clean_env(
            PIP_CONFIG_FILE=os.devnull,
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            PIP_NO_INPUT="1",
            UV_NO_CONFIG="1",
            UV_CACHE_DIR=str(self.workdir / "uv-cache"),
            UV_PYTHON_DOWNLOADS="never",
            UV_NO_PROGRESS="1",
            HOME=str(self.workdir / "home"),
        )

    def run(
        self, *argv: str, check: bool = True, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv,
            env={**self.env, **(env or {})},
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
            check=False,
        )
        if check and result.returncode != 0:
            raise ClientError(
                f"{' '.join(argv)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def pip(self, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`pip COMMAND --no-cache-dir --retries 0 ARGS`; no retries so failures are fast."""
        options = ("--no-cache-dir", "--retries", "0", "--timeout", "30")
        return self.run(sys.executable, "-m", "pip", command, *options, *args, check=check)

    def uv(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(str(Path(sys.executable).with_name("uv")), *args, check=check)

    def twine(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "twine", *args, check=check)

    def python(self, code: str, *, path: Path) -> str:
        """Run `code` with only `path` added to sys.path; returns stdout."""
        env = {"PYTHONPATH": str(path), "PYTHONNOUSERSITE": "1"}
        return self.run(sys.executable, "-c", code, env=env).stdout


@pytest.fixture
def clients(tmp_path: Path) -> Clients:
    workdir = tmp_path / "clients"
    (workdir / "home").mkdir(parents=True)
    return Clients(workdir)
