"""The Debian base for make test-deploy: debootstrapped once, cached, imported into podman.

No registry can be pulled from on the machines make test-deploy runs on, so every image starts
from a Debian tree built here from Debian packages. Helpers share it: call debian_base_image()
(or debian_rootfs() for a plain tree, e.g. for systemd-nspawn), never debootstrap your own.
The cache is ${WHEELWELL_DEPLOY_CACHE:-~/.cache/wheelwell-deploy}; each tree is named by a hash
of its inputs, built in a temporary directory and renamed, so an interrupted build never counts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import need, need_root

SUITE = "bookworm"
VARIANT = "minbase"
#: What every image built on the base needs: a venv-capable Python and the CA bundle
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_IMAGE = "localhost/wheelwell-debian-base:bookworm"
#: The label on the imported image naming the tarball it came from (re-imported on change)
INPUTS_LABEL = "org.wheelwell.base-inputs"
FALLBACK_MIRROR = "http://deb.debian.org/debian"

#: podman's global flags on this kind of machine (no systemd cgroup manager, runc not crun)
PODMAN = ("podman", "--runtime", "runc", "--cgroup-manager=cgroupfs")
REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "container" / "Dockerfile"
IGNOREFILE = REPO / "deploy" / "container" / "Dockerfile.dockerignore"
BUILD_TIMEOUT = 1200.0


def _limit(kind: int, wanted: int) -> int:
    """`wanted`, capped at this process's hard limit: runc cannot raise a limit above it."""
    hard = resource.getrlimit(kind)[1]
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


_NOFILE = _limit(resource.RLIMIT_NOFILE, 65536)
_NPROC = _limit(resource.RLIMIT_NPROC, 4096)
#: `podman run`/`create` limits: podman's defaults (nofile 1048576) exceed this machine's hard
#: limits, and runc then refuses to start the container
RUN_LIMITS = ("--ulimit", f"nofile={_NOFILE}:{_NOFILE}", "--ulimit", f"nproc={_NPROC}:{_NPROC}")

DEBOOTSTRAP_TIMEOUT = 1800.0
IMPORT_TIMEOUT = 600.0


def cache_dir() -> Path:
    """The cache for slow artefacts, shared by every make test-deploy run on this machine."""
    configured = os.environ.get("WHEELWELL_DEPLOY_CACHE")
    root = Path(configured) if configured else Path.home() / ".cache" / "wheelwell-deploy"
    root.mkdir(parents=True, exist_ok=True)
    return root


def apt_mirror() -> str:
    """The Debian mirror apt on this host uses (a local mirror is faster than the fallback)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for stanza in sources.read_text().split("\n\n"):
            if re.search(rf"^Suites:.*\b{SUITE}\b", stanza, re.M):
                found = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                if found:
                    return found.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    return FALLBACK_MIRROR


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise builds of one artefact across the helpers' concurrent test runs."""
    with (cache_dir() / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _inputs_key(packages: tuple[str, ...]) -> str:
    """A short hash of what makes a tree: the cache is rebuilt only when these change."""
    text = "\n".join([SUITE, VARIANT, *sorted(packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def debian_rootfs(packages: tuple[str, ...] = BASE_PACKAGES) -> Path:
    """A debootstrapped Debian tree with `packages`, built once (read it, don't change it)."""
    need_root()
    need("debootstrap")
    name = f"debian-{SUITE}-{VARIANT}-{_inputs_key(packages)}"
    done = cache_dir() / name
    if done.is_dir():
        return done
    with _locked(name):
        if done.is_dir():
            return done
        for stale in cache_dir().glob(f"{name}.tmp-*"):  # an interrupted build's leftovers
            shutil.rmtree(stale, ignore_errors=True)
        work = cache_dir() / f"{name}.tmp-{os.getpid()}"
        command = [
            "debootstrap",
            f"--variant={VARIANT}",
            f"--include={','.join(packages)}",
            SUITE,
            str(work),
            apt_mirror(),
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT, check=False
        )
        if result.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
            pytest.fail(f"debootstrap failed ({result.returncode}): " + " | ".join(tail))
        # Package lists and the .deb cache are hundreds of MB nobody reads again.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (work / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        work.rename(done)
    return done


def _tarball(rootfs: Path) -> Path:
    """The tree as a tarball for `podman import`, written once next to the tree."""
    tar = rootfs.with_name(rootfs.name + ".tar")
    if tar.is_file():
        return tar
    with _locked(tar.name):
        if tar.is_file():
            return tar
        for stale in tar.parent.glob(f"{tar.name}.tmp-*"):
            stale.unlink()
        partial = tar.with_name(f"{tar.name}.tmp-{os.getpid()}")
        subprocess.run(
            [
                "tar",
                "--numeric-owner",
                "--xattrs",
                "-C",
                str(rootfs),
                "--exclude=./dev/*",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "-cf",
                str(partial),
                ".",
            ],
            check=True,
            timeout=IMPORT_TIMEOUT,
        )
        partial.rename(tar)
    return tar


def _containers_conf() -> Path:
    """A containers.conf with RUN_LIMITS as defaults: a pod's infra container takes no --ulimit."""
    path = cache_dir() / f"containers-{_NOFILE}-{_NPROC}.conf"
    if not path.is_file():
        partial = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        partial.write_text(
            "[containers]\n"
            f'default_ulimits = ["nofile={_NOFILE}:{_NOFILE}", "nproc={_NPROC}:{_NPROC}"]\n'
        )
        partial.rename(path)
    return path


def podman(
    *args: str, timeout: float = 120.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run podman with this machine's global flags, capturing text output."""
    env = {**os.environ, "CONTAINERS_CONF": str(_containers_conf())}
    result = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result


def require_podman() -> None:
    """Skip, with podman's own last line, where it cannot run (root and the binary first)."""
    need_root()
    need("podman")
    info = podman("info", check=False)
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"podman cannot run here: podman info failed: {last}")


def debian_base_image() -> str:
    """The shared base image in podman's local store, imported from the cached tree if missing."""
    need("podman")
    rootfs = debian_rootfs(BASE_PACKAGES)
    key = rootfs.name
    with _locked("base-image"):
        found = podman(
            "image",
            "inspect",
            "--format",
            f'{{{{index .Labels "{INPUTS_LABEL}"}}}}',
            BASE_IMAGE,
            check=False,
        )
        if found.returncode == 0 and found.stdout.strip() == key:
            return BASE_IMAGE
        tar = _tarball(rootfs)
        podman(
            "import",
            "--change",
            f"LABEL {INPUTS_LABEL}={key}",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            'CMD ["/bin/bash"]',
            str(tar),
            BASE_IMAGE,
            timeout=IMPORT_TIMEOUT,
        )
    return BASE_IMAGE


@pytest.fixture(scope="session")
def debian_base() -> str:
    """The shared Debian base image's name (localhost/wheelwell-debian-base:bookworm)."""
    return debian_base_image()


def pip_settings() -> dict[str, str]:
    """The host pip's http(s) index and CA bundle, for a build that must use what the host uses.

    Read at run time (env, then `pip config`), never written down: file:// indexes do not exist
    inside a build container and are left out.
    """
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    config: dict[str, str] = {}
    for line in listed.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.rpartition(".")[2]] = value.strip().strip("'\"")
    found: dict[str, str] = {}
    index = os.environ.get("PIP_INDEX_URL") or config.get("index-url", "")
    if index.startswith(("http://", "https://")):
        found["PIP_INDEX_URL"] = index
    cert = os.environ.get("PIP_CERT") or config.get("cert", "")
    if cert and Path(cert).is_file():
        found["PIP_CERT"] = cert
    return found


def build_wheelwell_image(name: str, base: str) -> float:
    """`podman build` the shipped Dockerfile on `base` as `name`; returns the seconds it took.

    --format docker keeps the HEALTHCHECK; podman's layer cache makes a rebuild quick.
    """
    args = ["build", "--format", "docker", "--network", "host", "--build-arg", f"BASE={base}"]
    args += ["--ignorefile", str(IGNOREFILE), "-f", str(DOCKERFILE), "-t", name]
    settings = pip_settings()
    if "PIP_INDEX_URL" in settings:
        args += ["--build-arg", f"PIP_INDEX_URL={settings['PIP_INDEX_URL']}"]
    if "PIP_CERT" in settings:  # e.g. a TLS-inspecting proxy's CA, as the host's pip trusts it
        args += ["-v", f"{settings['PIP_CERT']}:/tmp/pip-ca.crt:ro"]
        args += ["--build-arg", "PIP_CERT=/tmp/pip-ca.crt"]
    started = time.monotonic()
    podman(*args, str(REPO), timeout=BUILD_TIMEOUT)
    return time.monotonic() - started
