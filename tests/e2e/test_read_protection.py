"""A read-protected index with the real clients: pip (URL credentials, netrc), uv, twine."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import Clients, Daemon, DaemonFactory, http_get
from tests.e2e.conftest import ROOT, call, create_token, installed_versions, twine_upload
from tests.fakes.dists import build_wheel
from tests.fakes.index import ThreadedServer

pytestmark = pytest.mark.e2e

ALICE = ("alice", "alice-reads-secrets")
INDEX = "root/secret"


@pytest.fixture
def protected(
    daemon_factory: DaemonFactory, fake_index_server: ThreadedServer, tmp_path: Path
) -> Daemon:
    """A daemon whose root/secret only alice (and root) may read, holding hushed 1.0."""
    indexes = [
        {"name": "root/pypi", "kind": "mirror"},
        {"name": "root/public", "kind": "private", "bases": ["root/pypi"]},
        {"name": INDEX, "kind": "private", "bases": ["root/pypi"], "acl_read": ["alice"]},
    ]
    daemon = daemon_factory(fake_index_server.url, {"indexes": indexes})
    assert call(daemon, "PUT", "/alice", {"password": ALICE[1]}, auth=ROOT).status == 201
    return daemon


def _upload(clients: Clients, daemon: Daemon, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", "hushed", "1.0")
    refused = twine_upload(
        clients, f"{daemon.url}/{INDEX}/", ("root", "wrong"), wheel.path, check=False
    )
    assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr
    twine_upload(clients, f"{daemon.url}/{INDEX}/", ROOT, wheel.path)


def _with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{user}:{password}@{parts.netloc}").geturl()


def refusals(daemon: Daemon) -> int:
    """Page requests the daemon answered with 401 (pip itself says only "no versions")."""
    return daemon.log().count(f"GET /{INDEX}/+simple/hushed/ 401")


def _pip(clients: Clients, index_url: str, target: Path, **env: str) -> tuple[int, str]:
    argv = (sys.executable, "-m", "pip", "install", "--no-cache-dir", "--retries", "0")
    result = clients.run(
        *argv, "--target", str(target), "--index-url", index_url, "hushed", check=False, env=env
    )
    return result.returncode, result.stdout + result.stderr


def test_anonymous_reads_are_401(protected: Daemon) -> None:
    page = http_get(protected.index_url(INDEX) + "hushed/")
    assert page.status == 401
    assert page.headers.get("WWW-Authenticate") == 'Basic realm="wheelwell"'


@pytest.mark.parametrize("who", ["token", "password"])
def test_pip_with_credentials_in_the_url(
    who: str, protected: Daemon, clients: Clients, tmp_path: Path
) -> None:
    _upload(clients, protected, tmp_path)
    url = protected.index_url(INDEX)
    code, out = _pip(clients, url, tmp_path / "refused")
    assert code != 0 and refusals(protected), out
    if who == "token":
        token = create_token(protected, ALICE, index=INDEX, scopes=["read"])["token"]
        credentials = ("__token__", token)
    else:
        credentials = ALICE
    code, out = _pip(clients, _with_credentials(url, *credentials), tmp_path / "target")
    assert code == 0, out
    assert installed_versions(clients, tmp_path / "target", "hushed") == ["1.0"]


def test_pip_with_netrc(protected: Daemon, clients: Clients, tmp_path: Path) -> None:
    _upload(clients, protected, tmp_path)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1\nlogin {ALICE[0]}\npassword {ALICE[1]}\n")
    netrc.chmod(0o600)
    url = protected.index_url(INDEX)
    code, out = _pip(clients, url, tmp_path / "target", NETRC=str(netrc))
    assert code == 0, out
    assert installed_versions(clients, tmp_path / "target", "hushed") == ["1.0"]
    wrong = tmp_path / "wrong-netrc"
    wrong.write_text(f"machine 127.0.0.1\nlogin {ALICE[0]}\npassword nope\n")
    wrong.chmod(0o600)
    before = refusals(protected)
    code, out = _pip(clients, url, tmp_path / "refused", NETRC=str(wrong))
    assert code != 0 and refusals(protected) > before, out


def test_uv_with_named_index_credentials(
    protected: Daemon, clients: Clients, tmp_path: Path
) -> None:
    _upload(clients, protected, tmp_path)
    argv = (
        "pip",
        "install",
        "--python",
        sys.executable,
        "--default-index",
        protected.index_url("root/pypi"),
        "--index",
        f"secret={protected.index_url(INDEX)}",
    )
    refused = clients.run(
        str(Path(sys.executable).with_name("uv")),
        *argv,
        "--target",
        str(tmp_path / "refused"),
        "hushed",
        check=False,
    )
    assert refused.returncode != 0
    assert refusals(protected), refused.stdout + refused.stderr
    env = {"UV_INDEX_SECRET_USERNAME": ALICE[0], "UV_INDEX_SECRET_PASSWORD": ALICE[1]}
    clients.run(
        str(Path(sys.executable).with_name("uv")),
        *argv,
        "--target",
        str(tmp_path / "target"),
        "hushed",
        env=env,
    )
    assert installed_versions(clients, tmp_path / "target", "hushed") == ["1.0"]
