"""A wheelhouse directory seen by pip: a file dropped in installs, a removed one no longer does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import Clients, DaemonFactory, http_get
from tests.fakes.dists import build_wheel
from tests.fakes.index import ThreadedServer
from tests.polling import wait_until

pytestmark = pytest.mark.e2e


def test_pip_sees_wheelhouse_changes(
    daemon_factory: DaemonFactory,
    fake_index_server: ThreadedServer,
    clients: Clients,
    tmp_path: Path,
) -> None:
    house = tmp_path / "wheelhouse"
    house.mkdir()
    overrides = {
        "storage": {"wheelhouse_poll": "0.2s"},
        "indexes": [
            {"name": "root/pypi", "kind": "mirror"},
            {"name": "root/public", "kind": "private", "bases": ["root/pypi"],
             "wheelhouse": [str(house)]},
        ],
    }  # fmt: skip
    daemon = daemon_factory(fake_index_server.url, overrides)
    built = build_wheel(tmp_path / "built", "housed", "1.0", requires=["beta>=1"])
    shutil.copy(built.path, house)
    index = daemon.index_url("root/public")
    wait_until(
        lambda: http_get(f"{index}housed/").status == 200,
        timeout=10,
        interval=0.1,
        message=lambda: f"the wheelhouse's file on {index}housed/:\n{daemon.log()}",
    )
    target = tmp_path / "target"
    clients.pip("install", "--index-url", index, "--target", str(target), "housed")
    assert (target / "housed" / "__init__.py").exists()
    assert (target / "beta").is_dir()  # the dependency came through the mirror
    (house / built.filename).unlink()
    wait_until(
        lambda: http_get(f"{index}housed/").status == 404,
        timeout=10,
        interval=0.1,
        message=lambda: f"{index}housed/ to be gone with its file:\n{daemon.log()}",
    )
    again = clients.pip(
        "install", "--index-url", index, "--target", str(tmp_path / "t2"), "housed", check=False
    )
    assert again.returncode != 0
