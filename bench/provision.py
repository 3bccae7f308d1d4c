"""Set up a fresh machine (nginx and wrk from apt, the peers in a venv); record versions."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from bench.clients import UV
from bench.procs import BenchError, run
from bench.servers import BENCH_VENV

APT_PACKAGES = ("nginx", "wrk")
PEERS = ("proxpi", "devpi-server", "gunicorn")


def ensure_tools() -> None:
    """Install nginx and wrk with apt-get when either is missing (needs root)."""
    if all(shutil.which(p) for p in APT_PACKAGES):
        return
    if os.geteuid() != 0:
        raise BenchError(f"{' and '.join(APT_PACKAGES)} missing and not root: install them first")
    print(f"installing {' '.join(APT_PACKAGES)} with apt-get ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], timeout=600, env=env)
    run(["apt-get", "install", "-y", "-qq", *APT_PACKAGES], timeout=600, env=env)


def ensure_bench_venv() -> None:
    """`.bench-venv/` with the peers, installed by pip the ordinary way; kept between runs."""
    bindir = BENCH_VENV / "bin"
    wanted = [bindir / "devpi-server", bindir / "devpi-init", bindir / "gunicorn"]
    if all(p.exists() for p in wanted) and _peer_versions().get("proxpi"):
        return
    print(f"creating {BENCH_VENV.name} with {', '.join(PEERS)} ...", flush=True)
    run([sys.executable, "-m", "venv", BENCH_VENV], timeout=300)
    pip: list[str | Path] = [
        bindir / "python",
        "-m",
        "pip",
        "--disable-pip-version-check",
        "install",
        "--quiet",
    ]
    run([*pip, *PEERS], timeout=900)


def _peer_versions() -> dict[str, str]:
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        return {}
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    done = run([python, "-c", code, *PEERS], timeout=60)
    versions: dict[str, str] = json.loads(done.stdout)
    return versions


def _tool_version(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "?"


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _mem_total() -> str:
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return "?"
    return f"{kib / 1024**2:.1f} GiB"


def describe_machine() -> dict[str, str]:
    """What the report's header says about where and with what the figures were taken."""
    try:
        wheelwell = importlib.metadata.version("wheelwell")
    except importlib.metadata.PackageNotFoundError:
        wheelwell = "?"
    info = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{_cpu_model()} x {os.cpu_count()}",
        "memory": _mem_total(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wheelwell": wheelwell,
        "nginx": _tool_version(["nginx", "-v"]),
        "wrk": _tool_version(["wrk", "-v"]),
        "pip": importlib.metadata.version("pip"),
        "uv": _tool_version([str(UV), "--version"]),
    }
    info.update(_peer_versions())
    return info
