"""deploy/container, statically: pinned dependencies, the base image ARG, no anonymous volumes.

tests/deploy/test_container.py builds and runs the image for real (make test-deploy); these
checks need no engine and run in make test.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from proxy.config import load
from tests.test_deploy import DEPLOY, DOCKERFILE, REPO, instructions, stages

CONTAINER = DEPLOY / "container"
REQUIREMENTS = CONTAINER / "requirements.txt"
BUILD_REQUIREMENTS = CONTAINER / "build-requirements.txt"
DEFAULT_BASE = "python:3.11-slim"
#: `name==version \` followed by `--hash=sha256:…` lines, as uv and pip-compile write them
PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
HASH_RE = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def pins(path: Path) -> dict[NormalizedName, tuple[Version, int]]:
    """requirements file → {name: (pinned version, number of hashes)}; every entry is pinned."""
    entries: dict[NormalizedName, tuple[Version, int]] = {}
    current: NormalizedName | None = None
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith((" ", "\t")):
            assert current is not None, f"{path.name}: continuation before a requirement: {line}"
            version, hashes = entries[current]
            entries[current] = (version, hashes + len(HASH_RE.findall(line)))
            continue
        found = PIN_RE.match(line)
        assert found, f"{path.name}: not pinned with ==: {line}"
        current = canonicalize_name(found.group(1))
        entries[current] = (Version(found.group(2)), len(HASH_RE.findall(line)))
    return entries


def pyproject() -> dict[str, object]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert isinstance(data, dict)
    return data


def assert_covers(path: Path, requirements: list[str]) -> None:
    """Every requirement has a pin in `path` that satisfies it, and every pin has hashes."""
    pinned = pins(path)
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{text} is not pinned in {path.name}: regenerate it (its header)"
        version, _ = pinned[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{path.name} pins {name}=={version}, outside {text}: regenerate it"
        )
    unhashed = [name for name, (_, hashes) in pinned.items() if hashes == 0]
    assert unhashed == [], f"{path.name}: pins without --hash: {unhashed}"


def test_requirements_pin_every_dependency_of_pyproject() -> None:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    assert_covers(REQUIREMENTS, project["dependencies"])
    assert "uv pip compile pyproject.toml --generate-hashes" in REQUIREMENTS.read_text()


def test_build_requirements_pin_the_build_backend() -> None:
    build_system = pyproject()["build-system"]
    assert isinstance(build_system, dict)
    assert_covers(BUILD_REQUIREMENTS, build_system["requires"])


def test_dockerfile_installs_only_hash_checked_wheels() -> None:
    """pip refuses anything unpinned or unhashed, and builds no sdist with a floating backend."""
    builder, _ = stages()
    installs = [
        command
        for run in instructions(builder, "RUN")
        for command in run.split("&&")
        if " -r " in command
    ]
    assert len(installs) == 2, installs
    for command in installs:
        assert "pip install --require-hashes --only-binary=:all: --no-deps" in command
    assert any("-r requirements.txt" in c for c in installs)
    assert any("-r build-requirements.txt" in c for c in installs)
    # wheelwell itself is built with the pinned setuptools, not a fresh one from the index
    assert any("--no-build-isolation" in run for run in instructions(builder, "RUN"))


def test_dockerfile_base_image_is_an_arg_with_the_slim_default() -> None:
    text = DOCKERFILE.read_text()
    before_from = text[: re.search(r"^FROM ", text, re.M).start()]  # type: ignore[union-attr]
    assert re.findall(r"^ARG (.*)$", before_from, re.M) == [f"BASE={DEFAULT_BASE}"]
    assert [instructions(stage, "FROM")[0].split()[0] for stage in stages()] == ["${BASE}"] * 2
    # Debian's python3 is externally-managed (PEP 668) and has no `python`: a venv, via python3
    assert "python -c" not in text
    assert "pip install --prefix" not in text


def test_dockerfile_declares_no_anonymous_volume() -> None:
    for stage in stages():
        assert instructions(stage, "VOLUME") == []


def test_data_dir_in_the_image_is_private_to_the_daemon() -> None:
    """The SQLite file holds password and token hashes: /data is 0700, owned by UID 10001."""
    _, runtime = stages()
    (setup,) = instructions(runtime, "RUN")
    assert "chown 10001:10001 /data" in setup
    assert "chmod 0700 /data" in setup


def test_dockerfile_header_says_how_to_build_and_push() -> None:
    header = "\n".join(line for line in DOCKERFILE.read_text().splitlines() if line.startswith("#"))
    # podman's default OCI format has no HEALTHCHECK and drops it with a warning
    assert "podman build --format docker -f deploy/container/Dockerfile" in header
    assert "-t REGISTRY/wheelwell:0.1.0 ." in header
    assert "push REGISTRY/wheelwell:0.1.0" in header
    assert "wheelwell:0.1.0" not in header.replace("REGISTRY/wheelwell:0.1.0", "")


def test_docs_say_how_to_build_and_push() -> None:
    docs = (REPO / "docs" / "deploy.md").read_text()
    assert "## Container image" in docs
    assert "podman build --format docker" in docs
    assert "push REGISTRY/wheelwell:0.1.0" in docs


def test_container_config_bounds_the_mirror_cache(tmp_path: Path) -> None:
    config = CONTAINER / "wheelwell.yaml"
    assert load(config, env={}).storage.max_size == 20 * 1024**3
    assert "WHEELWELL_STORAGE_MAX_SIZE" in config.read_text()  # how to change it
    # the way the comment says: an env variable, no config file of one's own
    changed = load(config, env={"WHEELWELL_STORAGE_MAX_SIZE": "100GiB"})
    assert changed.storage.max_size == 100 * 1024**3
