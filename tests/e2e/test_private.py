"""Private indexes: inheritance through bases, and private names shadowing the mirror."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Clients, Daemon, DaemonFactory, http_get
from tests.e2e.conftest import (
    ROOT,
    call,
    create_index,
    decoded,
    installed_versions,
    pip_install,
    simple_files,
    twine_upload,
)
from tests.fakes.dists import Built, build_wheel
from tests.fakes.index import FakeIndex, ThreadedServer

pytestmark = pytest.mark.e2e

DEFAULT_INDEXES: list[dict[str, Any]] = [
    {"name": "root/pypi", "kind": "mirror"},
    {"name": "root/public", "kind": "private", "bases": ["root/pypi"]},
]
TEAM = ("team", "team-e2e-secret")


def upload(clients: Clients, daemon: Daemon, index: str, *built: Built) -> None:
    twine_upload(clients, f"{daemon.url}/{index}/", ROOT, *(b.path for b in built))


def index_config(daemon: Daemon, index: str) -> dict[str, Any]:
    got = call(daemon, "GET", f"/{index}")
    assert got.status == 200, got.body
    body = decoded(got)
    assert body["type"] == "indexconfig"
    result: dict[str, Any] = body["result"]
    return result


@pytest.mark.parametrize("declared", ["yaml", "put"])
def test_inheritance_through_bases(
    declared: str,
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    if declared == "yaml":
        team_dev = {"name": "team/dev", "kind": "private", "bases": ["root/public"]}
        indexes = [*DEFAULT_INDEXES, {**team_dev, "mirror_whitelist": []}]
        daemon = daemon_factory(fake_index_server.url, {"indexes": indexes})
    else:
        daemon = daemon_factory(fake_index_server.url)
        assert call(daemon, "PUT", "/team", {"password": TEAM[1]}, auth=ROOT).status == 201
        created = create_index(daemon, "team/dev", TEAM, bases=["root/public"])
        assert created["result"]["bases"] == ["root/public"]
    assert index_config(daemon, "team/dev")["bases"] == ["root/public"]
    lib = build_wheel(tmp_path / "dist", "public-lib", "1.0", requires=["beta>=1"])
    app = build_wheel(tmp_path / "dist", "team-app", "1.0", requires=["public-lib>=1"])
    upload(clients, daemon, "root/public", lib)
    upload(clients, daemon, "team/dev", app)
    target = tmp_path / "target"
    pip_install(clients, daemon, "team/dev", target, "team-app")
    installed = installed_versions(clients, target, "team_app", "public_lib", "beta")
    assert installed == ["1.0", "1.0", "2.0"]
    assert simple_files(daemon, "team/dev", "public-lib") == {lib.filename: lib.sha256}
    assert simple_files(daemon, "root/public", "team-app") is None  # bases see down, not up


@pytest.fixture
def shadowed(fake_index: FakeIndex, tmp_path: Path) -> Built:
    """`shadowed 9.0` on the upstream, the dependency-confusion bait."""
    built = build_wheel(tmp_path / "upstream-dists", "shadowed", "9.0")
    fake_index.add(built)
    return built


def test_private_name_shadows_the_mirror(
    shadowed: Built, fake_index: FakeIndex, daemon: Daemon, clients: Clients, tmp_path: Path
) -> None:
    ours = build_wheel(tmp_path / "dist", "shadowed", "1.0")
    upload(clients, daemon, "root/public", ours)
    assert simple_files(daemon, "root/pypi", "shadowed") == {shadowed.filename: shadowed.sha256}
    assert simple_files(daemon, "root/public", "shadowed") == {ours.filename: ours.sha256}
    pip_install(clients, daemon, "root/public", tmp_path / "shadowing", "shadowed")
    assert installed_versions(clients, tmp_path / "shadowing", "shadowed") == ["1.0"]
    uv_target = tmp_path / "uv"
    uv_args = ("--target", str(uv_target), "--python", sys.executable)
    clients.uv(
        "pip", "install", *uv_args, "--index-url", daemon.index_url("root/public"), "shadowed"
    )
    assert installed_versions(clients, uv_target, "shadowed") == ["1.0"]
    assert fake_index.hits(f"/files/{shadowed.filename}") == 0
    whitelist = {"mirror_whitelist": ["Shadowed"]}  # stored normalized
    patched = call(daemon, "PATCH", "/root/public", whitelist, auth=ROOT)
    assert patched.status == 200, patched.body
    assert decoded(patched)["result"]["mirror_whitelist"] == ["shadowed"]
    both = {ours.filename: ours.sha256, shadowed.filename: shadowed.sha256}
    assert simple_files(daemon, "root/public", "shadowed") == both
    pip_install(clients, daemon, "root/public", tmp_path / "whitelisted", "shadowed")
    assert installed_versions(clients, tmp_path / "whitelisted", "shadowed") == ["9.0"]


def test_mirror_whitelist_from_yaml(
    shadowed: Built,
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    indexes = [
        DEFAULT_INDEXES[0],
        {**DEFAULT_INDEXES[1], "mirror_whitelist": ["Shadowed"]},  # matched normalized
    ]
    daemon = daemon_factory(fake_index_server.url, {"indexes": indexes})
    upload(clients, daemon, "root/public", build_wheel(tmp_path / "dist", "shadowed", "1.0"))
    pip_install(clients, daemon, "root/public", tmp_path / "target", "shadowed")
    assert installed_versions(clients, tmp_path / "target", "shadowed") == ["9.0"]


def test_explain_names_the_hidden_mirror_files(
    shadowed: Built, daemon: Daemon, clients: Clients, tmp_path: Path
) -> None:
    ours = build_wheel(tmp_path / "dist", "shadowed", "1.0")
    upload(clients, daemon, "root/public", ours)
    got = call(daemon, "GET", "/root/public/+explain/shadowed")
    assert got.status == 200, got.body
    explained = decoded(got)
    assert (explained["project"], explained["index"]) == ("shadowed", "root/public")
    order = {step["index"]: step for step in explained["order"]}
    assert [step["index"] for step in explained["order"]] == ["root/public", "root/pypi"]
    public, mirror = order["root/public"], order["root/pypi"]
    assert (public["type"], mirror["type"]) == ("private", "mirror")
    assert (public["files"], public["hidden"]) == ([ours.filename], [])
    assert (mirror["files"], mirror["hidden"]) == ([], [shadowed.filename])
    assert "root/public" in mirror["reason"]


def test_bad_bases_are_400_and_change_nothing(daemon: Daemon) -> None:
    unknown = call(
        daemon, "PUT", "/root/broken", {"type": "private", "bases": ["root/nope"]}, auth=ROOT
    )
    assert unknown.status == 400, unknown.body
    assert "root/nope" in decoded(unknown)["error"]
    assert call(daemon, "GET", "/root/broken").status == 404
    create_index(daemon, "root/above", ROOT, bases=["root/public"])
    cycle = call(daemon, "PATCH", "/root/public", {"bases": ["root/above"]}, auth=ROOT)
    assert cycle.status == 400, cycle.body
    assert "cycle" in decoded(cycle)["error"].lower()
    assert index_config(daemon, "root/public")["bases"] == ["root/pypi"]
    assert http_get(daemon.index_url("root/public") + "beta/").status == 200  # still resolves


def test_names_are_normalized(daemon: Daemon, clients: Clients, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", "Mixed_Case.Name", "1.0")
    upload(clients, daemon, "root/public", wheel)
    assert simple_files(daemon, "root/public", "mixed-case-name") == {wheel.filename: wheel.sha256}
    moved = http_get(daemon.index_url("root/public") + "Mixed_Case.Name/")
    assert moved.status == 200  # urllib followed the redirect to the normalized page
    releases = decoded(call(daemon, "GET", "/root/public/mixed-case-name"))["releases"]
    assert [f["sha256"] for f in releases["1.0"]] == [wheel.sha256]
    pip_install(clients, daemon, "root/public", tmp_path / "target", "MIXED.case-name")
    assert installed_versions(clients, tmp_path / "target", "mixed_case_name") == ["1.0"]
