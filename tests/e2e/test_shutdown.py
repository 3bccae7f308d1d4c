"""SIGTERM ends the daemon within `server.shutdown_timeout` plus a margin, whatever clients do."""

from __future__ import annotations

import hashlib
import http.client
import signal
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.conftest import Daemon, DaemonFactory, Dists
from tests.e2e.test_upstream_failures import file_url
from tests.fakes.index import FakeIndex, ThreadedServer

pytestmark = pytest.mark.e2e

TIMEOUT = 3.0
#: the interpreter's exit, closing the database and the store: well under a second, with room
#: for a loaded CI machine; the watchdog's forced exit (status 1) is told apart by the status
MARGIN = 3.0


def _connect(url: str, *, small_window: bool = True) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    if small_window:  # the daemon's writes block as soon as this client stops reading
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


def _request(url: str) -> bytes:
    parts = urlsplit(url)
    return f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()


@pytest.fixture
def slow_clients() -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        sock.close()


def _stalled_reader(url: str, sockets: list[socket.socket]) -> socket.socket:
    """Asks for a file and reads one chunk, then nothing: the daemon's writes block."""
    sock = _connect(url)
    sockets.append(sock)
    sock.sendall(_request(url))
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    return sock


def _sigterm_and_time(daemon: Daemon) -> float:
    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    status = daemon.process.wait(120)  # far above the bound: a slow exit is measured, not killed
    elapsed = time.monotonic() - started
    assert status == 0, f"exit status {status} (1: the watchdog forced it)\n{daemon.log()}"
    return elapsed


def test_sigterm_with_stalled_clients_exits_within_shutdown_timeout(
    daemon_factory: DaemonFactory,
    fake_index: FakeIndex,
    fake_index_server: ThreadedServer,
    dists: Dists,
    slow_clients: list[socket.socket],
) -> None:
    daemon = daemon_factory(fake_index_server.url, {"server": {"shutdown_timeout": f"{TIMEOUT}s"}})
    bulky = file_url(daemon, "bulky", dists.bulky.filename)
    fake_index.slow_chunk_delay = 0.5  # a cold download that takes ~40 s
    _stalled_reader(bulky, slow_clients)  # follows the slow download
    half_sent = _connect(daemon.url)  # a request whose headers never end
    slow_clients.append(half_sent)
    half_sent.sendall(b"GET /+health HTTP/1.1\r\nHost: x\r\n")
    idle = _connect(daemon.url)  # a keep-alive connection that sends nothing
    slow_clients.append(idle)

    elapsed = _sigterm_and_time(daemon)

    print(f"exit after SIGTERM with stalled clients: {elapsed:.2f} s")  # noqa: T201
    assert elapsed < TIMEOUT + MARGIN, daemon.log()
    assert daemon.process.returncode == 0, daemon.log()


def test_sigterm_with_a_stalled_reader_of_a_cached_file(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    dists: Dists,
    slow_clients: list[socket.socket],
) -> None:
    daemon = daemon_factory(fake_index_server.url, {"server": {"shutdown_timeout": f"{TIMEOUT}s"}})
    bulky = file_url(daemon, "bulky", dists.bulky.filename)
    with _connect(bulky) as warm:  # cache it first
        warm.sendall(_request(bulky).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        while warm.recv(1 << 16):
            pass
    for _ in range(3):
        _stalled_reader(bulky, slow_clients)

    elapsed = _sigterm_and_time(daemon)

    print(f"exit after SIGTERM with stalled readers of a cached file: {elapsed:.2f} s")  # noqa: T201
    assert elapsed < TIMEOUT + MARGIN, daemon.log()


def test_in_flight_download_completes_when_it_can(
    daemon_factory: DaemonFactory,
    fake_index: FakeIndex,
    fake_index_server: ThreadedServer,
    dists: Dists,
) -> None:
    daemon = daemon_factory(fake_index_server.url, {"server": {"shutdown_timeout": f"{TIMEOUT}s"}})
    bulky = file_url(daemon, "bulky", dists.bulky.filename)
    fake_index.slow_chunk_delay = 0.01  # ~1 s for the whole file: well within the timeout
    body = bytearray()
    started = threading.Event()

    def read_all() -> None:
        with _connect(bulky, small_window=False) as sock:
            sock.sendall(_request(bulky).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            while chunk := sock.recv(1 << 16):
                body.extend(chunk)
                started.set()

    reader = threading.Thread(target=read_all)
    reader.start()
    assert started.wait(30)

    elapsed = _sigterm_and_time(daemon)
    reader.join(30)
    print(f"exit after SIGTERM with a fast download in flight: {elapsed:.2f} s")  # noqa: T201

    _, _, payload = bytes(body).partition(b"\r\n\r\n")
    assert hashlib.sha256(payload).hexdigest() == dists.bulky.sha256, len(payload)
    assert elapsed < TIMEOUT + MARGIN, daemon.log()


def test_sigterm_with_kept_alive_connections_that_served_requests_exits_at_once(
    daemon: Daemon, dists: Dists
) -> None:
    """pip and uv keep connections open between requests: they must not hold the drain."""
    bulky = file_url(daemon, "bulky", dists.bulky.filename)
    kept = []
    for url in (daemon.url + "/+health", bulky):
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        conn.request("GET", parts.path)
        conn.getresponse().read()  # served; the connection stays open for the next request
        kept.append(conn)
    try:
        elapsed = _sigterm_and_time(daemon)
    finally:
        for conn in kept:
            conn.close()
    print(f"exit after SIGTERM with kept-alive connections: {elapsed:.2f} s")  # noqa: T201
    assert "cutting off" not in daemon.log()  # nothing was busy: nothing is cut off
