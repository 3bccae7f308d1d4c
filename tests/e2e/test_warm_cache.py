"""A warm daemon answers a repeated resolution and install with no upstream request at all.

The upstream plays Nexus/Artifactory: no PEP 658 metadata. With `generate_metadata` (the default)
uv and pip read the metadata wheelwell reads with Range requests; without it, uv falls back to a
HEAD and Range reads of the wheel, which the daemon answers from what it read the first time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Clients, DaemonFactory, Dists
from tests.fakes.index import FakeIndex, Mode, ThreadedServer

pytestmark = pytest.mark.e2e


def _indexes(generate: bool) -> dict[str, Any] | None:
    """The default indexes (generate_metadata is on by default), or root/pypi without it."""
    if generate:
        return None
    return {
        "indexes": [
            {"name": "root/pypi", "kind": "mirror", "generate_metadata": generate},
            {"name": "root/public", "kind": "private", "bases": ["root/pypi"]},
        ]
    }


def _whole_wheel_gets(fake: FakeIndex, since: int) -> list[str]:
    """Upstream GETs of a wheel without a Range: what generated metadata must avoid."""
    return [
        r.path
        for r in fake.requests[since:]
        if r.method == "GET" and r.path.endswith(".whl") and "Range" not in r.headers
    ]


@pytest.mark.parametrize(
    ("generate", "mode"),
    [(True, "json"), (True, "html"), (False, "both")],
    ids=["generated", "generated-html", "client-ranges"],
)
def test_second_uv_compile_makes_no_upstream_request(
    generate: bool,
    mode: Mode,
    fake_index: FakeIndex,
    fake_index_server: ThreadedServer,
    daemon_factory: DaemonFactory,
    clients: Clients,
    tmp_path: Path,
    dists: Dists,
) -> None:
    fake_index.offer_metadata = False
    fake_index.mode = mode  # an HTML page gives no sizes: each first read is the last 1 MiB
    daemon = daemon_factory(fake_index_server.url, _indexes(generate))
    requirements = tmp_path / "requirements.in"
    requirements.write_text("alpha\nbulky\n")
    outputs = []
    counts = []
    for run in range(2):
        out = tmp_path / f"out{run}.txt"
        clients.uv(
            "pip",
            "compile",
            "--no-cache",
            "--python",
            sys.executable,
            "--index-url",
            daemon.index_url(),
            str(requirements),
            "-o",
            str(out),
        )
        outputs.append([ln for ln in out.read_text().splitlines() if "==" in ln])
        counts.append(len(fake_index.requests))
    assert outputs[0] == outputs[1] == ["alpha==1.0", "beta==2.0", "bulky==1.0"]
    assert counts[1] == counts[0], fake_index.requests[counts[0] :]
    assert _whole_wheel_gets(fake_index, 0) == []  # metadata came from ranges, not downloads


def test_second_pip_install_makes_no_upstream_request(
    fake_index: FakeIndex,
    fake_index_server: ThreadedServer,
    daemon_factory: DaemonFactory,
    clients: Clients,
    tmp_path: Path,
) -> None:
    fake_index.offer_metadata = False
    daemon = daemon_factory(fake_index_server.url)
    counts = []
    for run in range(2):
        target = tmp_path / f"target{run}"
        clients.pip("install", "--target", str(target), "--index-url", daemon.index_url(), "alpha")
        assert (target / "alpha" / "__init__.py").exists()
        counts.append(len(fake_index.requests))
    assert counts[1] == counts[0], fake_index.requests[counts[0] :]
