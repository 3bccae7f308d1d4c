"""Behind a real nginx that terminates TLS: public URLs, the client's address, real pip and uv."""

from __future__ import annotations

import html
import http.client
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Clients, Daemon, DaemonFactory, Fetched, free_port
from tests.e2e.test_install import assert_installed
from tests.e2e.test_tls import LocalCA
from tests.fakes.index import ThreadedServer
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CLIENT_ADDRESS = "127.0.0.2"  # loopback too, but not the proxy's 127.0.0.1
SPOOFED = "203.0.113.66"

CONFIG = """\
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log {prefix}/access.log;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    client_max_body_size 1g;
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
    }}
  }}
}}
"""


@dataclass(frozen=True, slots=True)
class Front:
    """nginx in front of `daemon`; `url` is the public https base."""

    url: str
    port: int
    daemon: Daemon
    ca: LocalCA

    def get(self, path: str, headers: dict[str, str]) -> Fetched:
        """GET from the client address, through nginx."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1",
            self.port,
            context=self.ca.client_context(),
            source_address=(CLIENT_ADDRESS, 0),
            timeout=30,
        )
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            return Fetched(response.status, dict(response.headers), response.read())
        finally:
            connection.close()


def _answers(port: int, ca: LocalCA) -> bool:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port, context=ca.client_context(), timeout=1
    )
    try:
        connection.request("GET", "/+health")
        return connection.getresponse().status == 200
    except (OSError, ssl.SSLError):
        return False
    finally:
        connection.close()


@pytest.fixture
def front(
    tmp_path: Path, daemon_factory: DaemonFactory, fake_index_server: ThreadedServer
) -> Iterator[Front]:
    if not Path(NGINX).exists():
        pytest.fail(f"{NGINX} is missing: apt-get install -y nginx (make test installs it)")
    ca = LocalCA(tmp_path / "ca")
    cert, key = ca.issue("front", 7)
    daemon = daemon_factory(
        fake_index_server.url, {"server": {"trusted_proxies": ["127.0.0.1/32"]}}
    )
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        CONFIG.format(
            user="user root;" if os.geteuid() == 0 else "",
            prefix=prefix,
            port=port,
            cert=cert,
            key=key,
            upstream=daemon.url.rsplit(":", 1)[1],
        )
    )
    process = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: process.poll() is not None or _answers(port, ca),
            timeout=20,
            message=lambda: "nginx to answer",
        )
        assert process.poll() is None, (prefix / "error.log").read_text()
        yield Front(f"https://127.0.0.1:{port}", port, daemon, ca)
    finally:
        process.terminate()
        process.wait(20)


def test_ui_shows_the_public_https_urls(front: Front) -> None:
    response = front.get("/", {"Accept": "text/html", "X-Forwarded-For": SPOOFED})
    body = html.unescape(response.body.decode())
    assert response.status == 200
    assert f"pip install --index-url {front.url}/root/public/+simple/ PROJECT" in body
    assert f"twine upload --repository-url {front.url}/root/public/ dist/*" in body
    assert "--trusted-host" not in body and "http://" not in body
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_access_log_names_the_client_not_the_proxy_nor_a_spoofed_address(front: Front) -> None:
    response = front.get("/+status?from=front", {"X-Forwarded-For": SPOOFED})
    assert response.status == 200
    line = wait_until(
        lambda: next((x for x in front.daemon.log().splitlines() if "from=front" in x), ""),
        timeout=10,
        message="the access log line",
    )
    assert f"{CLIENT_ADDRESS} GET /+status?from=front 200" in line
    assert SPOOFED not in line


def test_pip_and_uv_install_through_the_proxy(
    front: Front, clients: Clients, tmp_path: Path
) -> None:
    index = f"{front.url}/root/public/+simple/"
    env = {"SSL_CERT_FILE": str(front.ca.cert)}
    pip_target = tmp_path / "pip-target"
    clients.run(
        sys.executable, "-m", "pip", "install", "--no-cache-dir", "--retries", "0",
        "--target", str(pip_target), "--index-url", index, "alpha", env=env,
    )  # fmt: skip
    assert_installed(clients, pip_target)
    uv_target = tmp_path / "uv-target"
    clients.run(
        str(Path(sys.executable).with_name("uv")), "pip", "install", "--no-cache",
        "--python", sys.executable, "--target", str(uv_target), "--index-url", index, "alpha",
        env=env,
    )  # fmt: skip
    assert_installed(clients, uv_target)
