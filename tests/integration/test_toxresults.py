"""Tox reports posted to file URLs through the real app: who may, what is refused, where shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fakes.dists import build_wheel
from tests.integration.conftest import Mirror
from tests.integration.test_api import upload
from tests.integration.test_devpi_api import AGENT
from tests.integration.test_permissions import PW, ROOT, basic

PASSING = {
    "host": "ci-1",
    "platform": "linux",
    "toxversion": "4.20",
    "testenvs": {
        "py": {
            "python": {"version": "3.12.1 (main)"},
            "result": {"success": True, "duration": 1.5},
            "test": [{"command": ["pytest"], "retcode": 0, "output": "3 passed"}],
        }
    },
}


async def _file(m: Mirror, tmp: Path, version: str = "1.0") -> str:
    built = build_wheel(tmp / version, "tested", version)
    assert await upload(m, built) == 200
    return f"/root/public/+f/{built.sha256}/{built.filename}"


async def _json(m: Mirror, path: str, **kw: Any) -> Any:
    resp = await m.client.get(path, **kw)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_posted_report_is_listed_everywhere(mirror: Mirror, tmp_path: Path) -> None:
    url = await _file(mirror, tmp_path)
    resp = await mirror.client.post(url, json=PASSING)  # anyone, as on devpi
    assert resp.status == 200, await resp.text()
    posted = await resp.json()
    assert posted["type"] == "toxresultpath" and posted["result"] == f"{url}/+toxresults/0"
    failing = {"testenvs": {"py": {"test": [{"command": ["pytest"], "retcode": 1}]}}}
    assert (await mirror.client.post(url, json=failing, headers=ROOT)).status == 200

    release = await _json(mirror, "/root/public/tested/1.0")
    (file,) = release["files"]
    first, second = file["toxresults"]
    assert (first["n"], first["passed"], first["poster"]) == (0, True, None)
    assert first["envs"] == [
        {"name": "py", "status": "passed", "duration": 1.5, "python": "3.12.1",
         "failed_command": None, "log_tail": "3 passed"}
    ]  # fmt: skip
    assert (second["passed"], second["poster"]) == (False, "root")
    assert await _json(mirror, first["url"]) == PASSING
    project = await _json(mirror, "/root/public/tested")
    assert project["releases"]["1.0"][0]["toxresults"] == file["toxresults"]

    devpi = (await _json(mirror, "/root/public/tested/", headers=AGENT))["result"]["1.0"]
    links = [link for link in devpi["+links"] if link["rel"] == "toxresult"]
    (release_link,) = [link for link in devpi["+links"] if link["rel"] == "releasefile"]
    assert [link["for_href"] for link in links] == [release_link["href"]] * 2
    assert links[0]["href"].endswith(f"{url}/+toxresults/0")


async def test_refusals_name_the_problem(mirror: Mirror, tmp_path: Path) -> None:
    url = await _file(mirror, tmp_path)
    c = mirror.client
    not_json = await c.post(url, data=b"{oops", headers={"Content-Type": "application/json"})
    assert not_json.status == 400
    not_tox = await c.post(url, json={"envs": []})
    assert not_tox.status == 400 and "testenvs" in await not_tox.text()
    empty = await c.post(url)
    assert empty.status == 400
    other = url.replace("tested-1.0", "tested-9.0")
    assert (await c.post(other, json=PASSING)).status == 404
    wrong_hash = "/root/public/+f/" + "0" * 64 + "/" + url.rsplit("/", 1)[1]
    assert (await c.post(wrong_hash, json=PASSING)).status == 404
    mirror_file = "/root/pypi/+f/" + "0" * 64 + "/tested-1.0-py3-none-any.whl"
    assert (await c.post(mirror_file, json=PASSING, headers=ROOT)).status in (400, 404)
    assert (await c.get(f"{url}/+toxresults/0")).status == 404
    assert (await c.get(f"{url}/+toxresults/x")).status in (400, 404)
    assert (await c.get("/root/public/tested/9.9")).status == 404


async def test_acl_toxresult_upload_says_who_may(mirror: Mirror, tmp_path: Path) -> None:
    c = mirror.client
    index = await _json(mirror, "/root/public")
    assert index["result"]["acl_toxresult_upload"] == [":ANONYMOUS:"]
    assert (await c.put("/carol", json={"password": PW["carol"]}, headers=ROOT)).status == 201
    body = {"acl_toxresult_upload": [":AUTHENTICATED:"]}
    assert (await c.patch("/root/public", json=body, headers=ROOT)).status == 200
    url = await _file(mirror, tmp_path)
    assert (await c.post(url, json=PASSING)).status == 401
    carol = basic("carol", PW["carol"])
    assert (await c.post(url, json=PASSING, headers=carol)).status == 200
    body = {"acl_toxresult_upload": ["root"]}
    assert (await c.patch("/root/public", json=body, headers=ROOT)).status == 200
    assert (await c.post(url, json=PASSING, headers=carol)).status == 403
    assert (await c.post(url, json=PASSING, headers=ROOT)).status == 200
    bad = {"acl_toxresult_upload": ["not a name!"]}
    refused = await c.patch("/root/public", json=bad, headers=ROOT)
    assert refused.status == 400 and "acl_toxresult_upload" in await refused.text()


async def test_results_go_with_their_release(mirror: Mirror, tmp_path: Path) -> None:
    url = await _file(mirror, tmp_path)
    assert (await mirror.client.post(url, json=PASSING)).status == 200
    assert (await mirror.client.delete("/root/public/tested/1.0", headers=ROOT)).status == 200
    url = await _file(mirror, tmp_path)  # the same bytes again: a new release, no results
    assert (await _json(mirror, "/root/public/tested/1.0"))["files"][0]["toxresults"] == []
