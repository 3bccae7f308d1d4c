"""The real devpi-client (the test extra's) against the daemon, unchanged (issue 14).

Each `devpi` runs with its own --clientdir, HOME, pip and uv config files in the test's tmp dir,
and a new session (no controlling terminal: `devpi passwd` reads its prompts from stdin), so no
real index or user config is touched; `devpi install` runs pip against the daemon only.
`devpi test` runs the real tox on an sdist whose tox env needs no index; `devpi push` is in
test_devpi_push.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import CLIENT_TIMEOUT, Clients, Daemon
from tests.e2e.conftest import ROOT, ROOT_PASSWORD, Devpi, call, decoded
from tests.e2e.test_browser import Browser
from tests.fakes.dists import build_sdist, build_wheel


def _json(daemon: Daemon, path: str) -> Any:
    fetched = call(daemon, "GET", path, auth=ROOT)
    assert fetched.status == 200, fetched.body
    return decoded(fetched)


def _wheelhouse(tmp: Path) -> Path:
    house = tmp / "wheelhouse"
    build_wheel(house / "a", "hello", "1.0")
    build_wheel(house / "b", "hello", "1.1")
    build_sdist(house / "c", "hello", "1.1")
    build_wheel(house / "d", "other", "2.0")
    return house


def test_seed_workflow_and_pip(devpi: Devpi, clients: Clients, tmp_path: Path) -> None:
    used = devpi("use", f"{devpi.daemon.url}/root/public", "--set-cfg")
    assert f"current devpi index: {devpi.daemon.url}/root/public" in used.stdout
    assert f"index_url = {devpi.daemon.url}/root/public/+simple/" in devpi.pip_conf.read_text()
    login = devpi("login", "root", "--password", ROOT_PASSWORD)
    assert "logged in 'root'" in login.stdout and "valid for 10.00 hours" in login.stdout
    assert "WARN" not in login.stdout + login.stderr  # the API version header is there
    house = _wheelhouse(tmp_path)
    dry = devpi("upload", "--from-dir", str(house), "--dry-run")
    assert dry.stdout.count("skipped: file_upload") == 4
    assert _json(devpi.daemon, "/root/public")["result"]["projects"] == []
    latest = devpi("upload", "--from-dir", str(house), "--only-latest")
    assert "hello-1.0" not in latest.stdout and "hello-1.1-py3-none-any.whl" in latest.stdout
    devpi("upload", "--from-dir", str(house))  # identical files again: fine on devpi too
    assert _json(devpi.daemon, "/root/public")["result"]["projects"] == ["hello", "other"]
    assert devpi("list").stdout.split() == ["hello", "other"]
    listed = devpi("list", "hello").stdout
    assert "hello-1.1-py3-none-any.whl" in listed and "hello-1.0-py3-none-any.whl" in listed
    versions = devpi("list", "-v", "--all").stdout.split()
    assert versions == ["hello==1.0", "hello==1.1", "other==2.0"]
    assert devpi("list", "-v").stdout.split() == ["hello==1.1", "other==2.0"]
    assert "root/public" in devpi("use", "-l").stdout
    got = json.loads(devpi("getjson", "/root/public").stdout)
    assert got["type"] == "indexconfig"
    # pip, configured by `devpi use --set-cfg`, installs what devpi uploaded
    target = tmp_path / "target"
    pip_env = {"PIP_CONFIG_FILE": str(devpi.pip_conf)}
    clients.run(
        sys.executable, "-m", "pip", "install", "--target", str(target), "hello==1.1", env=pip_env
    )
    assert (target / "hello-1.1.dist-info").is_dir()
    auth = json.loads((devpi.home / "client" / "auth.json").read_text())
    token = auth["auth"][f"{devpi.daemon.url}/"][0][1]
    assert token.startswith("ww_") and token not in devpi.daemon.log()  # never logged


def test_users_passwords_and_indexes(devpi: Devpi) -> None:
    devpi.seed()
    devpi("user", "-c", "alice", "password=alice-pw-1", "email=alice@example.invalid")
    assert devpi("user", "-l").stdout.split() == ["alice", "root"]
    devpi("user", "-m", "alice", "password=alice-pw-2")
    refused = devpi("user", "-m", "alice", "email=x@example.invalid", check=False)
    assert refused.returncode == 1 and "wheelwell keeps no other user settings" in refused.stdout
    devpi("passwd", "alice", stdin="alice-pw-3\nalice-pw-3\n")
    devpi("login", "alice", "--password", "alice-pw-3")
    devpi("index", "-c", "dev", "bases=root/public", "volatile=False")
    shown = devpi("index", "alice/dev").stdout
    assert "bases=root/public" in shown and "volatile=False" in shown
    devpi("index", "alice/dev", "volatile=True", "acl_upload+=bob", "acl_read+=bob")
    config = _json(devpi.daemon, "/alice/dev")["result"]
    assert (config["volatile"], config["acl_upload"]) == (True, ["bob"])
    devpi("index", "alice/dev", "acl_upload-=bob")
    assert _json(devpi.daemon, "/alice/dev")["result"]["acl_upload"] == []
    missing = devpi("index", "alice/dev", "acl_upload-=carol", check=False)
    assert missing.returncode == 1 and "doesn't have value 'carol'" in missing.stdout
    assert devpi("index", "-l").stdout.split() == ["alice/dev"]
    assert "alice/dev" in devpi("use", "-l").stdout
    devpi("index", "--delete", "-y", "alice/dev")
    assert call(devpi.daemon, "GET", "/alice/dev", auth=ROOT).status == 404
    devpi("logoff")
    devpi("login", "root", "--password", ROOT_PASSWORD)
    devpi("user", "--delete", "-y", "alice")
    assert devpi("user", "-l").stdout.split() == ["root"]


def test_failures_devpi_users_rely_on(devpi: Devpi, tmp_path: Path) -> None:
    devpi("use", f"{devpi.daemon.url}/root/public")
    wrong = devpi("login", "root", "--password", "wrong", check=False)
    assert wrong.returncode == 1
    assert "401 Unauthorized: user 'root' could not be authenticated" in wrong.stdout
    devpi("login", "root", "--password", ROOT_PASSWORD)
    devpi("index", "root/public", "volatile=False")
    first = build_wheel(tmp_path / "first", "hello", "1.0", summary="first")
    devpi("upload", str(first.path))
    again = devpi("upload", str(first.path))  # identical: accepted, as devpi does
    assert again.returncode == 0
    changed = build_wheel(tmp_path / "changed", "hello", "1.0", summary="changed")
    refused = devpi("upload", str(changed.path), check=False)
    assert refused.returncode == 1 and "409 FAIL" in refused.stdout
    remove = devpi("remove", "-y", "hello", check=False)
    assert remove.returncode == 1 and "not volatile" in remove.stdout
    devpi("use", "root/pypi")
    mirror = devpi("upload", str(first.path), check=False)
    assert mirror.returncode == 1 and "Most likely, it is a mirror" in mirror.stdout


def test_remove_install_refresh_patchjson_and_project_upload(devpi: Devpi, tmp_path: Path) -> None:
    devpi.seed()
    devpi("upload", "--from-dir", str(_wheelhouse(tmp_path)))
    devpi("remove", "-y", "hello==1.0")
    assert sorted(_json(devpi.daemon, "/root/public/hello/")["result"]) == ["1.1"]
    sdist = _json(devpi.daemon, "/root/public/hello/")["result"]["1.1"]["+links"]
    url = next(link["href"] for link in sdist if link["href"].endswith(".tar.gz"))
    devpi("remove", "-y", url)  # one file, by its URL
    links = _json(devpi.daemon, "/root/public/hello/")["result"]["1.1"]["+links"]
    assert [link["href"].rsplit("/", 1)[1] for link in links] == ["hello-1.1-py3-none-any.whl"]
    devpi("remove", "-y", "other")
    assert _json(devpi.daemon, "/root/public")["result"]["projects"] == ["hello"]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=CLIENT_TIMEOUT)
    installed = devpi("install", "--venv", str(venv), "hello")
    assert "Successfully installed hello-1.1" in installed.stdout
    refreshed = devpi("refresh", "beta")
    assert "Refreshed beta" in refreshed.stdout and "Couldn't" not in refreshed.stdout
    edits = tmp_path / "edits.json"
    edits.write_text(json.dumps(["acl_upload+=root"]))
    patched = json.loads(devpi("patchjson", "/root/public", str(edits)).stdout.split("\n", 1)[1])
    assert patched["result"]["acl_upload"] == ["root"]
    always = devpi("use", "--always-set-cfg=yes")
    assert "always-set-cfg: yes" in always.stdout
    project = tmp_path / "projx"
    (project / "src" / "projx").mkdir(parents=True)
    (project / "src" / "projx" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "projx"\nversion = "0.1"\n'
    )
    built = devpi("upload", "--no-isolation", "--sdist", "--no-vcs", cwd=project)
    assert "file_upload of projx-0.1.tar.gz" in built.stdout
    assert "projx" in _json(devpi.daemon, "/root/public")["result"]["projects"]


_TOX_INI = """\
[tox]
envlist = py
[testenv]
skip_install = true
commands = python -c "print('{word}'); raise SystemExit({code})"
"""


def _tested(tmp: Path, version: str, code: int) -> Path:
    """An sdist whose tox env passes (code 0) or fails, with no index needed by tox."""
    ini = _TOX_INI.format(word="all good" if code == 0 else "it broke", code=code)
    return build_sdist(tmp / version, "tested", version, extra={"tox.ini": ini.encode()}).path


def test_devpi_test_runs_tox_and_posts_results(devpi: Devpi, tmp_path: Path) -> None:
    """Real tox, once passing and once failing; the results in devpi list, the API and the UI."""
    devpi.seed()
    devpi("upload", str(_tested(tmp_path, "1.0", 0)), str(_tested(tmp_path, "2.0", 3)))
    passed = devpi("test", "tested==1.0")
    assert "all good" in passed.stdout
    assert "posting tox result data to" in passed.stdout and "success" in passed.stdout
    failed = devpi("test", "tested==2.0", check=False)
    assert failed.returncode != 0 and "it broke" in failed.stdout
    assert "could not post" not in failed.stdout + failed.stderr

    listed = devpi("list", "tested", "-f", "--all").stdout
    lines = [line for line in listed.splitlines() if " py " in line]
    assert len(lines) == 2, listed
    assert any("tests passed" in line for line in lines)
    failure = devpi("list", "tested==2.0", "-f", check=False)
    assert "tests failed" in failure.stdout + failure.stderr
    assert "it broke" in failure.stdout + failure.stderr  # -f shows the failing command's output

    release = _json(devpi.daemon, "/root/public/tested/2.0")
    (results,) = [f["toxresults"] for f in release["files"]]
    (result,) = results
    assert result["passed"] is False and result["poster"] == "root"
    (env,) = result["envs"]
    assert env["name"] == "py" and env["status"] == "failed" and "it broke" in env["log_tail"]
    whole = _json(devpi.daemon, result["url"])
    assert whole["testenvs"]["py"]["test"][0]["retcode"] == 3
    ok = _json(devpi.daemon, "/root/public/tested/1.0")["files"][0]["toxresults"]
    assert [r["passed"] for r in ok] == [True]

    page = Browser(tmp_path / "browser").page(f"{devpi.daemon.url}/root/public/tested", "tested")
    assert '<span class="badge passed">py: passed</span>' in page
    assert '<span class="badge failed">py: failed</span>' in page
    assert "it broke" in page and "by root" in page
