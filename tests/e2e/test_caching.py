"""The daemon's reason to exist: installs survive a dead upstream, and each file is fetched once."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin

import pytest

from tests.conftest import Clients, Daemon, Dists, http_get
from tests.fakes.index import JSON_TYPE, FakeIndex, ThreadedServer

pytestmark = pytest.mark.e2e

CLIENTS = 8


def test_install_survives_dead_upstream(
    fake_index: FakeIndex,
    fake_index_server: ThreadedServer,
    daemon: Daemon,
    clients: Clients,
    tmp_path: Path,
    dists: Dists,
) -> None:
    def install(target: Path) -> None:
        clients.pip("install", "--target", str(target), "--index-url", daemon.index_url(), "alpha")
        out = clients.python("import alpha, beta; print(beta.__version__)", path=target)
        assert out.split() == ["2.0"]

    files = [f"/files/{built.filename}" for built in (dists.alpha, dists.beta2)]
    install(tmp_path / "first")
    assert [fake_index.hits(path) for path in files] == [1, 1]
    install(tmp_path / "second")  # upstream still up: files must come from the cache anyway
    assert [fake_index.hits(path) for path in files] == [1, 1]
    seen = len(fake_index.requests)
    fake_index_server.stop()
    install(tmp_path / "third")
    assert len(fake_index.requests) == seen  # the port is closed: nothing can have arrived


def test_concurrent_cold_file_is_fetched_once(
    fake_index: FakeIndex, daemon: Daemon, dists: Dists
) -> None:
    page_url = daemon.index_url() + "bulky/"
    page = http_get(page_url, {"Accept": JSON_TYPE})
    assert page.status == 200
    url = urljoin(page_url, json.loads(page.body)["files"][0]["url"])
    fake_index.slow_chunk_delay = 0.03  # ~80 chunks: about 2.4 s, so the downloads overlap
    barrier = threading.Barrier(CLIENTS)

    def download(_: int) -> tuple[float, float, str]:
        barrier.wait()
        started = time.monotonic()
        with urllib.request.urlopen(url, timeout=30) as response:
            digest = hashlib.sha256(response.read()).hexdigest()
        return started, time.monotonic(), digest

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(download, range(CLIENTS)))
    assert [digest for _, _, digest in results] == [dists.bulky.sha256] * CLIENTS
    assert max(s for s, _, _ in results) < min(e for _, e, _ in results)  # they did overlap
    assert fake_index.hits(f"/files/{dists.bulky.filename}") == 1


def test_cold_page_with_dead_upstream_is_502(
    fake_index_server: ThreadedServer, daemon: Daemon
) -> None:
    fake_index_server.stop()
    assert http_get(daemon.index_url() + "alpha/").status == 502


def test_sigterm_exits_cleanly(daemon: Daemon) -> None:
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()
