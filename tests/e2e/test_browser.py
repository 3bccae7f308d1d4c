"""The web UI in a real browser: Debian's headless Chromium against the daemon subprocess.

No JavaScript is needed by the pages, so `--dump-dom` (the DOM after load) is what a person sees.
"""

from __future__ import annotations

import html
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Daemon, http_get
from tests.e2e.conftest import post_upload
from tests.fakes.dists import build_wheel

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
DESCRIPTION = """# Browser heading

<script>document.body.setAttribute("data-pwned", "script")</script>

<img src="/nothing.png" onerror="document.body.setAttribute('data-pwned', 'onerror')">

[click me](javascript:document.body.setAttribute('data-pwned','link'))
"""


class Browser:
    """Runs one headless Chromium per page, with a profile under the test's tmp dir."""

    def __init__(self, workdir: Path) -> None:
        if not CHROMIUM.exists():
            pytest.fail(
                f"{CHROMIUM} is missing: the browser test needs Debian's chromium package "
                "(apt-get install -y chromium); make test installs it"
            )
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)

    def _run(self, *args: str) -> str:
        return self._run_logged(*args)[0]

    def _run_logged(self, *args: str) -> tuple[str, str]:
        command = [str(CHROMIUM), *FLAGS, f"--user-data-dir={self.workdir / 'profile'}", *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
        assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stderr[-2000:]}"
        return done.stdout, done.stderr

    def console(self, url: str) -> list[str]:
        """The page's console messages (CSP violations among them), from Chromium's log."""
        _, log = self._run_logged("--enable-logging=stderr", "--v=0", "--dump-dom", url)
        return [line for line in log.splitlines() if ":CONSOLE" in line]

    def dom(self, url: str) -> str:
        return self._run("--dump-dom", url)

    def screenshot(self, url: str, name: str) -> Path:
        path = self.workdir / f"{name}.png"
        self._run(f"--screenshot={path}", "--window-size=1280,900", url)
        assert path.stat().st_size > 0, path
        print(f"screenshot of {url}: {path}")  # noqa: T201 (the paths are the point)
        return path

    def page(self, url: str, name: str) -> str:
        """The page's DOM, with a screenshot saved alongside."""
        self.screenshot(url, name)
        return self.dom(url)


@pytest.fixture
def browser(tmp_path: Path) -> Browser:
    return Browser(tmp_path / "browser")


def test_pages_in_chromium(daemon: Daemon, browser: Browser, tmp_path: Path) -> None:
    built = build_wheel(
        tmp_path / "dists",
        "shown",
        "1.2.0",
        summary="A <b>shown</b> package",
        description=DESCRIPTION,
    )
    uploaded = post_upload(daemon.url + "/root/public/", built)
    assert uploaded.status == 200, uploaded.body

    home = html.unescape(browser.page(daemon.url + "/", "home"))
    assert '<form action="/+search" method="get"' in home
    assert 'href="/root/public"' in home and 'href="/root/pypi"' in home
    assert f"pip install --index-url {daemon.url}/root/public/+simple/" in home
    assert f"twine upload --repository-url {daemon.url}/root/public/ dist/*" in home

    project = browser.page(daemon.url + "/root/public/shown", "project")
    assert "<h1>Browser heading</h1>" in project
    assert "<script" not in project and "onerror" not in project
    assert re.search(r"<body[^>]*data-pwned", project) is None  # nothing ran
    assert 'href="javascript' not in project
    assert "A &lt;b&gt;shown&lt;/b&gt; package" in project
    assert built.sha256 in project and "1.2.0" in project

    index = browser.page(daemon.url + "/root/public", "index")
    assert 'href="/root/public/shown"' in index and 'href="/root/pypi"' in index

    status = browser.page(daemon.url + "/+status", "status")
    assert "Upstream" in status and "root/public" in status

    search = browser.page(daemon.url + "/+search?q=shown", "search")
    assert 'href="/root/public/shown"' in search
    assert "A &lt;b&gt;shown&lt;/b&gt; package" in search


def test_pages_break_no_content_security_policy(daemon: Daemon, browser: Browser) -> None:
    """The pages' CSP has no 'unsafe-inline', so nothing inline may be left for it to block."""
    for path in ("/", "/root/public", "/+status", "/+search?q=shown"):
        response = http_get(daemon.url + path, {"Accept": "text/html"})
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        messages = browser.console(daemon.url + path)
        assert not [m for m in messages if "Content Security Policy" in m], messages
    css = http_get(daemon.url + "/+static/wheelwell.css")
    assert css.status == 200 and b"--accent" in css.body
