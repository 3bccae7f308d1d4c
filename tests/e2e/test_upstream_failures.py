"""A broken upstream must give clients an error (502 or a cut body), never a bad file or a hang."""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

import pytest

from tests.conftest import Daemon, Dists, http_get
from tests.fakes.dists import Built
from tests.fakes.index import JSON_TYPE, FakeIndex

pytestmark = pytest.mark.e2e


def file_url(daemon: Daemon, project: str, filename: str) -> str:
    """The daemon's link for `filename`, read from its own JSON page."""
    page_url = daemon.index_url() + f"{project}/"
    page = http_get(page_url, {"Accept": JSON_TYPE})
    assert page.status == 200, page.body
    links: dict[str, str] = {f["filename"]: f["url"] for f in json.loads(page.body)["files"]}
    return urljoin(page_url, links[filename])


def download(url: str) -> bytes | None:
    """The body, or None when the daemon answered an error or cut the body short."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        exc.close()
        return None
    except (http.client.IncompleteRead, ConnectionError):
        return None


def stored_copies(data_dir: Path, built: Built) -> list[Path]:
    """Files under the daemon's data dir with exactly `built`'s bytes, whatever the layout."""
    return [
        p
        for p in data_dir.rglob("*")
        if p.is_file()
        and p.stat().st_size == built.size
        and hashlib.sha256(p.read_bytes()).hexdigest() == built.sha256
    ]


def test_upstream_5xx_is_502(fake_index: FakeIndex, daemon: Daemon) -> None:
    fake_index.fail_status = 503
    assert http_get(daemon.index_url() + "alpha/").status == 502


def test_hung_upstream_is_gateway_error_after_read_timeout(
    fake_index: FakeIndex, daemon: Daemon
) -> None:
    fake_index.hang = True
    started = time.monotonic()
    assert http_get(daemon.index_url() + "alpha/", timeout=30).status in (502, 504)
    assert time.monotonic() - started < 15  # read_timeout is 5s, retries 0


def test_truncated_upstream_file_is_not_served_or_stored(
    fake_index: FakeIndex, daemon: Daemon, dists: Dists
) -> None:
    url = file_url(daemon, "bulky", dists.bulky.filename)
    fake_index.truncate_files = True
    assert download(url) is None
    assert stored_copies(daemon.data_dir, dists.bulky) == []
    fake_index.truncate_files = False
    body = download(url)
    assert body is not None
    assert hashlib.sha256(body).hexdigest() == dists.bulky.sha256
    assert fake_index.hits(f"/files/{dists.bulky.filename}") == 2


def test_hash_mismatch_is_not_served_or_stored(
    fake_index: FakeIndex, daemon: Daemon, dists: Dists
) -> None:
    fake_index.wrong_hash = True
    url = file_url(daemon, "bulky", dists.bulky.filename)
    assert download(url) is None
    assert fake_index.hits(f"/files/{dists.bulky.filename}") == 1
    assert stored_copies(daemon.data_dir, dists.bulky) == []
