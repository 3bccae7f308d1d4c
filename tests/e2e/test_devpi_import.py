"""`wheelwell import --from-devpi`: a dump made by a real devpi-server, served by wheelwell.

The module's fixture runs devpi-init and devpi-server (the test extra installs them) in a temp
dir on 127.0.0.1 and offline (its root/pypi mirrors a closed loopback port), fills it with
devpi-client as two users (indexes with bases, a doc zip, a tox result), stops it and runs
devpi-export with and without --include-mirrored-files. Each test imports a dump and drives
wheelwell with pip and twine at devpi's own URLs and with devpi's passwords.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Clients, DaemonFactory, clean_env, free_port, http_get, terminate
from tests.e2e.conftest import call, decoded, installed_versions, pip_install, twine_upload
from tests.e2e.test_export import wheelwell
from tests.fakes.dists import build_wheel
from tests.fakes.index import ThreadedServer
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
ALICE = ("alice", "alice-devpi-pw")
BOB = ("bob", "bob-devpi-pw")
#: nothing listens here: devpi's mirror must never reach out
CLOSED = "http://127.0.0.1:9/simple/"


@dataclass(frozen=True, slots=True)
class Dumps:
    plain: Path
    with_mirror: Path


def _answers(url: str) -> bool:
    try:
        return http_get(url, timeout=2).status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dumps]:
    base = tmp_path_factory.mktemp("devpi")
    server_dir, dists = base / "server", base / "dists"
    env = clean_env(DEVPI_CLIENTDIR=str(base / "client"), HOME=str(base))

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done.stdout

    run(
        "devpi-init",
        "--serverdir",
        str(server_dir),
        "--root-passwd",
        "root-devpi-pw",
        "--no-root-pypi",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (base / "devpi.log").open("wb") as log:
        server = subprocess.Popen(
            [
                str(BIN / "devpi-server"),
                "--serverdir",
                str(server_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--offline-mode",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_until(lambda: _answers(url + "/+api"), timeout=60, message="devpi-server answers")
        run("devpi", "use", url)
        run("devpi", "login", "root", "--password", "root-devpi-pw")
        run("devpi", "index", "-c", "root/pypi", "type=mirror", f"mirror_url={CLOSED}")
        run("devpi", "user", "-c", ALICE[0], f"password={ALICE[1]}", "email=alice@example.org")
        run("devpi", "user", "-c", BOB[0], f"password={BOB[1]}")
        run("devpi", "login", ALICE[0], "--password", ALICE[1])
        run("devpi", "index", "-c", "alice/dev", "bases=root/pypi", "volatile=False")
        run("devpi", "index", "-c", "alice/feature", "bases=alice/dev")
        ours = build_wheel(dists, "ours", "1.0")
        run("devpi", "use", "alice/dev")
        run("devpi", "upload", str(ours.path))
        docs = dists / "ours-1.0.doc.zip"
        with zipfile.ZipFile(docs, "w") as archive:
            archive.writestr("index.html", "<h1>ours</h1>")
        run("devpi", "upload", str(docs))
        _post_toxresult(f"{url}/alice/dev/+f/{ours.sha256[:3]}/{ours.sha256[3:16]}/{ours.filename}")
        run("devpi", "use", "alice/feature")
        run("devpi", "upload", str(build_wheel(dists, "theirs", "0.5").path))
        run("devpi", "login", BOB[0], "--password", BOB[1])
        run("devpi", "index", "-c", "bob/dev", "bases=alice/feature", "acl_upload=bob,alice")
    finally:
        terminate(server, 20)
    plain, with_mirror = base / "dump", base / "dump-mirror"
    run("devpi-export", "--serverdir", str(server_dir), str(plain))
    run(
        "devpi-export", "--serverdir", str(server_dir), "--include-mirrored-files", str(with_mirror)
    )
    yield Dumps(plain, with_mirror)


def _post_toxresult(url: str) -> None:
    """What `devpi test` posts after a tox run, without running tox (acl_toxresult_upload is
    :ANONYMOUS: by default)."""
    body = {
        "testenvs": {"py311": {"test": [{"retcode": 0}]}},
        "platform": "linux",
        "host": "ci",
        "installpkg": {},
    }
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def test_devpi_dump_is_served_by_wheelwell(
    dumps: Dumps,
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    new = tmp_path / "imported"
    done = wheelwell("import", "--from-devpi", str(dumps.plain), "--data-dir", str(new))
    assert done.returncode == 0, done.stderr
    report = done.stdout
    assert "mapped: 3 users, 3 private indexes, 1 mirror indexes, 2 release files" in report
    assert "1 tox results" in report and "1 doc zips (kept in devpi/" in report
    assert "alice.email: wheelwell users have no email" in report
    assert "$argon2" not in report

    daemon = daemon_factory(fake_index_server.url, {"storage": {"data_dir": str(new)}})
    release = call(daemon, "GET", "/alice/dev/ours/1.0")
    assert release.status == 200, release.body
    (tested,) = [f for f in decoded(release)["files"] if f["toxresults"]]
    (result,) = tested["toxresults"]
    assert (result["host"], result["platform"], result["passed"]) == ("ci", "linux", True)
    assert [e["name"] for e in result["envs"]] == ["py311"]
    target = tmp_path / "target"
    pip_install(clients, daemon, "alice/dev", target, "ours")  # devpi's URL form
    assert installed_versions(clients, target, "ours") == ["1.0"]
    inherited = tmp_path / "inherited"
    pip_install(clients, daemon, "bob/dev", inherited, "ours", "theirs")  # bob → feature → dev
    assert installed_versions(clients, inherited, "ours", "theirs") == ["1.0", "0.5"]

    later = build_wheel(tmp_path / "dists", "ours", "2.0")
    twine_upload(clients, f"{daemon.url}/alice/dev/", ALICE, later.path)  # devpi's password
    wrong = twine_upload(
        clients, f"{daemon.url}/alice/dev/", (ALICE[0], "wrong"), later.path, check=False
    )
    assert wrong.returncode != 0
    upgraded = tmp_path / "upgraded"
    pip_install(clients, daemon, "alice/feature", upgraded, "ours")
    assert installed_versions(clients, upgraded, "ours") == ["2.0"]
    twine_upload(clients, f"{daemon.url}/bob/dev/", BOB, build_wheel(tmp_path / "d", "b", "1").path)

    daemon.stop()
    with sqlite3.connect(new / "wheelwell.sqlite3") as conn:
        hashes = dict(conn.execute("SELECT name, pwhash FROM users").fetchall())
    assert hashes["alice"].startswith("scrypt$")  # rehashed at the first login
    assert hashes["bob"].startswith("scrypt$")


def test_dump_with_mirrored_files_imports(dumps: Dumps, tmp_path: Path) -> None:
    new = tmp_path / "imported"
    done = wheelwell("import", "--from-devpi", str(dumps.with_mirror), "--data-dir", str(new))
    assert done.returncode == 0, done.stderr
    assert "3 private indexes" in done.stdout


def test_bad_dump_leaves_the_target_untouched(dumps: Dumps, tmp_path: Path) -> None:
    spoiled = tmp_path / "spoiled"
    subprocess.run(["cp", "-a", str(dumps.plain), str(spoiled)], check=True)
    wheel = next(spoiled.rglob("ours-1.0-*.whl"))
    wheel.write_bytes(wheel.read_bytes()[:-1] + b"X")
    new = tmp_path / "imported"
    done = wheelwell("import", "--from-devpi", str(spoiled), "--data-dir", str(new))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"wheelwell import: {wheel}: its sha256 differs from the dump's dataindex.json"
    ]
    assert not new.exists()


def test_import_takes_an_export_or_a_dump_not_both(dumps: Dumps, tmp_path: Path) -> None:
    for args in ((), (str(tmp_path / "export"), "--from-devpi", str(dumps.plain))):
        done = wheelwell("import", *args, "--data-dir", str(tmp_path / "new"))
        assert done.returncode == 1
        assert (
            done.stderr == "wheelwell import: give an export to import, or --from-devpi DUMPDIR\n"
        )
