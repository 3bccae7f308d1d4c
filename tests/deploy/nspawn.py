"""A Debian tree with systemd, booted by `systemd-nspawn -b`, to run deploy/systemd for real.

The tree is debootstrapped once into the deploy cache (atomically: a temporary directory, then a
rename) and reused; every boot runs on a throwaway copy (`--ephemeral`), so the cache stays clean.
The host may not run systemd (no machined: `machinectl`/`systemctl -M` cannot reach the machine),
so commands enter the machine's namespaces with `nsenter` and talk to its systemd from inside.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import terminate
from tests.deploy.conftest import need, need_root
from tests.polling import wait_until

SUITE = "bookworm"
#: what the unit needs in the machine: systemd as PID 1 (and its bus), Python with venv
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "ca-certificates")
BOOT_TIMEOUT = 90.0
#: the PATH commands run with inside the machine
MACHINE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "deploy" / "systemd"


class NoMirrorError(Exception):
    """This host's apt has no Debian source for SUITE: nothing to debootstrap from."""


def cache_dir() -> Path:
    """Where slow artefacts live between runs: $WHEELWELL_DEPLOY_CACHE or ~/.cache."""
    default = Path.home() / ".cache" / "wheelwell-deploy"
    return Path(os.environ.get("WHEELWELL_DEPLOY_CACHE") or default)


def debian_mirror() -> str:
    """The Debian mirror this host's apt uses (deb822 or one-line sources), for debootstrap."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for stanza in path.read_text(encoding="utf-8").split("\n\n"):
            fields = dict(
                (key.strip(), value.strip())
                for line in stanza.splitlines()
                if not line.startswith("#")
                for key, sep, value in [line.partition(":")]
                if sep
            )
            if SUITE in fields.get("Suites", "").split() and "deb" in fields.get("Types", ""):
                return fields["URIs"].split()[0]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text(encoding="utf-8").splitlines():
            match = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", line + " ")
            if match:
                return match.group(1)
    raise NoMirrorError(f"no apt source for Debian {SUITE} on this host to debootstrap from")


def systemd_tree() -> Path:
    """The cached debootstrapped Debian tree with systemd; built on first use."""
    key = hashlib.sha256(" ".join((SUITE, *PACKAGES)).encode()).hexdigest()[:12]
    tree = cache_dir() / f"nspawn-{SUITE}-{key}"
    if tree.is_dir():
        return tree
    tree.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{tree.name}-", dir=tree.parent))
    try:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(building),
                debian_mirror(),
            ],
            check=True,
            capture_output=True,
            timeout=1800,
        )
        # A machine-id is made at each boot of the (ephemeral) copy.
        (building / "etc" / "machine-id").write_text("")
        building.chmod(0o755)
        building.rename(tree)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        if tree.is_dir():  # another run finished first: its tree is as good
            return tree
        raise
    return tree


def wheels(repo: Path, dest: Path) -> list[Path]:
    """Directories of wheels installing wheelwell from `repo` with no index: deps, then its own.

    The dependencies are cached (keyed by pyproject's list, for this Python); wheelwell's wheel is
    built fresh into `dest`, from the working tree.
    """
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    requirements = sorted(pyproject["project"]["dependencies"])
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    key = hashlib.sha256("\n".join([tag, *requirements]).encode()).hexdigest()[:12]
    deps = cache_dir() / f"wheels-{tag}-{key}"
    if not deps.is_dir():
        deps.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{deps.name}-", dir=deps.parent))
        try:
            _pip("wheel", "--wheel-dir", str(building), *requirements)
            building.chmod(0o755)
            building.rename(deps)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            if not deps.is_dir():
                raise
    # From a copy: setuptools would leave build/ in the work tree and reuse stale files from it.
    source = dest.with_name(f"{dest.name}-source")
    junk = (".git", ".venv", "build", "*.egg-info", "*_cache", "__pycache__", "tests", "bench")
    shutil.copytree(repo, source, ignore=shutil.ignore_patterns(*junk))
    _pip("wheel", "--no-deps", "--wheel-dir", str(dest), str(source))
    return [deps, dest]


def _pip(*args: str) -> None:
    """Host pip with its own configuration (the index the machine has no access to)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "--quiet", *args],
        check=True,
        capture_output=True,
        timeout=900,
    )


@dataclass
class Machine:
    """A booted machine: `leader` is its PID 1 (systemd) as the host sees it."""

    name: str
    process: subprocess.Popen[bytes]
    console: Path
    leader: int

    def run(
        self, *argv: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the machine (all its namespaces), with a clean environment."""
        command = ["nsenter", "--target", str(self.leader), "--all", "--"]
        command += ["env", "-i", f"PATH={MACHINE_PATH}", "LANG=C.UTF-8", *argv]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"in {self.name}: {' '.join(argv)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def sh(self, script: str, check: bool = True, timeout: float = 120.0) -> str:
        """A shell script inside the machine; returns its stdout."""
        return self.run("sh", "-ec", script, check=check, timeout=timeout).stdout

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", unit, check=False).stdout

    def poweroff(self, timeout: float = 60.0) -> None:
        """SIGTERM to nspawn: it asks systemd for a clean poweroff; SIGKILL if it hangs."""
        terminate(self.process, timeout)


def _leader(nspawn: int) -> int:
    """The machine's PID 1: the child of nspawn that is PID 1 in its PID namespace (0: none yet)."""
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(
                line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
            )
            child = fields.get("PPid", "").strip() == str(nspawn)
            if child and fields.get("NSpid", "").split()[-1:] == ["1"]:
                return int(status.parent.name)
    return 0


def _console_tail(console: Path) -> str:
    return console.read_text(errors="replace")[-3000:] if console.exists() else ""


@contextlib.contextmanager
def boot(
    tree: Path, name: str, binds: Sequence[tuple[Path, str]], workdir: Path
) -> Iterator[Machine]:
    """Boot a throwaway copy of `tree` (--ephemeral) with systemd; power it off at the end.

    The host network is shared (no --private-network): 127.0.0.1 is the same on both sides.
    --register=no and --keep-unit: no machined or host systemd is needed.
    """
    console = workdir / f"{name}.console"
    argv = [
        "systemd-nspawn",
        f"--directory={tree}",
        "--ephemeral",
        f"--machine={name}",
        "--register=no",
        "--keep-unit",
        "--console=passive",
        *(f"--bind-ro={host}:{inside}" for host, inside in binds),
        "--boot",
    ]
    with console.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    machine: Machine | None = None
    try:

        def started() -> int:
            if process.poll() is not None:
                raise AssertionError(
                    f"systemd-nspawn exited {process.returncode}:\n{_console_tail(console)}"
                )
            return _leader(process.pid)

        leader = wait_until(
            started,
            timeout=BOOT_TIMEOUT,
            interval=0.2,
            message=lambda: f"{name} to start:\n{_console_tail(console)}",
        )
        machine = Machine(name, process, console, leader)

        def booted() -> bool:
            state = machine.run(
                "systemctl", "is-system-running", check=False, timeout=10
            ).stdout.strip()
            return state in ("running", "degraded")

        wait_until(
            booted,
            timeout=BOOT_TIMEOUT,
            interval=0.5,
            message=lambda: f"{name} to finish booting:\n{_console_tail(console)}",
        )
        yield machine
    finally:
        if machine is not None:
            machine.poweroff()
        elif process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def usable_tree() -> Path:
    """The systemd tree, or a skip naming what this host lacks (root, a command, a mirror)."""
    need_root()
    need("systemd-nspawn", "debootstrap", "nsenter")
    try:
        return systemd_tree()
    except NoMirrorError as exc:
        pytest.skip(str(exc))


def install_script(
    root_password: str, port: int, index_url: str, units: Sequence[str], enable: Sequence[str]
) -> str:
    """The unit header's steps, with the wheels bound in from the host (no network needed)."""
    return (
        "python3 -m venv /opt/wheelwell\n"
        "/opt/wheelwell/bin/pip install --quiet --no-index"
        " --find-links /mnt/deps --find-links /mnt/dist wheelwell\n"
        "install -Dm0644 /mnt/systemd/wheelwell.yaml /etc/wheelwell/wheelwell.yaml\n"
        "install -Dm0600 /dev/null /etc/wheelwell/env\n"
        f"echo WHEELWELL_ROOT_PASSWORD={root_password} >> /etc/wheelwell/env\n"
        f"echo WHEELWELL_SERVER_PORT={port} >> /etc/wheelwell/env\n"
        f"echo PIP_INDEX_URL={index_url} >> /etc/wheelwell/env\n"
        f"install -m0644 {' '.join(f'/mnt/systemd/{unit}' for unit in units)}"
        " /etc/systemd/system/\n"
        f"systemctl daemon-reload && systemctl enable --now {' '.join(enable)}\n"
    )


@contextlib.contextmanager
def boot_installed(
    tree: Path,
    name: str,
    workdir: Path,
    *,
    root_password: str,
    port: int,
    index_url: str,
    units: Sequence[str] = ("wheelwell.service",),
    enable: Sequence[str] = ("wheelwell",),
) -> Iterator[Machine]:
    """Boot `tree` with wheelwell installed as the unit's header says, serving on `port` and
    mirroring `index_url`; `units` (files of deploy/systemd) installed, `enable` started."""
    deps, own = wheels(REPO, workdir / "dist")
    binds = [(deps, "/mnt/deps"), (own, "/mnt/dist"), (SYSTEMD, "/mnt/systemd")]
    with boot(tree, name, binds, workdir) as machine:
        script = install_script(root_password, port, index_url, units, enable)
        machine.sh(script, timeout=300)
        yield machine
