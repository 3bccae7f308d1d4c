"""`wheelwell healthcheck`, as the image's HEALTHCHECK and exec probes run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import Daemon, clean_env, free_port, wait_healthy

pytestmark = pytest.mark.e2e


def _healthcheck(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(**env),
        check=False,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose port is NOT where the daemon will listen (its arguments move it)."""
    path = tmp_path / "wheelwell.yaml"
    settings = {
        "server": {"host": "0.0.0.0", "port": free_port(), "shutdown_timeout": "2s"},
        "storage": {"data_dir": str(tmp_path / "data")},
        "upstream": {"url": "http://127.0.0.1:9/simple/", "offline": True},
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def _start(config: Path, tmp_path: Path) -> Daemon:
    port = free_port()
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(config), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(PYTHONUNBUFFERED="1"),
        )
    daemon = Daemon(f"http://127.0.0.1:{port}", config, tmp_path / "data", log_path, process)
    wait_healthy(daemon)
    return daemon


def test_healthcheck_finds_a_daemon_whose_port_came_from_its_arguments(
    config: Path, tmp_path: Path
) -> None:
    daemon = _start(config, tmp_path)
    try:
        lock = (daemon.data_dir / "wheelwell.lock").read_text().splitlines()
        assert lock == [str(daemon.process.pid), daemon.url]  # a wildcard bind: loopback
        ok = _healthcheck("--config", str(config))
        assert ok.returncode == 0, ok.stderr
        assert ok.stderr == ""
        ready = _healthcheck("--config", str(config), "--ready")
        assert ready.returncode == 0, ready.stderr
    finally:
        daemon.stop()
    gone = _healthcheck("--config", str(config))
    assert gone.returncode == 1
    assert gone.stderr.count("\n") == 1  # one line, no traceback
    assert "Connection refused" in gone.stderr


def test_healthcheck_follows_the_port_from_the_environment(tmp_path: Path) -> None:
    """No config file, no lock file yet: WHEELWELL_SERVER_PORT is where it looks."""
    port = free_port()
    result = _healthcheck("--data-dir", str(tmp_path / "empty"), WHEELWELL_SERVER_PORT=str(port))
    assert result.returncode == 1
    assert f"http://127.0.0.1:{port}/+health" in result.stderr


def test_healthcheck_reports_a_bad_config_naming_the_key(tmp_path: Path) -> None:
    result = _healthcheck("--data-dir", str(tmp_path), WHEELWELL_SERVER_PORT="many")
    assert result.returncode == 2
    assert "WHEELWELL_SERVER_PORT" in result.stderr
