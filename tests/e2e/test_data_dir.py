"""The data dir, as an operator meets it: one daemon per dir, private files, no secret in logs."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import Daemon, DaemonFactory, clean_env, free_port, wait_healthy

pytestmark = pytest.mark.e2e


def _serve(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`wheelwell serve` that is expected to exit by itself."""
    return subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(PYTHONUNBUFFERED="1", **env),
        check=False,
    )


def _config(tmp_path: Path, data_dir: Path, port: int) -> Path:
    path = tmp_path / f"wheelwell-{port}.yaml"
    settings = {
        "server": {"host": "127.0.0.1", "port": port, "shutdown_timeout": "3s"},
        "storage": {"data_dir": str(data_dir)},
        "upstream": {"url": "http://127.0.0.1:9/simple/", "offline": True},
        "logging": {"level": "INFO", "format": "text"},
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def test_a_second_daemon_on_the_same_data_dir_is_refused(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    first = daemon_factory("http://127.0.0.1:9")
    second = _serve(_config(tmp_path, first.data_dir, free_port()))
    assert second.returncode == 1
    output = second.stdout + second.stderr
    assert f"is in use by another wheelwell (pid {first.process.pid})" in output
    assert "Traceback" not in output
    assert "listening on" not in output
    wait_healthy(first)  # the first one is untouched


def test_data_files_are_private(daemon: Daemon) -> None:
    """The database holds password and token hashes: nobody but the daemon's user reads it."""
    for path in (daemon.data_dir / "wheelwell.sqlite3", daemon.data_dir / "blobs"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_a_generated_root_password_goes_to_a_file_not_the_log(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    config = _config(tmp_path, data_dir, port)
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(PYTHONUNBUFFERED="1"),
        )
    daemon = Daemon(f"http://127.0.0.1:{port}", config, data_dir, log_path, process)
    try:
        wait_healthy(daemon)
        secret = data_dir / "root-password"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        password = secret.read_text().strip()
        assert len(password) >= 12
        assert password not in daemon.log()
        assert str(secret) in daemon.log()
        body = json.dumps({"user": "root", "password": password}).encode()
        request = urllib.request.Request(
            f"{daemon.url}/+login", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    finally:
        daemon.stop()


def test_an_unusable_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = _serve(_config(tmp_path, blocker / "data", free_port()))
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "cannot use data dir" in output
    assert "Not a directory" in output
    assert "Traceback" not in output
    assert "listening on" not in output


def test_probes_and_scrapes_are_not_logged_at_info(daemon: Daemon) -> None:
    """Probes every few seconds would bury the requests that matter in the access log."""
    for path in ("/+health", "/+ready", "/+metrics", "/+status"):
        with urllib.request.urlopen(f"{daemon.url}{path}", timeout=10) as response:
            response.read()
    daemon.stop()
    log = daemon.log()
    assert " GET /+status " in log
    for path in ("/+health", "/+ready", "/+metrics"):
        assert f" GET {path} " not in log, path
