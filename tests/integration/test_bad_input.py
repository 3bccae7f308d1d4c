"""Bad input and bad upstreams: a clear one-line 4xx/5xx, nothing written, the daemon healthy."""

from __future__ import annotations

import pytest
from yarl import URL

from tests.conftest import Dists
from tests.integration.conftest import Mirror, MirrorFactory


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/root/pypi/+simple/..%2F..%2Fetc%2Fpasswd/", 400),
        ("/root/pypi/+simple/%2e%2e/", 400),
        ("/root/pypi/+simple/" + "a" * 1000 + "/", 400),
        ("/root/pypi/+simple/-bad-/", 400),
        ("/root/pypi/+simple/b%00ad/", 400),
        ("/root/nope/+simple/alpha/", 404),
        ("/%2e%2e/pypi/+simple/alpha/", 400),
        ("/root/pypi/+f/" + "a" * 64 + "/..%2F..%2Fetc%2Fpasswd", 400),
        ("/root/pypi/+f/" + "a" * 64 + "/%2e%2e", 400),
        ("/root/pypi/+f/..%2F..%2F/alpha-1.0-py3-none-any.whl", 400),
        ("/root/pypi/+f/zz/alpha-1.0-py3-none-any.whl", 400),
        ("/root/pypi/+f/" + "a" * 64 + "/not-a-dist", 404),
    ],
)
async def test_bad_paths_get_clear_errors(mirror: Mirror, path: str, status: int) -> None:
    resp = await mirror.client.get(URL(path, encoded=True), allow_redirects=False)
    assert resp.status == status
    text = await resp.text()
    assert text.startswith(f"{status}: ")
    assert text.count("\n") == 1
    assert mirror.blob_files() == []
    assert (await mirror.client.get("/+health")).status == 200


async def test_errors_answer_json_when_asked(mirror: Mirror) -> None:
    resp = await mirror.client.get(
        "/root/nope/+simple/alpha/", headers={"Accept": "application/json"}
    )
    assert resp.status == 404
    doc = await resp.json()
    assert doc["error"] == "index 'root/nope' not found"
    assert doc["request_id"] == resp.headers["X-Request-Id"]


async def test_upstream_5xx_is_502_naming_the_upstream(mirror: Mirror) -> None:
    mirror.fake.fail_status = 500
    resp = await mirror.client.get("/root/pypi/+simple/alpha/")
    assert resp.status == 502
    text = await resp.text()
    assert "upstream" in text and "HTTP 500" in text
    assert (await mirror.client.get("/+health")).status == 200


async def test_hanging_upstream_is_504(mirror_factory: MirrorFactory) -> None:
    mirror = await mirror_factory(read_timeout=0.3)
    mirror.fake.hang = True
    resp = await mirror.client.get("/root/pypi/+simple/alpha/")
    assert resp.status == 504
    assert "timed out" in await resp.text()


async def test_dead_upstream_is_502(mirror: Mirror) -> None:
    await mirror.server.close()
    resp = await mirror.client.get("/root/pypi/+simple/alpha/")
    assert resp.status == 502
    assert "cannot connect" in await resp.text()
    assert (await mirror.client.get("/+health")).status == 200


async def test_retries_recover_from_a_transient_failure(
    mirror_factory: MirrorFactory, dists: Dists
) -> None:
    mirror = await mirror_factory(retries=2)
    mirror.fake.fail_status = 503
    resp = await mirror.client.get("/root/pypi/+simple/alpha/")
    assert resp.status == 502
    assert mirror.fake.hits("/simple/alpha/") == 3  # the first try and two retries


async def test_malformed_upstream_page_is_502(mirror: Mirror) -> None:
    mirror.fake.mode = "json"
    mirror.fake.projects["alpha"] = []
    original = mirror.fake._project_json

    def broken(*args: object) -> dict[str, object]:
        return {"files": "not a list"}

    mirror.fake._project_json = broken  # type: ignore[method-assign,assignment]
    try:
        resp = await mirror.client.get("/root/pypi/+simple/alpha/")
    finally:
        mirror.fake._project_json = original  # type: ignore[method-assign]
    assert resp.status == 502
    assert "files" in await resp.text()
