"""HTTPS served by the daemon itself: real pip and uv trust a test CA; SIGHUP rotates the cert."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT_PASSWORD, Clients, Daemon, Dists, clean_env, free_port
from tests.e2e.test_install import assert_installed
from tests.fakes.index import ThreadedServer
from tests.polling import wait_until

pytestmark = pytest.mark.e2e


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class LocalCA:
    """A throwaway CA made with the openssl CLI, and server certificates for 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.cert = workdir / "ca.pem"
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=wheelwell test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=workdir,
        )  # fmt: skip

    def issue(self, name: str, serial: int) -> tuple[Path, Path]:
        """A certificate and key for 127.0.0.1 with this serial number."""
        ext = self.dir / f"{name}.ext"
        ext.write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        )
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", "/CN=127.0.0.1",
            cwd=self.dir,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", str(serial), "-days", "2", "-out", f"{name}.pem",
            "-extfile", ext.name,
            cwd=self.dir,
        )  # fmt: skip
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return LocalCA(tmp_path_factory.mktemp("ca"))


def _healthy(url: str, ca: LocalCA) -> bool:
    try:
        with urllib.request.urlopen(url + "/+health", timeout=1, context=ca.client_context()) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.fixture
def tls_daemon(
    tmp_path: Path, ca: LocalCA, fake_index_server: ThreadedServer, dists: Dists
) -> Iterator[Daemon]:
    """The daemon with server.tls_cert/tls_key, live (cert serial 1001)."""
    cert, key = ca.issue("server", 1001)
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    live_cert.write_bytes(cert.read_bytes())
    live_key.write_bytes(key.read_bytes())
    port = free_port()
    config = {
        "server": {
            "host": "127.0.0.1",
            "port": port,
            "shutdown_timeout": "3s",
            "tls_cert": str(live_cert),
            "tls_key": str(live_key),
        },
        "storage": {"data_dir": str(tmp_path / "data")},
        "upstream": {"url": fake_index_server.url.rstrip("/") + "/simple/", "retries": 0},
    }
    config_path = tmp_path / "wheelwell.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(config_path)],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(PYTHONUNBUFFERED="1", WHEELWELL_ROOT_PASSWORD=ROOT_PASSWORD),
        )
    daemon = Daemon(f"https://127.0.0.1:{port}", config_path, tmp_path / "data", log_path, process)
    try:
        wait_until(
            lambda: process.poll() is not None or _healthy(daemon.url, ca),
            timeout=20,
            message=lambda: f"{daemon.url}/+health:\n{daemon.log()}",
        )
        assert process.poll() is None, daemon.log()
        yield daemon
    finally:
        assert daemon.stop() == 0, daemon.log()


def _served_serial(daemon: Daemon, ca: LocalCA) -> str:
    """The serial number of the certificate a new connection is shown (hex, as ssl gives it)."""
    with (
        socket.create_connection(("127.0.0.1", int(daemon.url.rsplit(":", 1)[1])), timeout=5) as s,
        ca.client_context().wrap_socket(s, server_hostname="127.0.0.1") as tls,
    ):
        cert = tls.getpeercert()
        assert cert is not None
        return str(cert["serialNumber"])


#: requests lets these override pip's --cert/PIP_CERT; this machine sets them, a user may too
NO_BUNDLE_OVERRIDE = {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""}


@pytest.mark.parametrize("how", ["--cert", "PIP_CERT", "SSL_CERT_FILE"])
def test_pip_installs_over_https_trusting_the_ca(
    how: str, tls_daemon: Daemon, ca: LocalCA, clients: Clients, tmp_path: Path
) -> None:
    target = tmp_path / "pip-target"
    options = ("--cert", str(ca.cert)) if how == "--cert" else ()
    env = {**NO_BUNDLE_OVERRIDE, **({how: str(ca.cert)} if how != "--cert" else {})}
    clients.run(
        sys.executable, "-m", "pip", "install", "--no-cache-dir", "--retries", "0", *options,
        "--target", str(target), "--index-url", tls_daemon.index_url(), "alpha",
        env=env,
    )  # fmt: skip
    assert_installed(clients, target)


def test_uv_installs_over_https_with_ssl_cert_file(
    tls_daemon: Daemon, ca: LocalCA, clients: Clients, tmp_path: Path
) -> None:
    target = tmp_path / "uv-target"
    clients.run(
        str(Path(sys.executable).with_name("uv")), "pip", "install", "--no-cache",
        "--python", sys.executable, "--target", str(target),
        "--index-url", tls_daemon.index_url(), "alpha",
        env={"SSL_CERT_FILE": str(ca.cert)},
    )  # fmt: skip
    assert_installed(clients, target)


def test_https_responses_carry_hsts(tls_daemon: Daemon, ca: LocalCA) -> None:
    url = tls_daemon.url + "/+health"
    with urllib.request.urlopen(url, timeout=5, context=ca.client_context()) as response:
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
        assert response.headers["Server"] == "wheelwell"


def test_sighup_rotates_the_certificate(tls_daemon: Daemon, ca: LocalCA, tmp_path: Path) -> None:
    assert _served_serial(tls_daemon, ca) == f"{1001:04X}"
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"

    live_cert.write_text("not a certificate\n")  # a broken rotation keeps the old certificate
    tls_daemon.process.send_signal(signal.SIGHUP)
    wait_until(
        lambda: "TLS reload" in tls_daemon.log(), timeout=10, message="the failed TLS reload"
    )
    assert _served_serial(tls_daemon, ca) == f"{1001:04X}"

    cert, key = ca.issue("rotated", 2002)
    live_key.write_bytes(key.read_bytes())
    live_cert.write_bytes(cert.read_bytes())
    tls_daemon.process.send_signal(signal.SIGHUP)
    wait_until(
        lambda: _served_serial(tls_daemon, ca) == f"{2002:04X}",
        timeout=10,
        message=lambda: f"the rotated certificate:\n{tls_daemon.log()}",
    )
    assert _healthy(tls_daemon.url, ca)


def test_unreadable_certificate_is_a_config_error(tmp_path: Path, ca: LocalCA) -> None:
    config = tmp_path / "bad.yaml"
    missing = tmp_path / "missing.pem"
    config.write_text(
        yaml.safe_dump({"server": {"tls_cert": str(missing), "tls_key": str(ca.dir / "ca.key")}})
    )
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    assert done.returncode == 2, done
    assert "server.tls_cert" in done.stderr and str(missing) in done.stderr
