"""The root project list: streamed to a names file, revalidated, stale on error, merged, served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.fakes.dists import build_wheel
from tests.integration.conftest import Mirror, MirrorFactory
from tests.integration.test_api import upload

JSON = "application/vnd.pypi.simple.v1+json"
IDENTITY = {"Accept-Encoding": "identity"}
#: more names than one parse batch holds, so chunk boundaries fall inside names and tags
GENERATED = 30_000


def names_files(mirror: Mirror) -> list[Path]:
    return sorted((mirror.data_dir / "lists").rglob("names-*"))


async def listed(mirror: Mirror, index: str = "root/pypi", fmt: str = "html") -> list[str]:
    """The names a client reads on the index's root page, in order."""
    if fmt == "json":
        resp = await mirror.client.get(f"/{index}/+simple/", headers={"Accept": JSON})
        assert resp.status == 200
        assert resp.headers["Content-Type"] == JSON
        return [p["name"] for p in json.loads(await resp.read())["projects"]]
    resp = await mirror.client.get(f"/{index}/+simple/")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    text = await resp.text()
    names = []
    for line in text.splitlines():
        if "<a href=" in line:
            href = line.split('href="', 1)[1].split('"', 1)[0]
            name = line.split(">", 1)[1].split("<", 1)[0]
            assert href == f"{canonicalize_name(name)}/"
            names.append(name)
    return names


@pytest.mark.parametrize("mode", ["html", "json"])
async def test_the_list_is_streamed_to_a_names_file(mirror: Mirror, mode: str) -> None:
    mirror.fake.mode = mode  # type: ignore[assignment]
    mirror.fake.generated_names = GENERATED
    expected = mirror.fake.list_names()
    assert await listed(mirror) == expected
    assert await listed(mirror, fmt="json") == expected
    files = names_files(mirror)
    assert len(files) == 1
    assert files[0].read_text().splitlines() == expected
    assert mirror.fake.hits("/simple/") == 1
    assert not list((mirror.data_dir / "lists").rglob("*.tmp"))


async def test_a_stale_list_is_revalidated_with_a_conditional_get(
    mirror_factory: MirrorFactory,
) -> None:
    mirror = await mirror_factory(page_ttl=0.0)
    first = await listed(mirror)
    assert await listed(mirror) == first
    assert mirror.fake.hits("/simple/") == 2
    assert "If-None-Match" in mirror.fake.requests[-1].headers  # answered 304
    assert len(names_files(mirror)) == 1


async def test_a_stale_list_is_served_when_the_upstream_fails(
    mirror_factory: MirrorFactory,
) -> None:
    mirror = await mirror_factory(page_ttl=0.0)
    first = await listed(mirror)
    mirror.fake.fail_status = 500
    assert await listed(mirror) == first
    assert await listed(mirror, "root/public") == first


async def test_a_changed_list_replaces_the_names_file(mirror_factory: MirrorFactory) -> None:
    mirror = await mirror_factory(page_ttl=0.0)
    etag = (await mirror.client.get("/root/pypi/+simple/")).headers["ETag"]
    mirror.fake.generated_names = 3
    assert await listed(mirror) == mirror.fake.list_names()
    assert (await mirror.client.get("/root/pypi/+simple/")).headers["ETag"] != etag


async def test_the_merged_list_has_private_names_first_each_once(
    mirror: Mirror, tmp_path: Path
) -> None:
    mirror.fake.generated_names = 5
    before = await listed(mirror, "root/public")
    assert before == mirror.fake.list_names()
    etag = (await mirror.client.get("/root/public/+simple/")).headers["ETag"]
    assert await upload(mirror, build_wheel(tmp_path, "zeta", "1.0")) == 200
    assert await upload(mirror, build_wheel(tmp_path, "alpha", "9.0")) == 200
    assert await upload(mirror, build_wheel(tmp_path, "gen-1-pkg", "1.0")) == 200  # Gen_1.Pkg
    private = ["alpha", "gen-1-pkg", "zeta"]
    mirrored = [n for n in mirror.fake.list_names() if n not in ("alpha", "Gen_1.Pkg")]
    assert await listed(mirror, "root/public") == private + mirrored
    assert await listed(mirror, "root/public", "json") == private + mirrored
    assert (await mirror.client.get("/root/public/+simple/")).headers["ETag"] != etag
    assert await listed(mirror) == mirror.fake.list_names()  # the mirror's own list is as it was


@pytest.mark.parametrize("accept", ["text/html", JSON])
async def test_list_headers_gzip_and_etag(mirror: Mirror, accept: str) -> None:
    mirror.fake.generated_names = GENERATED
    plain = await mirror.client.get("/root/pypi/+simple/", headers={"Accept": accept, **IDENTITY})
    body = await plain.read()
    assert plain.headers["Vary"] == "Accept, Accept-Encoding"
    assert plain.headers["Cache-Control"] == "max-age=60, public"
    assert plain.headers["X-PyPI-Last-Serial"] == str(mirror.fake.serial)
    assert "Content-Encoding" not in plain.headers
    assert int(plain.headers["Content-Length"]) == len(body)
    zipped = await mirror.client.get(
        "/root/pypi/+simple/", headers={"Accept": accept, "Accept-Encoding": "gzip"}
    )
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert int(zipped.headers["Content-Length"]) < len(body) / 2
    assert await zipped.read() == body
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    for resp in (plain, zipped):
        again = await mirror.client.get(
            "/root/pypi/+simple/",
            headers={
                "Accept": accept,
                "Accept-Encoding": resp.headers.get("Content-Encoding", "identity"),
                "If-None-Match": resp.headers["ETag"],
            },
        )
        assert again.status == 304
        assert again.headers["ETag"] == resp.headers["ETag"]
        assert again.headers["Vary"] == "Accept, Accept-Encoding"


async def test_a_merged_list_has_no_serial(mirror: Mirror) -> None:
    resp = await mirror.client.get("/root/public/+simple/", headers=IDENTITY)
    body = await resp.read()
    assert "X-PyPI-Last-Serial" not in resp.headers  # a merged list has no one serial
    assert b'<a href="alpha/">alpha</a>' in body
