"""Helpers for the private-index e2e tests: a known root password, JSON API calls, raw uploads,
and devpi-client in a sandbox of its own."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest

from tests.conftest import CLIENT_TIMEOUT, Clients, Daemon, Fetched, clean_env, http_get, send
from tests.conftest import ROOT_PASSWORD as ROOT_PASSWORD
from tests.fakes.dists import Built
from tests.fakes.index import JSON_TYPE
from tests.polling import wait_until
from tests.seaweed import SeaweedFS, seaweedfs

ROOT = ("root", ROOT_PASSWORD)
Credentials = tuple[str, str]


def basic(credentials: Credentials) -> dict[str, str]:
    token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def call(
    daemon: Daemon,
    method: str,
    path: str,
    body: Mapping[str, Any] | None = None,
    *,
    auth: Credentials | None = None,
) -> Fetched:
    """One JSON API request; errors come back as a `Fetched`, not an exception."""
    headers = {"Accept": "application/json", **(basic(auth) if auth else {})}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    return send(urllib.request.Request(daemon.url + path, data, headers, method=method))


def decoded(fetched: Fetched) -> Any:
    """The JSON body, with the whole response in the message when it is not JSON."""
    try:
        return json.loads(fetched.body)
    except ValueError:
        pytest.fail(f"not JSON: {fetched.status} {fetched.body[:500]!r}")


def create_token(daemon: Daemon, auth: Credentials, **body: Any) -> dict[str, Any]:
    created = call(daemon, "POST", "/+tokens", body, auth=auth)
    assert created.status == 201, created.body
    result: dict[str, Any] = decoded(created)
    assert isinstance(result["token"], str)
    return result


def create_index(daemon: Daemon, name: str, auth: Credentials, **body: Any) -> dict[str, Any]:
    created = call(daemon, "PUT", f"/{name}", {"type": "private", **body}, auth=auth)
    assert created.status == 201, created.body
    result: dict[str, Any] = decoded(created)
    return result


# ---- uploads ---------------------------------------------------------------------------------


def upload_fields(built: Built, **overrides: str) -> dict[str, str]:
    """The form twine sends for `built`, minus the file itself."""
    data = built.path.read_bytes()
    wheel = built.filename.endswith(".whl")
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "metadata_version": "2.1",
        "name": built.name,
        "version": built.version,
        "filetype": "bdist_wheel" if wheel else "sdist",
        "pyversion": "py3" if wheel else "source",
        "sha256_digest": built.sha256,
        "md5_digest": hashlib.md5(data).hexdigest(),  # noqa: S324 (what twine sends)
        "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest(),
    }
    fields.update(overrides)
    return fields


def encode_multipart(
    fields: Mapping[str, str], filename: str, content: bytes
) -> tuple[bytes, str, bytes]:
    """(head, content type, tail): the form is `head + content + tail`, so tests can cut it."""
    boundary = uuid.uuid4().hex
    head = b""
    for name, value in fields.items():
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()
    head += (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="content"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, f"multipart/form-data; boundary={boundary}", tail


def post_body(url: str, body: bytes, headers: Mapping[str, str]) -> Fetched:
    """POST `body` as is; errors come back as a `Fetched`."""
    return send(urllib.request.Request(url, body, dict(headers), method="POST"))


def post_upload(
    url: str,
    built: Built,
    *,
    auth: Credentials | None = ROOT,
    form: Mapping[str, str] | None = None,
) -> Fetched:
    """POST `built` like twine does, with `form` overriding some fields."""
    data = built.path.read_bytes()
    fields = upload_fields(built, **(form or {}))
    head, content_type, tail = encode_multipart(fields, built.filename, data)
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    return post_body(url, head + data + tail, {**headers, **(basic(auth) if auth else {})})


def post_raw(url: str, headers: Mapping[str, str], body: bytes, *, declared: int) -> bytes:
    """Send `body` with `Content-Length: declared`, half-close, and return whatever comes back."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port is not None
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {declared}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += ["Connection: close", "", ""]
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as sock:
        sock.sendall("\r\n".join(lines).encode() + body)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionError):
            pass
    return received


def twine_upload(
    clients: Clients,
    url: str,
    credentials: Credentials,
    *files: Path,
    options: Sequence[str] = (),
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    user, password = credentials
    args = ("--repository-url", url, "-u", user, "-p", password, "--non-interactive")
    return clients.twine("upload", *args, *options, *map(str, files), check=check)


# ---- reading back ----------------------------------------------------------------------------


def simple_files(daemon: Daemon, index: str, project: str) -> dict[str, str] | None:
    """filename → sha256 on the index's JSON simple page, or None on 404."""
    page = http_get(daemon.index_url(index) + f"{project}/", {"Accept": JSON_TYPE})
    if page.status == 404:
        return None
    assert page.status == 200, page.body
    return {f["filename"]: f["hashes"]["sha256"] for f in json.loads(page.body)["files"]}


def download_file(daemon: Daemon, index: str, project: str, filename: str) -> bytes:
    """The bytes the daemon serves for `filename`, found through its JSON simple page."""
    page_url = daemon.index_url(index) + f"{project}/"
    page = http_get(page_url, {"Accept": JSON_TYPE})
    assert page.status == 200, page.body
    links = {f["filename"]: f["url"] for f in json.loads(page.body)["files"]}
    got = http_get(urljoin(page_url, links[filename]))
    assert got.status == 200, got.body
    return got.body


def pip_install(clients: Clients, daemon: Daemon, index: str, target: Path, *reqs: str) -> None:
    clients.pip("install", "--target", str(target), "--index-url", daemon.index_url(index), *reqs)


def installed_versions(clients: Clients, target: Path, *modules: str) -> list[str]:
    """`__version__` of each module, imported from `target` only."""
    code = f"import {', '.join(modules)}; print({', '.join(m + '.__version__' for m in modules)})"
    return clients.python(code, path=target).split()


def stored_files(daemon: Daemon) -> set[str]:
    """Every file under the data dir's `blobs/` and `tmp/`: what an upload may leave behind."""
    found: set[str] = set()
    for sub in ("blobs", "tmp"):
        root = daemon.data_dir / sub
        if root.exists():
            found |= {str(p.relative_to(daemon.data_dir)) for p in root.rglob("*") if p.is_file()}
    return found


def wait_until_no_temp_files(daemon: Daemon, timeout: float = 10.0) -> None:
    """Poll `tmp/` until it is empty (a cut request cleans up late); fail naming leftovers."""
    tmp = daemon.data_dir / "tmp"

    def leftovers() -> list[str]:
        return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []

    wait_until(
        lambda: not leftovers(),
        timeout=timeout,
        interval=0.1,
        message=lambda: f"{tmp} to be empty; still there: {leftovers()}",
    )


DEVPI = str(Path(sys.executable).with_name("devpi"))


@dataclass
class Devpi:
    """Runs `devpi …` as a user would, in a sandbox of its own under `home`."""

    home: Path
    daemon: Daemon

    @property
    def pip_conf(self) -> Path:
        return self.home / "pip.conf"

    def env(self) -> dict[str, str]:
        env = clean_env(
            HOME=str(self.home),
            PIP_CONFIG_FILE=str(self.pip_conf),
            UV_CONFIG_FILE=str(self.home / "uv.toml"),
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            PIP_NO_CACHE_DIR="1",
            PIP_NO_INPUT="1",
        )
        for name in ("VIRTUAL_ENV", "DEVPI_INDEX", "DEVPI_USER", "DEVPI_PASSWORD"):
            env.pop(name, None)
        # as in an activated venv: `devpi test` looks for tox on PATH
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def __call__(
        self, *args: str, check: bool = True, stdin: str = "", cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [DEVPI, "--clientdir", str(self.home / "client"), *args]
        result = subprocess.run(
            argv,
            env=self.env(),
            cwd=cwd or self.home,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
            check=False,
            start_new_session=True,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(args)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def seed(self) -> None:
        """The seed's daily workflow, first two steps."""
        self("use", f"{self.daemon.url}/root/public", "--set-cfg")
        self("login", "root", "--password", ROOT_PASSWORD)


@pytest.fixture
def devpi(daemon: Daemon, tmp_path: Path) -> Devpi:
    home = tmp_path / "devpi-home"
    home.mkdir()
    return Devpi(home, daemon)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SeaweedFS]:
    """A real S3 server (SeaweedFS) on 127.0.0.1, its bucket made."""
    server = seaweedfs(tmp_path / "seaweedfs")
    server.start()  # before any AWS_* reaches an environment: SeaweedFS given them checks them
    yield server
    server.stop()
