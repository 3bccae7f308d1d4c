"""The `wheelwell` client commands against the real daemon, as a devpi-client user runs them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT_PASSWORD, Clients, Daemon, http_get
from tests.fakes.dists import build_sdist, build_wheel

pytestmark = pytest.mark.e2e


def wheelwell(clients: Clients, *args: str, check: bool = True) -> str:
    result = clients.run(sys.executable, "-m", "proxy", *args, check=check, env=xdg_env(clients))
    return result.stdout + result.stderr


def xdg_env(clients: Clients) -> dict[str, str]:
    """A private config home, so the test never touches the real user's pip or uv config."""
    config = clients.workdir / "xdg"
    return {"XDG_CONFIG_HOME": str(config), "PIP_CONFIG_FILE": str(config / "pip" / "pip.conf")}


def test_use_login_index_upload_yank_install(
    daemon: Daemon, clients: Clients, tmp_path: Path
) -> None:
    out = wheelwell(clients, "use", f"{daemon.url}/root/public", "--set-cfg")
    pip_conf = clients.workdir / "xdg" / "pip" / "pip.conf"
    assert f"index-url = {daemon.url}/root/public/+simple/" in pip_conf.read_text()
    assert "trusted-host = 127.0.0.1" in pip_conf.read_text()
    assert "pip.conf" in out
    wheelwell(clients, "login", "root", "--password", ROOT_PASSWORD)
    wheelwell(clients, "index", "create", "root/team", "--bases", "root/public")
    dist = tmp_path / "dist"
    built = [build_wheel(dist, "clitool", "1.0"), build_wheel(dist, "clitool", "2.0")]
    build_sdist(dist, "clitool", "2.0")
    out = wheelwell(clients, "upload", "--from-dir", str(dist), "--index", "root/team")
    assert "3 uploaded, 0 skipped, 0 failed" in out
    out = wheelwell(clients, "upload", "--from-dir", str(dist), "--index", "root/team")
    assert "0 uploaded, 3 skipped, 0 failed" in out
    page = http_get(f"{daemon.url}/root/team/+simple/clitool/")
    assert all(b.filename in page.body.decode() for b in built)
    wheelwell(clients, "yank", "clitool", "2.0", "--reason", "broken", "--index", "root/team")
    target = tmp_path / "target"
    clients.pip(
        "install", "--index-url", f"{daemon.url}/root/team/+simple/", "--target", str(target),
        "clitool",
    )  # fmt: skip
    assert (target / "clitool-1.0.dist-info").is_dir()
    wrong = wheelwell(clients, "index", "create", "root/team", check=False)
    assert "wheelwell: " in wrong and "Traceback" not in wrong
    out = wheelwell(clients, "use", "--unset-cfg")
    assert not pip_conf.exists() or "index-url" not in pip_conf.read_text()
