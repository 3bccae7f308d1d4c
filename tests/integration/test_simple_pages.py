"""Simple API pages served by the real app: negotiation, rewriting, caching, redirects, 304/gzip."""

from __future__ import annotations

import gzip
import html
import json
from pathlib import Path

import pytest

from proxy.web import keys
from tests.conftest import Dists
from tests.fakes.dists import build_wheel
from tests.fakes.index import Mode
from tests.integration.conftest import Mirror, MirrorFactory

JSON = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = f"{JSON}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"


@pytest.mark.parametrize("mode", ["json", "html"])
async def test_html_page_rewrites_urls_and_keeps_attributes(
    mirror: Mirror, dists: Dists, mode: str
) -> None:
    mirror.fake.mode = mode  # type: ignore[assignment]
    resp = await mirror.client.get("/root/pypi/+simple/alpha/", headers={"Accept": "text/html"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert resp.headers["Vary"] == "Accept, Accept-Encoding"
    body = await resp.text()
    alpha = dists.alpha
    href = f"../../../../root/pypi/+f/{alpha.sha256}/{alpha.filename}#sha256={alpha.sha256}"
    assert f'href="{href}"' in body
    assert 'data-requires-python="&gt;=3.8"' in body
    meta = f"sha256={alpha.metadata_sha256}"
    assert f'data-dist-info-metadata="{meta}"' in body
    assert f'data-core-metadata="{meta}"' in body
    assert "127.0.0.1" not in body  # nothing points at the upstream
    assert '<meta name="pypi:repository-version"' in body


async def test_json_page_has_pep700_fields_and_core_metadata_only(
    mirror: Mirror, dists: Dists
) -> None:
    resp = await mirror.client.get("/root/pypi/+simple/beta/", headers={"Accept": PIP_ACCEPT})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == JSON
    doc = json.loads(await resp.read())
    assert doc["meta"]["api-version"] == "1.1"
    assert doc["versions"] == ["1.0", "2.0", "3.0"]
    by_name = {f["filename"]: f for f in doc["files"]}
    yanked = by_name[dists.beta_yanked.filename]
    assert yanked["yanked"] == "broken build"
    beta1 = by_name[dists.beta1.filename]
    assert beta1["size"] == dists.beta1.size
    assert beta1["core-metadata"] == {"sha256": dists.beta1.metadata_sha256}
    assert "dist-info-metadata" not in beta1
    assert beta1["url"] == f"../../../../root/pypi/+f/{dists.beta1.sha256}/{dists.beta1.filename}"


async def test_yanked_without_reason_in_html(mirror: Mirror, dists: Dists) -> None:
    body = await (await mirror.client.get("/root/pypi/+simple/gamma/")).text()
    line = next(x for x in body.splitlines() if dists.gamma_yanked.filename in x)
    assert 'data-yanked=""' in line


async def test_default_index_under_simple(mirror: Mirror, dists: Dists) -> None:
    body = await (await mirror.client.get("/simple/alpha/")).text()
    assert f'href="../../root/pypi/+f/{dists.alpha.sha256}/{dists.alpha.filename}' in body


async def test_private_index_inherits_mirror(mirror: Mirror, dists: Dists) -> None:
    resp = await mirror.client.get("/root/public/+simple/alpha/")
    assert resp.status == 200
    assert f"root/pypi/+f/{dists.alpha.sha256}/" in await resp.text()


@pytest.mark.parametrize(
    ("accept", "fmt", "expected"),
    [
        (None, None, "text/html"),
        ("*/*", None, "text/html"),
        (PIP_ACCEPT, None, JSON),
        ("application/vnd.pypi.simple.v1+html", None, "application/vnd.pypi.simple.v1+html"),
        ("text/html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.9", None, JSON),
        ("text/html;q=0.5, application/*;q=0.9", None, "application/vnd.pypi.simple.v1+html"),
        ("text/html", "json", JSON),
        (JSON, "html", "application/vnd.pypi.simple.v1+html"),
    ],
)
async def test_negotiation(
    mirror: Mirror, accept: str | None, fmt: str | None, expected: str
) -> None:
    headers = {"Accept": accept} if accept else {}
    params = {"format": fmt} if fmt else {}
    resp = await mirror.client.get("/root/pypi/+simple/beta/", headers=headers, params=params)
    assert resp.status == 200
    assert resp.headers["Content-Type"].split(";")[0] == expected


async def test_nothing_acceptable_is_406(mirror: Mirror) -> None:
    resp = await mirror.client.get("/root/pypi/+simple/beta/", headers={"Accept": "image/png"})
    assert resp.status == 406
    assert "acceptable" in await resp.text()


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/root/pypi/+simple/Alpha/", "/root/pypi/+simple/alpha/"),
        ("/root/pypi/+simple/alpha", "/root/pypi/+simple/alpha/"),
        ("/simple/Zope.Interface/", "/simple/zope-interface/"),
        ("/root/pypi/+simple", "/root/pypi/+simple/"),
    ],
)
async def test_unnormalized_names_redirect(mirror: Mirror, path: str, location: str) -> None:
    resp = await mirror.client.get(path, allow_redirects=False)
    assert resp.status == 301
    assert resp.headers["Location"] == location


async def test_page_is_fetched_once_and_revalidated_with_etag(
    mirror_factory: MirrorFactory,
) -> None:
    mirror = await mirror_factory(page_ttl=0.0)
    for _ in range(3):
        assert (await mirror.client.get("/root/pypi/+simple/alpha/")).status == 200
    page_requests = [r for r in mirror.fake.requests if r.path == "/simple/alpha/"]
    assert len(page_requests) == 3
    assert "If-None-Match" not in page_requests[0].headers
    assert page_requests[1].headers["If-None-Match"].startswith('"')


async def test_fresh_page_served_from_cache(mirror: Mirror) -> None:
    for _ in range(3):
        assert (await mirror.client.get("/root/pypi/+simple/alpha/")).status == 200
    assert mirror.fake.hits("/simple/alpha/") == 1


async def test_etag_304_and_gzip(mirror: Mirror, tmp_path: Path) -> None:
    for n in range(40):  # a page big enough to be worth compressing
        mirror.fake.add(build_wheel(tmp_path / "many", "many", f"1.{n}"))
    url = "/root/pypi/+simple/many/"
    first = await mirror.client.get(url, headers={"Accept-Encoding": "identity"})
    etag = first.headers["ETag"]
    assert "Content-Encoding" not in first.headers
    again = await mirror.client.get(
        url, headers={"If-None-Match": etag, "Accept-Encoding": "identity"}
    )
    assert again.status == 304
    zipped = await mirror.client.get(
        url, headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await zipped.read()) == await first.read()


async def test_upstream_404_is_404_and_remembered(mirror: Mirror) -> None:
    for _ in range(2):
        resp = await mirror.client.get("/root/pypi/+simple/nothere/")
        assert resp.status == 404
        assert "nothere" in await resp.text()
    assert mirror.fake.hits("/simple/nothere/") == 1


async def test_stale_page_served_when_upstream_fails(mirror_factory: MirrorFactory) -> None:
    mirror = await mirror_factory(page_ttl=0.0)
    fresh = await (await mirror.client.get("/root/pypi/+simple/alpha/")).text()
    mirror.fake.fail_status = 503
    resp = await mirror.client.get("/root/pypi/+simple/alpha/")
    assert resp.status == 200
    assert await resp.text() == fresh
    metrics = await (await mirror.client.get("/+metrics")).text()
    assert 'wheelwell_page_cache_total{outcome="stale"} 1.0' in metrics


async def test_lower_upstream_serial_is_not_stored(
    mirror_factory: MirrorFactory, dists: Dists
) -> None:
    mirror = await mirror_factory(page_ttl=0.0)
    before = await (await mirror.client.get("/root/pypi/+simple/alpha/")).text()
    mirror.fake.serial -= 5
    mirror.fake.projects["alpha"] = mirror.fake.projects["alpha"][:1]  # a rolled-back page
    after = await (await mirror.client.get("/root/pypi/+simple/alpha/")).text()
    assert after == before
    assert dists.alpha_future.filename in after


async def test_project_list(mirror: Mirror) -> None:
    resp = await mirror.client.get("/root/pypi/+simple/", headers={"Accept": JSON})
    names = [p["name"] for p in json.loads(await resp.read())["projects"]]
    assert {"alpha", "beta", "gamma"} <= set(names)
    body = await (await mirror.client.get("/simple/")).text()
    assert f'<a href="alpha/">{html.escape("alpha")}</a>' in body


@pytest.mark.parametrize("mode", ["html", "json"])
async def test_pages_on_disk_survive_a_restart_as_sent_and_revalidated(
    mode: Mode, mirror_factory: MirrorFactory, dists: Dists
) -> None:
    """The disk keeps the upstream's body as sent (no render), or our JSON after a 304."""
    for revalidate in (False, True):
        mirror = await mirror_factory(page_ttl=0.0)
        mirror.fake.mode = mode
        mirror.fake.fail_status = None
        fresh = await (await mirror.client.get("/root/pypi/+simple/alpha/")).text()
        if revalidate:
            await (await mirror.client.get("/root/pypi/+simple/alpha/")).read()  # a 304
        await mirror.client.close()
        again = await mirror_factory(page_ttl=0.0)
        again.fake.fail_status = 503  # served from disk only
        resp = await again.client.get("/root/pypi/+simple/alpha/")
        assert resp.status == 200
        assert await resp.text() == fresh
        assert dists.alpha.filename in fresh
        await again.client.close()


async def test_pages_in_memory_are_bounded_by_their_files(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the budget, the least recently used pages are dropped and read from disk again."""
    from proxy.indexes import registry
    from proxy.mirror import index

    monkeypatch.setattr(index, "_MEMORY_FILES", 4)
    monkeypatch.setattr(registry, "_RENDER_CACHE_BYTES", 1)
    first = {}
    for project in ("alpha", "beta", "gamma", "bulky"):
        first[project] = await (await mirror.client.get(f"/root/pypi/+simple/{project}/")).text()
    mirror_index = mirror.client.app[keys.INDEXES].get("root/pypi")
    assert isinstance(mirror_index, index.MirrorIndex)
    assert mirror_index._memory_files <= 4 or len(mirror_index._memory) == 1
    for project, text in first.items():
        assert await (await mirror.client.get(f"/root/pypi/+simple/{project}/")).text() == text
    assert mirror.fake.hits("/simple/alpha/") == 1  # from the disk cache, not upstream again
