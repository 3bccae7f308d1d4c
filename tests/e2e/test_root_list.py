"""A 700,000-name upstream root list goes through the daemon without its names in RAM (issue 10)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tests.conftest import DaemonFactory, http_get
from tests.fakes.index import FakeIndex, ThreadedServer

NAMES = 700_000
#: functional bound on the daemon's peak RSS (VmHWM); holding the names as str costs 600+ MB
MAX_PEAK_KB = 150 * 1024
LONG = 300.0


def peak_rss_kb(pid: int) -> int:
    """VmHWM of a process, in kB: the most it ever had resident."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


def test_a_700k_name_root_list_keeps_the_daemon_small(
    daemon_factory: DaemonFactory, fake_index: FakeIndex, fake_index_server: ThreadedServer
) -> None:
    fake_index.generated_names = NAMES
    daemon = daemon_factory(fake_index_server.url)
    gzipped = {"Accept-Encoding": "gzip"}
    html = http_get(daemon.index_url(), gzipped, timeout=LONG)
    assert html.status == 200
    assert html.headers["Content-Encoding"] == "gzip"
    body = gzip.decompress(html.body)
    assert body.count(b"<a href=") == NAMES + len(fake_index.projects)
    assert f'<a href="gen-{NAMES - 1}-pkg/">Gen_{NAMES - 1}.Pkg</a>'.encode() in body
    del body
    accept = {"Accept": "application/vnd.pypi.simple.v1+json", **gzipped}
    merged = http_get(daemon.index_url("root/public"), accept, timeout=LONG)
    assert merged.status == 200
    names = [p["name"] for p in json.loads(gzip.decompress(merged.body))["projects"]]
    assert names == fake_index.list_names()
    del names
    again = http_get(daemon.index_url(), {**gzipped, "If-None-Match": html.headers["ETag"]})
    assert again.status == 304
    assert peak_rss_kb(daemon.process.pid) < MAX_PEAK_KB, daemon.log()
