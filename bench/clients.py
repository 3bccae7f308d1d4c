"""Real clients run cold: `pip download` and `uv pip compile` with no cache and no user config."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.procs import BenchError, run

UV = Path(sys.executable).parent / "uv"


def client_env(cache_dir: Path) -> dict[str, str]:
    """This machine's environment minus any pip/uv settings, so only `--index-url` counts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(
        PIP_CONFIG_FILE="/dev/null",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_CACHE_DIR="1",
        UV_NO_CONFIG="1",
        UV_CACHE_DIR=str(cache_dir),
        UV_PYTHON_DOWNLOADS="never",
        XDG_CACHE_HOME=str(cache_dir),
    )
    return env


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def pip_download(index_url: str, requirements: Sequence[str], work: Path) -> float:
    """Seconds for a cold `pip download` of `requirements`; checks every wheel arrived."""
    dest = _fresh(work / "dest")
    env = client_env(_fresh(work / "cache"))
    cmd: list[str | Path] = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-input",
        "--progress-bar=off",
    ]
    cmd += ["--index-url", index_url, "--only-binary=:all:", "-d", dest, *requirements]
    start = time.perf_counter()
    run(cmd, timeout=300, env=env)
    elapsed = time.perf_counter() - start
    got = len(list(dest.glob("*.whl")))
    if got != len(requirements):
        raise BenchError(f"pip download via {index_url}: {got} wheels, wanted {len(requirements)}")
    return elapsed


def uv_compile(index_url: str, requirements: Sequence[str], expect_pins: int, work: Path) -> float:
    """Seconds for a cold `uv pip compile`; checks the lock pins the whole graph."""
    _fresh(work)
    infile = work / "requirements.in"
    infile.write_text("".join(f"{r}\n" for r in requirements))
    out = work / "requirements.txt"
    env = client_env(work / "cache")
    cmd: list[str | Path] = [
        UV,
        "pip",
        "compile",
        infile,
        "-o",
        out,
        "--index-url",
        index_url,
        "--quiet",
    ]
    cmd += ["--no-header", "--python", sys.executable, "--python-version", "3.11"]
    start = time.perf_counter()
    run(cmd, timeout=300, env=env)
    elapsed = time.perf_counter() - start
    pins = [ln for ln in out.read_text().splitlines() if "==" in ln]
    if len(pins) != expect_pins:
        raise BenchError(f"uv pip compile via {index_url}: {len(pins)} pins, wanted {expect_pins}")
    return elapsed


def pip_install(index_url: str, requirements: Sequence[str], work: Path) -> float:
    """Seconds for a real `pip install --target DIR --no-cache-dir`; checks every one installed."""
    dest = _fresh(work / "target")
    env = client_env(_fresh(work / "cache"))
    cmd: list[str | Path] = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-input",
        "--progress-bar=off",
        "--no-cache-dir",
    ]
    cmd += ["--index-url", index_url, "--only-binary=:all:", "--target", dest, *requirements]
    start = time.perf_counter()
    run(cmd, timeout=300, env=env)
    elapsed = time.perf_counter() - start
    got = len(list(dest.glob("*.dist-info")))
    if got != len(requirements):
        raise BenchError(
            f"pip install via {index_url}: {got} installed, wanted {len(requirements)}"
        )
    return elapsed
