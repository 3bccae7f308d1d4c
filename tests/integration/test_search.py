"""`/+search` and XML-RPC `search` in-process: uploads, fetched mirror pages, ranking, safety."""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.dists import build_wheel
from tests.integration.conftest import Mirror
from tests.integration.test_api import ROOT, upload
from tests.polling import eventually

XML = {"Content-Type": "text/xml"}
JSON = {"Accept": "application/json"}


async def search(mirror: Mirror, query: str, index: str | None = None) -> dict[str, Any]:
    params = {"q": query, **({"index": index} if index else {})}
    resp = await mirror.client.get("/+search", params=params, headers=JSON)
    assert resp.status == 200, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def eventually_found(mirror: Mirror, query: str, name: str) -> dict[str, Any]:
    """Mirror names are written behind: wait a little for them."""

    async def found() -> dict[str, Any] | None:
        result = await search(mirror, query)
        return result if any(r["name"] == name for r in result["results"]) else None

    result: dict[str, Any] | None = await eventually(
        found, timeout=5, interval=0.02, message=f"{name} in the results for {query!r}"
    )
    assert result is not None
    return result


@pytest.fixture
async def populated(mirror: Mirror, tmp_path: Path) -> Mirror:
    """Three uploads to root/public and two projects fetched through the mirror."""
    uploads = [
        ("requests", "2.0", "Our patched requests", "Fixes the proxy handling."),
        ("requests-helpers", "0.3", "Helpers", "Small things for requests users."),
        ("requests-helpers", "0.4", "Helpers, newer", "Small things for requests users."),
        ("internal-tool", "1.0", "Deploys services", "Uses requests under the hood."),
    ]
    for name, version, summary, description in uploads:
        built = build_wheel(tmp_path, name, version, summary=summary, description=description)
        assert await upload(mirror, built) == 200
    for name in ("requests-oauthlib", "urllib3"):
        mirror.fake.add(build_wheel(tmp_path / "built", name, "1.5"))
        resp = await mirror.client.get(f"/root/pypi/+simple/{name}/")
        assert resp.status == 200
    await eventually_found(mirror, "urllib3", "urllib3")
    return mirror


async def test_json_results_rank_exact_prefix_then_text(populated: Mirror) -> None:
    found = await search(populated, "requests")
    assert found["query"] == "requests"
    assert found["index"] is None
    results = found["results"]
    assert results[0] == {
        "name": "requests",
        "index": "root/public",
        "kind": "private",
        "version": "2.0",
        "summary": "Our patched requests",
        "url": "/root/public/requests",
    }
    prefix = {(r["index"], r["name"]) for r in results[1:3]}
    assert prefix == {("root/public", "requests-helpers"), ("root/pypi", "requests-oauthlib")}
    assert results[3]["name"] == "internal-tool"  # found by its description
    helpers = next(r for r in results if r["name"] == "requests-helpers")
    assert (helpers["version"], helpers["summary"]) == ("0.4", "Helpers, newer")
    mirror_hit = next(r for r in results if r["name"] == "requests-oauthlib")
    assert mirror_hit["kind"] == "mirror"
    assert mirror_hit["version"] == "1.5"
    assert mirror_hit["url"] == "/root/pypi/requests-oauthlib"


async def test_scoped_to_an_index_and_its_bases(populated: Mirror) -> None:
    assert [r["name"] for r in (await search(populated, "urllib3", "root/public"))["results"]] == [
        "urllib3"
    ]
    mirror_only = await search(populated, "requests", "root/pypi")
    assert mirror_only["index"] == "root/pypi"
    assert {r["index"] for r in mirror_only["results"]} == {"root/pypi"}
    assert [r["name"] for r in mirror_only["results"]] == ["requests-oauthlib"]


async def test_browsers_get_the_ui_page(populated: Mirror) -> None:
    resp = await populated.client.get("/+search?q=requests", headers={"Accept": "text/html"})
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert "/root/public/requests-helpers" in await resp.text()


async def test_empty_query_and_unknown_index(mirror: Mirror) -> None:
    assert (await search(mirror, "  "))["results"] == []
    resp = await mirror.client.get("/+search", params={"q": "x", "index": "no/such"})
    assert resp.status == 404


async def test_a_deleted_release_leaves_the_results(populated: Mirror) -> None:
    resp = await populated.client.delete("/root/public/requests-helpers/0.4", headers=ROOT)
    assert resp.status in (200, 204), await resp.text()
    found = await search(populated, "helpers")
    assert [(r["name"], r["version"]) for r in found["results"]] == [("requests-helpers", "0.3")]


async def xmlrpc_call(mirror: Mirror, body: bytes | str, index: str = "root/public") -> Any:
    resp = await mirror.client.post(f"/{index}/", data=body, headers=XML)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/xml"
    return xmlrpc.client.loads(await resp.text())[0][0]


async def test_xmlrpc_search_as_pip_sends_it(populated: Mirror) -> None:
    spec = {"name": ["requests"], "summary": ["requests"]}
    hits = await xmlrpc_call(populated, xmlrpc.client.dumps((spec, "or"), "search"))
    assert hits[0] == {
        "name": "requests",
        "summary": "Our patched requests",
        "version": "2.0",
        "_pypi_ordering": 0,
    }
    assert {h["name"] for h in hits} == {"requests", "requests-helpers", "requests-oauthlib"}


async def test_xmlrpc_unknown_method_and_bad_params_are_faults(populated: Mirror) -> None:
    for body in (
        xmlrpc.client.dumps((), "list_packages"),
        xmlrpc.client.dumps(("requests",), "search"),
        xmlrpc.client.dumps(({"name": "x"}, "xor"), "search"),
    ):
        with pytest.raises(xmlrpc.client.Fault):
            await xmlrpc_call(populated, body)


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<methodCall><methodName>search</methodName><params><param><value><struct><member>
<name>name</name><value><string>&lol3;</string></value></member></struct></value></param>
</params></methodCall>"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY ext SYSTEM "file:///etc/passwd">]>
<methodCall><methodName>search</methodName><params><param><value><struct><member>
<name>name</name><value><string>&ext;</string></value></member></struct></value></param>
</params></methodCall>"""


@pytest.mark.parametrize("body", [BOMB, EXTERNAL, "<methodCall><unclosed>", "not xml", ""])
async def test_hostile_or_broken_xml_is_400(mirror: Mirror, body: str) -> None:
    resp = await mirror.client.post("/root/public/", data=body, headers=XML)
    assert resp.status == 400
    assert "root:" not in await resp.text()


async def test_xmlrpc_on_an_unknown_index_is_404(mirror: Mirror) -> None:
    body = xmlrpc.client.dumps(({"name": ["x"]}, "or"), "search")
    resp = await mirror.client.post("/no/such/", data=body, headers=XML)
    assert resp.status == 404
