"""An upstream that refuses, hangs, then recovers: cached answers flow, service resumes at once."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Clients, Daemon, DaemonFactory, Dists, http_get
from tests.fakes.index import FakeIndex, ThreadedServer
from tests.polling import wait_until

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

OFFLINE_RETRY = 60.0


def timed_get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    status = http_get(url, timeout=30.0).status
    return status, time.monotonic() - started


def pip_download(clients: Clients, daemon: Daemon, dest: Path, project: str) -> None:
    """Real pip with its default retries and timeout (unlike `clients.pip`, which has none)."""
    clients.run(
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-cache-dir",
        "--no-deps",
        "--dest",
        str(dest),
        "--index-url",
        daemon.index_url(),
        project,
    )


def test_refuse_hang_recover(
    daemon_factory: DaemonFactory,
    fake_index: FakeIndex,
    fake_index_server: ThreadedServer,
    clients: Clients,
    dists: Dists,
    tmp_path: Path,
) -> None:
    daemon = daemon_factory(
        fake_index_server.url,
        {
            "upstream": {
                "failure_threshold": 1,
                "offline_retry": f"{OFFLINE_RETRY:.0f}s",
                "read_timeout": "1s",
                "connect_timeout": "1s",
                "page_ttl": "0s",  # every cached page is stale: it would revalidate if it could
            }
        },
    )
    cached_page = daemon.index_url() + "alpha/"
    pip_download(clients, daemon, tmp_path / "warm", "alpha")

    fake_index_server.stop()  # refuses connections
    assert http_get(daemon.index_url() + "beta/").status == 502
    assert http_get(daemon.index_url() + "beta/").status in (502, 503)
    status, seconds = timed_get(cached_page)
    assert status == 200 and seconds < 0.5, seconds
    pip_download(clients, daemon, tmp_path / "down", "alpha")  # cached page and file
    assert (tmp_path / "down" / dists.alpha.filename).exists()

    fake_index.hang = True
    fake_index_server.start()  # accepts, then never answers
    wait_until(
        lambda: (
            http_get(daemon.index_url() + "beta/").status in (502, 503, 504)
            and fake_index.hits("/simple/beta/") > 0
        ),
        timeout=10.0,
        message="a probe of the hanging upstream",
    )
    status, seconds = timed_get(cached_page)
    assert status == 200 and seconds < 0.5, seconds

    fake_index.hang = False
    recovered = time.monotonic()
    pip_download(clients, daemon, tmp_path / "after", "beta")  # never cached
    elapsed = time.monotonic() - recovered
    assert (tmp_path / "after" / dists.beta2.filename).exists()
    log.info("uncached pip download succeeded %.2fs after the upstream recovered", elapsed)
    assert elapsed < 5.0, elapsed  # about a second of probing plus pip's own start-up
    report = http_get(daemon.url + "/+status", {"Accept": "application/json"})
    assert b'"available": true' in report.body
