"""devpi push (the PUSH method devpi-client sends), devpi's file URLs, and devpi-style uploads.

Most tests send the request devpi-client 7 sends (`PUSH {index URL}` on a new connection, a JSON
body, JSON Accept), so each case is one call; one runs the real `devpi use`, `login` and `push`.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Clients, Daemon, DaemonFactory, Fetched, http_get
from tests.e2e.conftest import (
    ROOT,
    ROOT_PASSWORD,
    Credentials,
    Devpi,
    basic,
    call,
    decoded,
    pip_install,
    simple_files,
    twine_upload,
)
from tests.fakes.dists import Built, build_sdist, build_wheel
from tests.fakes.index import JSON_TYPE, ThreadedServer

pytestmark = pytest.mark.e2e

DEV = {"name": "root/dev", "kind": "private", "bases": ["root/pypi"]}
ALICE = ("alice", "alice-pw")


@pytest.fixture
def daemon(daemon_factory: DaemonFactory, fake_index_server: ThreadedServer) -> Daemon:
    """root/pypi, root/public and root/dev (both private)."""
    indexes = [
        {"name": "root/pypi", "kind": "mirror"},
        {"name": "root/public", "kind": "private", "bases": ["root/pypi"]},
        DEV,
    ]
    return daemon_factory(fake_index_server.url, {"indexes": indexes})


def devpi_path(index: str, built: Built) -> str:
    return f"/{index}/+f/{built.sha256[:3]}/{built.sha256[3:16]}/{built.filename}"


def push(
    daemon: Daemon, index: str, body: dict[str, Any], auth: Credentials | None = ROOT
) -> Fetched:
    """devpi-client's push request (requests sends it on a connection of its own)."""
    return call(daemon, "PUSH", f"/{index}", body, auth=auth)


def release(tmp_path: Path) -> tuple[Built, Built]:
    wheel = build_wheel(tmp_path / "dist", "pushed", "1.0")
    sdist = build_sdist(tmp_path / "dist", "pushed", "1.0")
    return wheel, sdist


def test_push_to_another_index_copies_the_release(
    daemon: Daemon, clients: Clients, tmp_path: Path
) -> None:
    wheel, sdist = release(tmp_path)
    twine_upload(clients, f"{daemon.url}/root/dev/", ROOT, wheel.path, sdist.path)
    got = push(
        daemon, "root/dev", {"name": "pushed", "version": "1.0", "targetindex": "root/public"}
    )
    assert got.status == 200, got.body
    answer = decoded(got)
    assert answer["type"] == "actionlog"
    assert answer["result"] == [
        [200, "register", "pushed", "1.0", "->", "root/public"],
        *sorted(
            ([200, "store_releasefile", devpi_path("root/public", b)[1:]] for b in (wheel, sdist)),
            key=lambda a: str(a[2]).rsplit("/", 1)[1],
        ),
    ]
    assert simple_files(daemon, "root/public", "pushed") == {
        wheel.filename: wheel.sha256,
        sdist.filename: sdist.sha256,
    }
    target = tmp_path / "target"
    pip_install(clients, daemon, "root/public", target, "pushed==1.0")
    assert (target / "pushed").is_dir()
    again = push(
        daemon, "root/dev", {"name": "pushed", "version": "1.0", "targetindex": "root/public"}
    )
    assert again.status == 200, again.body  # the identical files: nothing changes


def test_push_posted_as_json_is_the_same_push(
    daemon: Daemon, clients: Clients, tmp_path: Path
) -> None:
    wheel, _ = release(tmp_path)
    twine_upload(clients, f"{daemon.url}/root/dev/", ROOT, wheel.path)
    body = {"name": "pushed", "version": "1.0", "targetindex": "root/public"}
    got = call(daemon, "POST", "/root/dev/", body, auth=ROOT)
    assert got.status == 200, got.body
    assert simple_files(daemon, "root/public", "pushed") == {wheel.filename: wheel.sha256}


def test_push_refusals(daemon: Daemon, clients: Clients, tmp_path: Path) -> None:
    wheel, _ = release(tmp_path)
    twine_upload(clients, f"{daemon.url}/root/dev/", ROOT, wheel.path)
    assert call(daemon, "PUT", "/alice", {"password": ALICE[1]}, auth=ROOT).status == 201
    internal = {"name": "pushed", "version": "1.0", "targetindex": "root/public"}
    assert push(daemon, "root/dev", internal, auth=None).status == 401  # upload on the target
    assert push(daemon, "root/dev", internal, auth=ALICE).status == 403
    missing = {**internal, "version": "9.9"}
    assert push(daemon, "root/dev", missing).status == 404
    assert push(daemon, "root/dev", {**internal, "targetindex": "root/pypi"}).status == 405
    assert push(daemon, "root/dev", {**internal, "targetindex": "nope"}).status == 400
    assert push(daemon, "root/dev", {**internal, "bogus": 1}).status == 400
    external = {"name": "pushed", "version": "1.0", "posturl": "http://127.0.0.1:9/"}
    external |= {"username": "root", "password": "x"}
    assert push(daemon, "root/dev", external, auth=ALICE).status == 403  # upload on the source
    assert simple_files(daemon, "root/public", "pushed") is None


def test_push_to_an_external_index_uploads_with_the_given_credentials(
    daemon: Daemon,
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    external = daemon_factory(fake_index_server.url)
    wheel, sdist = release(tmp_path)
    twine_upload(clients, f"{daemon.url}/root/dev/", ROOT, wheel.path, sdist.path)
    body = {"name": "pushed", "version": "1.0", "posturl": f"{external.url}/root/public/"}
    got = push(daemon, "root/dev", body | {"username": "root", "password": ROOT_PASSWORD})
    assert got.status == 200, got.body
    assert [a[:2] for a in decoded(got)["result"]] == [[200, "upload"], [200, "upload"]]
    assert simple_files(external, "root/public", "pushed") == {
        wheel.filename: wheel.sha256,
        sdist.filename: sdist.sha256,
    }
    wrong = push(daemon, "root/dev", body | {"username": "root", "password": "wrong-pw"})
    assert wrong.status == 502  # devpi's answer when the external index refuses
    assert decoded(wrong)["result"][0][0] == 401
    assert ROOT_PASSWORD not in daemon.log() and "wrong-pw" not in daemon.log()


def test_push_to_an_external_index_obeys_the_address_rules(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    """alice's index is outside root's namespace: upstream.user_mirror_deny (loopback) applies."""
    daemon = daemon_factory(fake_index_server.url)
    assert call(daemon, "PUT", "/alice", {"password": ALICE[1]}, auth=ROOT).status == 201
    assert call(daemon, "PUT", "/alice/dev", {"type": "private"}, auth=ALICE).status == 201
    wheel, _ = release(tmp_path)
    twine_upload(clients, f"{daemon.url}/alice/dev/", ALICE, wheel.path)
    body = {"name": "pushed", "version": "1.0", "posturl": f"{daemon.url}/root/public/"}
    got = push(daemon, "alice/dev", body | {"username": "root", "password": ROOT_PASSWORD}, ALICE)
    assert got.status == 400, got.body
    assert "upstream.user_mirror_deny" in decoded(got)["error"]
    assert simple_files(daemon, "root/public", "pushed") is None


def _raw(daemon: Daemon, payload: bytes) -> bytes:
    port = int(daemon.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_push_method_on_the_wire(daemon: Daemon) -> None:
    """A connection that opens with PUSH is served, pipelined requests after it too; a PUSH
    after another request on a kept-alive connection is refused (docs/devpi.md)."""
    body = json.dumps({"name": "absent", "version": "1", "targetindex": "root/public"}).encode()
    auth = basic(ROOT)["Authorization"]
    push_request = (
        f"PUSH /root/dev HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
        f"Content-Type: application/json\r\nAccept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    close = b"GET /+health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = _raw(daemon, push_request + close)
    assert answer.startswith(b"HTTP/1.1 404 "), answer  # the handler ran: no such release
    assert answer.count(b"HTTP/1.1 200 ") == 1  # and the GET after it was served
    port = int(daemon.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /+health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        sock.sendall(push_request)
        assert sock.recv(65536).startswith(b"HTTP/1.0 400 ")


def test_devpi_file_urls(
    daemon: Daemon, clients: Clients, tmp_path: Path, fake_index_server: ThreadedServer
) -> None:
    wheel, sdist = release(tmp_path)
    twine_upload(clients, f"{daemon.url}/root/dev/", ROOT, wheel.path, sdist.path)
    for built in (wheel, sdist):
        got = http_get(daemon.url + devpi_path("root/dev", built))
        assert got.status == 200 and got.body == built.path.read_bytes()
    wrong = f"/root/dev/+f/{'0' * 3}/{wheel.sha256[3:16]}/{wheel.filename}"
    assert http_get(daemon.url + wrong).status == 404  # the hash prefix is checked
    assert http_get(daemon.url + devpi_path("root/public", wheel)).status == 404  # not there
    # a mirror's file, at the path devpi gives it
    page = http_get(daemon.index_url("root/pypi") + "beta/", {"Accept": JSON_TYPE})
    mirrored = json.loads(page.body)["files"][0]
    sha = mirrored["hashes"]["sha256"]
    got = http_get(f"{daemon.url}/root/pypi/+f/{sha[:3]}/{sha[3:16]}/{mirrored['filename']}")
    assert got.status == 200
    # pip reads a requirements file with devpi's URL
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"pushed @ {daemon.url}{devpi_path('root/dev', wheel)}\n")
    target = tmp_path / "target"
    clients.pip("install", "--no-deps", "--target", str(target), "-r", str(requirements))
    assert (target / "pushed").is_dir()


def test_twine_uploads_without_the_trailing_slash_and_shows_reasons(
    daemon: Daemon, clients: Clients, tmp_path: Path
) -> None:
    wheel, _ = release(tmp_path)
    twine_upload(clients, f"{daemon.url}/root/dev", ROOT, wheel.path)  # devpi's URL form
    assert simple_files(daemon, "root/dev", "pushed") == {wheel.filename: wheel.sha256}
    pypirc = tmp_path / "pypirc"
    pypirc.write_text(
        f"[distutils]\nindex-servers = wheelwell\n\n[wheelwell]\n"
        f"repository = {daemon.url}/root/public\nusername = root\npassword = {ROOT_PASSWORD}\n"
    )
    args = ("upload", "--repository", "wheelwell", "--config-file", str(pypirc))
    clients.twine(*args, "--non-interactive", str(wheel.path))
    assert simple_files(daemon, "root/public", "pushed") == {wheel.filename: wheel.sha256}
    refused = twine_upload(clients, f"{daemon.url}/root/pypi", ROOT, wheel.path, check=False)
    assert refused.returncode != 0
    shown = refused.stdout + refused.stderr
    assert "'root/pypi' is a mirror and takes no uploads" in " ".join(shown.split()), shown
    other = build_wheel(tmp_path / "other", "pushed", "1.0", requires=["beta"])
    conflict = twine_upload(clients, f"{daemon.url}/root/dev", ROOT, other.path, check=False)
    shown = " ".join((conflict.stdout + conflict.stderr).split())
    assert "409" in shown and "exists in root/dev with other bytes" in shown, shown


def test_real_devpi_push_to_another_index_and_to_pypirc(
    daemon: Daemon,
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    devpi: Devpi,
    tmp_path: Path,
) -> None:
    devpi("use", f"{daemon.url}/root/dev")
    devpi("login", "root", "--password", ROOT_PASSWORD)
    wheel, sdist = release(tmp_path)
    twine_upload(clients, f"{daemon.url}/root/dev/", ROOT, wheel.path, sdist.path)
    devpi("push", "pushed==1.0", "root/public")
    assert simple_files(daemon, "root/public", "pushed") == {
        wheel.filename: wheel.sha256,
        sdist.filename: sdist.sha256,
    }
    external = daemon_factory(fake_index_server.url)
    pypirc = tmp_path / "pypirc"
    pypirc.write_text(
        "[distutils]\nindex-servers = other\n\n[other]\n"
        f"repository = {external.url}/root/public/\nusername = root\npassword = {ROOT_PASSWORD}\n"
    )
    out = devpi("push", "--pypirc", str(pypirc), "pushed==1.0", "pypi:other")
    assert "200 upload" in out.stdout, out.stdout
    assert simple_files(external, "root/public", "pushed") == {
        wheel.filename: wheel.sha256,
        sdist.filename: sdist.sha256,
    }


def test_push_through_a_replica_is_relayed_to_its_primary(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("push-e2e-replication-secret-0123456789\n")
    secret.chmod(0o600)
    indexes = [
        {"name": "root/pypi", "kind": "mirror"},
        {"name": "root/public", "kind": "private", "bases": ["root/pypi"]},
        DEV,
    ]
    rep = {"secret_file": str(secret), "heartbeat": "1s"}
    primary = daemon_factory(
        fake_index_server.url, {"indexes": indexes, "replication": {**rep, "role": "primary"}}
    )
    replica = daemon_factory(
        fake_index_server.url,
        {"indexes": indexes, "replication": {**rep, "primary_url": primary.url}},
    )
    wheel, _ = release(tmp_path)
    twine_upload(clients, f"{primary.url}/root/dev/", ROOT, wheel.path)
    body = {"name": "pushed", "version": "1.0", "targetindex": "root/public"}
    got = push(replica, "root/dev", body)
    assert got.status == 200, got.body
    assert simple_files(replica, "root/public", "pushed") == {wheel.filename: wheel.sha256}
    assert simple_files(primary, "root/public", "pushed") == {wheel.filename: wheel.sha256}
