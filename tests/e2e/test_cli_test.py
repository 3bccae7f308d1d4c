"""`wheelwell test` and `wheelwell list` against the real daemon, running real tox.

The tiny projects' tox env needs no index (`skip_install = true`), so tox runs offline; each
run is one virtualenv creation and one `python -c`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT_PASSWORD, Clients, Daemon, DaemonFactory
from tests.e2e.conftest import ROOT, Credentials, call, create_token, decoded
from tests.fakes.dists import build_sdist, build_wheel
from tests.fakes.index import ThreadedServer

pytestmark = pytest.mark.e2e

ALICE = ("alice", "alice-secret-pw")
_TOX_INI = """\
[tox]
envlist = py
[testenv]
skip_install = true
commands = python -c "print('{word}'); raise SystemExit({code})"
"""


@pytest.fixture
def daemon(daemon_factory: DaemonFactory, fake_index_server: ThreadedServer) -> Daemon:
    """root/public as usual, and root/secret that only alice (and root) may read."""
    indexes = [
        {"name": "root/pypi", "kind": "mirror"},
        {"name": "root/public", "kind": "private", "bases": ["root/pypi"]},
        {"name": "root/secret", "kind": "private", "bases": ["root/pypi"], "acl_read": ["alice"]},
    ]
    daemon = daemon_factory(fake_index_server.url, {"indexes": indexes})
    assert call(daemon, "PUT", "/alice", {"password": ALICE[1]}, auth=ROOT).status == 201
    return daemon


def wheelwell(clients: Clients, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with a private config home; the caller checks the exit code."""
    config = clients.workdir / "xdg"
    env = {"XDG_CONFIG_HOME": str(config), "PIP_CONFIG_FILE": str(config / "pip" / "pip.conf")}
    return clients.run(sys.executable, "-m", "proxy", *args, check=False, env=env)


def ok(clients: Clients, *args: str) -> str:
    result = wheelwell(clients, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def tox_ini(code: int) -> bytes:
    word = "all good" if code == 0 else "it broke"
    return _TOX_INI.format(word=word, code=code).encode()


def sdist_of(tmp: Path, version: str, code: int) -> Path:
    """An sdist whose tox env passes (code 0) or fails with `code`; alone in its directory."""
    return build_sdist(tmp / version, "tested", version, extra={"tox.ini": tox_ini(code)}).path


def release(daemon: Daemon, path: str, auth: Credentials = ROOT) -> Any:
    fetched = call(daemon, "GET", path, auth=auth)
    assert fetched.status == 200, fetched.body
    return decoded(fetched)


def results(daemon: Daemon, path: str, auth: Credentials = ROOT) -> list[dict[str, Any]]:
    (found,) = [f["toxresults"] for f in release(daemon, path, auth)["files"]]
    assert isinstance(found, list)
    return found


def test_test_posts_passing_and_failing_runs_and_list_shows_them(
    daemon: Daemon, clients: Clients, tmp_path: Path
) -> None:
    ok(clients, "use", f"{daemon.url}/root/public")
    ok(clients, "login", "root", "--password", ROOT_PASSWORD)
    for version, code in (("1.0", 0), ("2.0", 3)):
        ok(clients, "upload", "--from-dir", str(sdist_of(tmp_path, version, code).parent))

    passed = ok(clients, "test", "tested==1.0")
    assert "all good" in passed and "posted tox result 0 of tested-1.0.tar.gz" in passed, passed
    assert "py: passed" in passed and "by root" in passed
    failed = wheelwell(clients, "test", "tested")  # no version: the newest, 2.0
    assert failed.returncode not in (0, 1), failed.stdout + failed.stderr  # tox's own code
    assert "it broke" in failed.stdout and "py: failed" in failed.stdout
    assert "bin/python -c print('it broke'); raise SystemExit(3)" in failed.stdout

    (bad,) = results(daemon, "/root/public/tested/2.0")
    assert bad["passed"] is False and bad["poster"] == "root"
    assert [(e["name"], e["status"]) for e in bad["envs"]] == [("py", "failed")]
    (good,) = results(daemon, "/root/public/tested/1.0")
    assert good["passed"] is True and good["envs"][0]["python"]

    listed = ok(clients, "list", "tested").splitlines()
    assert listed[0] == "tested on root/public"
    assert listed.index("2.0") < listed.index("1.0")  # newest first
    assert "  tested-2.0.tar.gz  [root/public]" in listed
    assert any(line.startswith("    py: failed  python ") for line in listed)
    assert any(line.startswith("    py: passed  python ") for line in listed)
    assert any(line.startswith("        failed: ") and "it broke" in line for line in listed)
    whole = json.loads(ok(clients, "list", "tested==1.0", "--json"))
    assert [r["version"] for r in whole["releases"]] == ["1.0"]

    ok(clients, "index", "create", "root/team", "--bases", "root/public")
    quiet = ok(clients, "test", "tested==1.0", "--no-upload", "--index", "root/team")
    assert "testing tested-1.0.tar.gz from root/public" in quiet  # found through the bases
    assert "not posted (--no-upload)" in quiet and "py: passed" in quiet
    assert len(results(daemon, "/root/public/tested/1.0")) == 1  # nothing posted

    for spec in ("nope", "tested==9.9"):
        wrong = wheelwell(clients, "test", spec)
        assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
        assert wrong.stderr.startswith("wheelwell: no release ") and "root/public" in wrong.stderr


def test_wheel_only_release_needs_a_tox_config(
    daemon: Daemon, clients: Clients, tmp_path: Path
) -> None:
    """Also what a CI job does: no stored login, a scoped token given as `__token__`."""
    ok(clients, "use", f"{daemon.url}/root/public")
    ok(clients, "login", "root", "--password", ROOT_PASSWORD)
    wheel = build_wheel(tmp_path / "dist", "wheelonly", "1.0")
    ok(clients, "upload", "--from-dir", str(wheel.path.parent))
    ok(clients, "logout")
    token = create_token(daemon, ROOT, index="root/public", scopes=["read", "upload"])["token"]
    as_ci = ("--user", "__token__", "--password", token)
    refused = wheelwell(clients, "test", "wheelonly", *as_ci)
    assert refused.returncode == 1 and "pass its project's tox config with -c" in refused.stderr
    config = tmp_path / "project" / "tox.ini"
    config.parent.mkdir()
    config.write_bytes(tox_ini(0))
    out = ok(clients, "test", "wheelonly", "-c", str(config), *as_ci)
    assert "all good" in out and token not in out
    assert "wheelonly-1.0-py3-none-any.whl" in out and "py: passed" in out
    (posted,) = results(daemon, "/root/public/wheelonly/1.0")
    assert posted["poster"] == "root" and posted["passed"] is True


_PIP_TOX_INI = b"""\
[tox]
envlist = py
[testenv]
skip_install = true
commands = python -m pip download --no-deps --disable-pip-version-check -d {envtmpdir} hushed==1.0
"""


def test_read_protected_index_with_login(daemon: Daemon, clients: Clients, tmp_path: Path) -> None:
    """tox's pip reads the protected index with the login's token (PIP_INDEX_URL)."""
    ok(clients, "use", f"{daemon.url}/root/public")
    ok(clients, "login", "root", "--password", ROOT_PASSWORD)
    secret = ("--index", "root/secret")
    build_wheel(tmp_path / "dist", "hushed", "1.0")
    build_sdist(tmp_path / "dist", "tested", "1.0", extra={"tox.ini": _PIP_TOX_INI})
    ok(clients, "upload", "--from-dir", str(tmp_path / "dist"), *secret)
    ok(clients, "logout")
    refused = wheelwell(clients, "test", "tested", *secret)
    assert refused.returncode == 1 and "401" in refused.stderr
    assert "wheelwell login" in refused.stderr

    ok(clients, "login", "alice", "--password", ALICE[1])
    out = ok(clients, "test", "tested", "-e", "py", *secret)
    assert "Saved " in out and "hushed-1.0-py3-none-any.whl" in out  # pip got in
    assert "py: passed  python" in out and "by alice" in out
    token = json.loads((clients.workdir / "xdg" / "wheelwell" / "client.json").read_text())
    (login,) = token["logins"].values()
    assert login["token"] not in out  # neither the URL with the token nor the token is shown
    (posted,) = results(daemon, "/root/secret/tested/1.0", auth=ALICE)
    assert posted["poster"] == "alice" and posted["passed"] is True
    report = call(daemon, "GET", posted["url"], auth=ALICE).body.decode()
    assert "Looking in indexes" in report and login["token"] not in report
