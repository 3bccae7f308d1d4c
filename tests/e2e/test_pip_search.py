"""`pip search --index` against the daemon: the XML-RPC call pip really makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Clients, Daemon
from tests.e2e.conftest import post_upload
from tests.fakes.dists import build_wheel

pytestmark = pytest.mark.e2e


def test_pip_search_finds_an_uploaded_package(
    daemon: Daemon, clients: Clients, tmp_path: Path
) -> None:
    for version, summary in (("1.0", "Old summary"), ("1.2", "Belts and braces for tests")):
        built = build_wheel(tmp_path, "searchable-toolbelt", version, summary=summary)
        assert post_upload(f"{daemon.url}/root/public/", built).status == 200
    other = build_wheel(tmp_path, "unrelated", "0.1", summary="Nothing to see")
    assert post_upload(f"{daemon.url}/root/public/", other).status == 200

    found = clients.pip("search", "--index", f"{daemon.url}/root/public/", "toolbelt")
    lines = found.stdout.splitlines()
    assert any(
        line.startswith("searchable-toolbelt (1.2)") and "Belts and braces for tests" in line
        for line in lines
    ), found.stdout
    assert "unrelated" not in found.stdout

    nothing = clients.pip("search", "--index", f"{daemon.url}/root/public/", "zzz", check=False)
    assert nothing.returncode == 23, nothing.stdout + nothing.stderr  # pip's NO_MATCHES_FOUND
