"""Core metadata for mirror wheels whose upstream offers none: advertised, read with Range requests.

The fake upstream here plays Nexus/Artifactory: no `.metadata` files and no PEP 658 attributes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Dists
from tests.fakes.dists import Built, build_wheel
from tests.integration.conftest import Mirror, MirrorFactory
from tests.integration.test_api import ROOT
from tests.polling import eventually

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def file_url(built: Built, key: str | None = None) -> str:
    return f"/root/pypi/+f/{key or built.sha256}/{built.filename}"


def file_requests(mirror: Mirror, built: Built) -> list[tuple[str, str | None]]:
    """(method, Range) of every upstream request for the wheel itself."""
    path = f"/files/{built.filename}"
    return [(r.method, r.headers.get("Range")) for r in mirror.fake.requests if r.path == path]


async def page_json(mirror: Mirror, project: str) -> dict[str, Any]:
    resp = await mirror.client.get(f"/root/pypi/+simple/{project}/", headers=JSON)
    assert resp.status == 200
    data: dict[str, Any] = json.loads(await resp.read())
    return data


def entry(page: dict[str, Any], filename: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in page["files"] if f["filename"] == filename)
    return found


@pytest.fixture
async def plain(mirror_factory: MirrorFactory) -> Mirror:
    """A mirror of an upstream without PEP 658 metadata."""
    mirror = await mirror_factory()
    mirror.fake.offer_metadata = False
    return mirror


async def test_pages_advertise_metadata_the_upstream_lacks(plain: Mirror, dists: Dists) -> None:
    page = await page_json(plain, "beta")
    assert entry(page, dists.beta1.filename)["core-metadata"] is True  # PEP 714: hash unknown yet
    html = await (await plain.client.get("/root/pypi/+simple/beta/")).text()
    assert 'data-core-metadata="true"' in html
    assert 'data-dist-info-metadata="true"' in html
    gamma = await page_json(plain, "gamma")
    assert all(not f.get("core-metadata") for f in gamma["files"])  # sdists are not read


async def test_metadata_is_read_with_ranges_never_the_whole_wheel(
    plain: Mirror, dists: Dists
) -> None:
    await page_json(plain, "bulky")
    for _ in range(2):
        resp = await plain.client.get(file_url(dists.bulky) + ".metadata")
        assert resp.status == 200
        assert await resp.read() == dists.bulky.metadata
    requests = file_requests(plain, dists.bulky)
    assert requests == [("GET", "bytes=-65536")]  # the tail holds the directory and METADATA
    assert all(p.stat().st_size < 100_000 for p in plain.blob_files())  # no wheel was stored


async def test_the_hash_is_advertised_from_the_next_refresh(
    mirror_factory: MirrorFactory, dists: Dists
) -> None:
    """Not at once (a big page would be rendered again per hash): when the page is revalidated."""
    plain = await mirror_factory(page_ttl=0.0)
    plain.fake.offer_metadata = False
    await page_json(plain, "bulky")
    await (await plain.client.get(file_url(dists.bulky) + ".metadata")).read()
    page = await page_json(plain, "bulky")  # a 304 from upstream, the page rewritten with it
    assert entry(page, dists.bulky.filename)["core-metadata"] == {
        "sha256": dists.bulky.metadata_sha256
    }
    html = await (await plain.client.get("/root/pypi/+simple/bulky/")).text()
    assert f'data-core-metadata="sha256={dists.bulky.metadata_sha256}"' in html


async def test_metadata_far_from_the_directory_takes_one_more_range(
    plain: Mirror, tmp_path: Path
) -> None:
    built = build_wheel(
        tmp_path, "faraway", "1.0", payload_size=2 * 1024 * 1024, metadata_first=True
    )
    plain.fake.add(built)
    resp = await plain.client.get(file_url(built) + ".metadata")
    assert resp.status == 200
    assert await resp.read() == built.metadata
    requests = file_requests(plain, built)
    assert len(requests) == 2
    assert all(method == "GET" and rng is not None for method, rng in requests)


async def test_head_and_ranges_are_answered_from_what_was_read(plain: Mirror, dists: Dists) -> None:
    """uv's own fallback (HEAD, then Range reads of the tail) costs no upstream request now."""
    await (await plain.client.get(file_url(dists.bulky) + ".metadata")).read()
    before = len(file_requests(plain, dists.bulky))
    head = await plain.client.head(file_url(dists.bulky))
    assert head.status == 200
    assert int(head.headers["Content-Length"]) == dists.bulky.size
    assert head.headers["Accept-Ranges"] == "bytes"
    tail = await plain.client.get(file_url(dists.bulky), headers={"Range": "bytes=-1000"})
    assert tail.status == 206
    data = dists.bulky.path.read_bytes()
    assert await tail.read() == data[-1000:]
    size = dists.bulky.size
    assert tail.headers["Content-Range"] == f"bytes {size - 1000}-{size - 1}/{size}"
    assert len(file_requests(plain, dists.bulky)) == before
    # a small range not read before goes upstream once, then is answered here
    for _ in range(2):
        ranged = await plain.client.get(file_url(dists.bulky), headers={"Range": "bytes=100-199"})
        assert ranged.status == 206
        assert await ranged.read() == data[100:200]
    assert len(file_requests(plain, dists.bulky)) == before + 1


async def test_upstream_without_ranges_falls_back_to_the_download(
    plain: Mirror, dists: Dists
) -> None:
    """A 200 and a whole 5 MB wheel to a Range of its tail: that upstream does no ranges."""
    plain.fake.ranges = False
    await page_json(plain, "beta")
    resp = await plain.client.get(file_url(dists.bulky) + ".metadata")
    assert resp.status == 200
    assert await resp.read() == dists.bulky.metadata
    page = await page_json(plain, "beta")  # today's behaviour from now on: nothing advertised
    assert not entry(page, dists.beta2.filename).get("core-metadata")
    # the wheel that was downloaded for it is stored whole
    before = len(file_requests(plain, dists.bulky))
    again = await plain.client.get(file_url(dists.bulky))
    assert hashlib.sha256(await again.read()).hexdigest() == dists.bulky.sha256
    assert len(file_requests(plain, dists.bulky)) == before


async def test_small_wheels_need_no_ranges(plain: Mirror, dists: Dists) -> None:
    """Without ranges, a wheel under whole_wheel_below still costs one request, and is kept."""
    plain.fake.ranges = False
    resp = await plain.client.get(file_url(dists.beta1) + ".metadata")
    assert await resp.read() == dists.beta1.metadata
    again = await plain.client.get(file_url(dists.beta1))
    assert hashlib.sha256(await again.read()).hexdigest() == dists.beta1.sha256
    assert len(file_requests(plain, dists.beta1)) == 1
    page = await page_json(plain, "beta")
    assert entry(page, dists.beta2.filename)["core-metadata"] is True


async def test_generate_metadata_can_be_turned_off_per_mirror(plain: Mirror, dists: Dists) -> None:
    resp = await plain.client.patch("/root/pypi", json={"generate_metadata": False}, headers=ROOT)
    assert resp.status == 200, await resp.text()
    config = await (await plain.client.get("/root/pypi", headers=JSON)).json()
    assert config["result"]["generate_metadata"] is False
    page = await page_json(plain, "beta")
    assert not entry(page, dists.beta1.filename).get("core-metadata")
    bad = await plain.client.patch("/root/pypi", json={"generate_metadata": "no"}, headers=ROOT)
    assert bad.status == 400
    assert "generate_metadata" in await bad.text()
    await plain.client.patch("/root/pypi", json={"generate_metadata": True}, headers=ROOT)
    page = await page_json(plain, "beta")
    assert entry(page, dists.beta1.filename)["core-metadata"] is True


async def test_metadata_over_the_limit_is_refused(
    mirror_factory: MirrorFactory, tmp_path: Path
) -> None:
    """A METADATA that inflates past limits.max_metadata_size (a zip bomb) is not served."""
    mirror = await mirror_factory()
    mirror.fake.offer_metadata = False
    built = build_wheel(tmp_path, "bomb", "1.0", description="A" * (17 * 1024 * 1024))
    mirror.fake.add(built)
    resp = await mirror.client.get(file_url(built) + ".metadata")
    assert resp.status == 404
    assert "too large" in await resp.text()
    assert all(rng is not None for _, rng in file_requests(mirror, built))


async def test_a_later_download_corrects_metadata_that_differs(
    mirror_factory: MirrorFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The page gives no file hash, and the file changed between the Range reads and the
    download: the wheel's own METADATA replaces what was served."""
    plain = await mirror_factory(page_ttl=0.0)
    plain.fake.offer_metadata = False
    plain.fake.omit_hashes = True
    big = 2 * 1024 * 1024  # over whole_wheel_below: only its tail is read for the metadata
    first = build_wheel(tmp_path / "a", "shifty", "1.0", summary="first", payload_size=big)
    second = build_wheel(tmp_path / "b", "shifty", "1.0", summary="second", payload_size=big)
    hosted = plain.fake.add(first)
    page = await page_json(plain, "shifty")
    url = entry(page, first.filename)["url"]
    key = url.split("/+f/")[1].split("/")[0]
    resp = await plain.client.get(file_url(first, key) + ".metadata")
    assert await resp.read() == first.metadata
    shutil.copyfile(second.path, hosted.path)
    with caplog.at_level(logging.WARNING):
        whole = await plain.client.get(file_url(first, key))
        assert await whole.read() == second.path.read_bytes()

        async def corrected() -> bool:
            again = await plain.client.get(file_url(first, key) + ".metadata")
            return await again.read() == second.metadata

        await eventually(corrected, timeout=5, message="metadata replaced")
    assert "differs from the wheel's own" in caplog.text
    page = await page_json(plain, "shifty")
    assert entry(page, first.filename)["core-metadata"] == {
        "sha256": hashlib.sha256(second.metadata or b"").hexdigest()
    }


async def test_generated_metadata_survives_a_restart(
    mirror_factory: MirrorFactory, dists: Dists
) -> None:
    mirror = await mirror_factory()
    mirror.fake.offer_metadata = False
    await (await mirror.client.get(file_url(dists.beta1) + ".metadata")).read()
    await mirror.client.close()
    again = await mirror_factory()
    before = len(file_requests(again, dists.beta1))
    resp = await again.client.get(file_url(dists.beta1) + ".metadata")
    assert await resp.read() == dists.beta1.metadata
    assert len(file_requests(again, dists.beta1)) == before


async def test_a_small_wheel_read_for_its_metadata_is_stored_whole(
    plain: Mirror, dists: Dists
) -> None:
    """One upstream request gives pip its metadata and the wheel pip downloads next."""
    resp = await plain.client.get(file_url(dists.beta1) + ".metadata")
    assert await resp.read() == dists.beta1.metadata
    assert file_requests(plain, dists.beta1) == [("GET", "bytes=-1048576")]
    whole = await plain.client.get(file_url(dists.beta1))
    assert hashlib.sha256(await whole.read()).hexdigest() == dists.beta1.sha256
    assert len(file_requests(plain, dists.beta1)) == 1
    await (await plain.client.get(file_url(dists.bulky) + ".metadata")).read()
    metrics = await (await plain.client.get("/+metrics")).text()
    assert 'wheelwell_generated_metadata_total{how="whole"} 1.0' in metrics
    assert 'wheelwell_generated_metadata_total{how="range"} 1.0' in metrics


async def test_a_wheel_that_fails_its_hash_gives_no_metadata(plain: Mirror, dists: Dists) -> None:
    plain.fake.wrong_hash = True
    page = await page_json(plain, "beta")
    url = entry(page, dists.beta1.filename)["url"]
    resp = await plain.client.get(url.replace("../../..", "") + ".metadata")
    assert resp.status == 502
    assert "sha256 mismatch" in await resp.text()
    assert plain.blob_files() == []


async def test_a_range_covering_the_file_may_be_answered_200(plain: Mirror, dists: Dists) -> None:
    """Some servers answer a range that covers the whole file with 200: that is the file."""
    plain.fake.whole_as_200 = True
    resp = await plain.client.get(file_url(dists.beta1) + ".metadata")
    assert await resp.read() == dists.beta1.metadata
    page = await page_json(plain, "beta")
    assert entry(page, dists.beta2.filename)["core-metadata"] is True  # still generating
    assert len(file_requests(plain, dists.beta1)) == 1


async def test_a_refused_range_falls_back_to_the_download(plain: Mirror, dists: Dists) -> None:
    plain.fake.range_status = 416
    resp = await plain.client.get(file_url(dists.bulky) + ".metadata")
    assert resp.status == 200
    assert await resp.read() == dists.bulky.metadata
    assert ("GET", None) in file_requests(plain, dists.bulky)  # read out of the whole wheel


async def test_a_hostile_directory_size_is_not_read_into_memory(
    plain: Mirror, tmp_path: Path
) -> None:
    """A zip whose end record claims a 17 MB central directory: not one 17 MB range read, but
    the download to disk (which then finds it no wheel)."""
    path = tmp_path / "hostile-1.0-py3-none-any.whl"
    size = 18 * 1024 * 1024
    directory = 17 * 1024 * 1024
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, directory, size - 22 - directory, 0)
    path.write_bytes(b"\0" * (size - len(end)) + end)
    data = path.read_bytes()
    built = Built(path, "hostile", "1.0", hashlib.sha256(data).hexdigest(), len(data), None, b"x")
    plain.fake.add(built)
    resp = await plain.client.get(file_url(built) + ".metadata")
    assert resp.status in (404, 502)
    ranged = [rng for _, rng in file_requests(plain, built) if rng is not None]
    assert ranged == ["bytes=-65536"]  # the tail only; the claimed directory was not asked for
