"""Real pip and uv installing through the daemon, in both upstream page formats."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from urllib.parse import urljoin

import pytest

from tests.conftest import Clients, Daemon, Dists, http_get
from tests.fakes.dists import Built
from tests.fakes.index import JSON_TYPE, FakeIndex, Mode

pytestmark = pytest.mark.e2e

IMPORT_CHECK = "import alpha, beta; print(alpha.__version__, beta.__version__, alpha.__file__)"


def assert_installed(clients: Clients, target: Path) -> None:
    """alpha 1.0 and beta 2.0 from `target`: not alpha 2.0 (needs Python 4), not yanked beta 3.0."""
    alpha_version, beta_version, alpha_file = clients.python(IMPORT_CHECK, path=target).split()
    assert (alpha_version, beta_version) == ("1.0", "2.0")
    assert Path(alpha_file).is_relative_to(target)


def file_path(built: Built) -> str:
    return f"/files/{built.filename}"


@pytest.mark.parametrize("mode", ["json", "html"])
@pytest.mark.parametrize("route", ["/root/pypi/+simple/", "/simple/", "/root/public/+simple/"])
def test_pip_install(
    mode: Mode,
    route: str,
    fake_index: FakeIndex,
    daemon: Daemon,
    clients: Clients,
    tmp_path: Path,
    dists: Dists,
) -> None:
    fake_index.mode = mode
    target = tmp_path / "target"
    clients.pip("install", "--target", str(target), "--index-url", daemon.url + route, "alpha")
    assert_installed(clients, target)
    assert fake_index.hits(file_path(dists.alpha)) == 1
    assert fake_index.hits(file_path(dists.beta2)) == 1
    assert fake_index.hits(file_path(dists.beta_yanked)) == 0


@pytest.mark.parametrize("mode", ["json", "html"])
def test_uv_install(
    mode: Mode,
    fake_index: FakeIndex,
    daemon: Daemon,
    clients: Clients,
    tmp_path: Path,
    dists: Dists,
) -> None:
    fake_index.mode = mode
    target = tmp_path / "target"
    args = ("--target", str(target), "--python", sys.executable, "--index-url", daemon.index_url())
    clients.uv("pip", "install", *args, "alpha")
    assert_installed(clients, target)
    assert fake_index.hits(file_path(dists.alpha)) == 1


def test_pip_download_require_hashes(
    daemon: Daemon, clients: Clients, tmp_path: Path, dists: Dists
) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        f"alpha==1.0 --hash=sha256:{dists.alpha.sha256}\n"
        f"beta==2.0 --hash=sha256:{dists.beta2.sha256}\n"
    )
    dest = tmp_path / "downloads"
    args = ("--require-hashes", "-r", str(requirements), "-d", str(dest))
    clients.pip("download", *args, "--index-url", daemon.index_url())
    got = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in dest.iterdir()}
    assert got == {
        dists.alpha.filename: dists.alpha.sha256,
        dists.beta2.filename: dists.beta2.sha256,
    }


def test_json_page_links_into_the_daemon(daemon: Daemon, dists: Dists) -> None:
    page_url = daemon.index_url() + "beta/"
    page = http_get(page_url, {"Accept": JSON_TYPE})
    assert page.status == 200
    assert page.headers["Content-Type"].startswith(JSON_TYPE)
    files = {f["filename"]: f for f in json.loads(page.body)["files"]}
    assert set(files) == {d.filename for d in (dists.beta1, dists.beta2, dists.beta_yanked)}
    beta2 = files[dists.beta2.filename]
    url = urljoin(page_url, beta2["url"])
    assert url == f"{daemon.url}/root/pypi/+f/{dists.beta2.sha256}/{dists.beta2.filename}"
    assert beta2["hashes"] == {"sha256": dists.beta2.sha256}
    assert files[dists.beta_yanked.filename]["yanked"] == "broken build"
    assert hashlib.sha256(http_get(url).body).hexdigest() == dists.beta2.sha256
    assert http_get(url + ".metadata").body == dists.beta2.metadata


def test_html_page_keeps_attributes(daemon: Daemon, dists: Dists) -> None:
    page = http_get(daemon.index_url() + "alpha/", {"Accept": "text/html"})
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    text = page.body.decode()
    assert f"{dists.alpha.sha256}/{dists.alpha.filename}#sha256={dists.alpha.sha256}" in text
    assert 'data-requires-python="&gt;=4"' in text
    assert f'data-core-metadata="sha256={dists.alpha.metadata_sha256}"' in text


def test_unknown_project_is_404(fake_index: FakeIndex, daemon: Daemon) -> None:
    assert http_get(daemon.index_url() + "no-such-project/").status == 404
    assert fake_index.hits("/simple/no-such-project/") == 1
