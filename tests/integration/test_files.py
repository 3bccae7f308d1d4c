"""Files through the real app: streaming cache fill, single flight, Range/HEAD, hashes, metadata."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib

from proxy.web import keys
from tests.conftest import Dists
from tests.fakes.dists import Built
from tests.integration.conftest import Mirror, MirrorFactory
from tests.polling import eventually


async def downloads_finished(mirror: Mirror) -> None:
    """A failed download cleans up when it ends, which may be after the client saw the cut."""
    fetcher = mirror.client.app[keys.FETCHER]
    await eventually(lambda: fetcher.in_flight() == 0, timeout=5, message="downloads to end")


def file_url(built: Built, index: str = "root/pypi") -> str:
    return f"/{index}/+f/{built.sha256}/{built.filename}"


async def test_file_is_fetched_once_then_served_from_disk(mirror: Mirror, dists: Dists) -> None:
    for _ in range(2):
        resp = await mirror.client.get(file_url(dists.beta1))
        assert resp.status == 200
        assert hashlib.sha256(await resp.read()).hexdigest() == dists.beta1.sha256
        assert "immutable" in resp.headers["Cache-Control"]
        assert "Content-Encoding" not in resp.headers
    assert mirror.fake.hits(f"/files/{dists.beta1.filename}") == 1
    assert mirror.temp_files() == []


async def test_file_without_page_fetched_first(mirror: Mirror, dists: Dists) -> None:
    resp = await mirror.client.get(file_url(dists.alpha))
    assert resp.status == 200
    assert hashlib.sha256(await resp.read()).hexdigest() == dists.alpha.sha256


async def test_unknown_hash_for_known_filename_is_404(mirror: Mirror, dists: Dists) -> None:
    resp = await mirror.client.get(f"/root/pypi/+f/{'a' * 64}/{dists.alpha.filename}")
    assert resp.status == 404
    assert mirror.blob_files() == []


async def test_concurrent_cold_clients_share_one_download(mirror: Mirror, dists: Dists) -> None:
    mirror.fake.slow_chunk_delay = 0.005

    async def fetch() -> str:
        resp = await mirror.client.get(file_url(dists.bulky))
        assert resp.status == 200
        return hashlib.sha256(await resp.read()).hexdigest()

    digests = await asyncio.gather(*(fetch() for _ in range(8)))
    assert digests == [dists.bulky.sha256] * 8
    assert mirror.fake.hits(f"/files/{dists.bulky.filename}") == 1


async def test_client_receives_bytes_before_download_finishes(mirror: Mirror, dists: Dists) -> None:
    mirror.fake.slow_chunk_delay = 0.02  # ~80 chunks: the whole file takes over a second
    resp = await mirror.client.get(file_url(dists.bulky))
    first = await resp.content.read(64 * 1024)
    assert first
    assert mirror.blob_files() == []  # still streaming: nothing committed yet
    rest = await resp.read()
    assert hashlib.sha256(first + rest).hexdigest() == dists.bulky.sha256


async def test_hash_mismatch_is_not_stored_and_fails_the_client(
    mirror: Mirror, dists: Dists
) -> None:
    mirror.fake.wrong_hash = True
    wrong = f"/root/pypi/+f/{'0' * 64}/{dists.beta2.filename}"
    resp = await mirror.client.get(wrong)
    body = b""
    failed = False
    try:
        body = await resp.read()
    except Exception:  # noqa: BLE001 - the connection is dropped on purpose
        failed = True
    assert failed or len(body) < dists.beta2.size
    await downloads_finished(mirror)
    assert mirror.blob_files() == []
    assert mirror.temp_files() == []
    metrics = await (await mirror.client.get("/+metrics")).text()
    assert "wheelwell_hash_mismatches_total 1.0" in metrics


async def test_truncated_upstream_body_is_not_stored(mirror: Mirror, dists: Dists) -> None:
    mirror.fake.truncate_files = True
    resp = await mirror.client.get(file_url(dists.bulky))
    failed = False
    try:
        body = await resp.read()
        failed = len(body) < dists.bulky.size
    except Exception:  # noqa: BLE001 - the connection is dropped on purpose
        failed = True
    assert failed
    await downloads_finished(mirror)
    assert mirror.blob_files() == []


async def test_head_and_range_on_uncached_file_do_not_download_it(
    mirror: Mirror, dists: Dists
) -> None:
    head = await mirror.client.head(file_url(dists.bulky))
    assert head.status == 200
    assert int(head.headers["Content-Length"]) == dists.bulky.size
    ranged = await mirror.client.get(file_url(dists.bulky), headers={"Range": "bytes=1000-"})
    assert ranged.status == 206
    data = await ranged.read()
    assert data == dists.bulky.path.read_bytes()[1000:]
    recorded = [r for r in mirror.fake.requests if r.path == f"/files/{dists.bulky.filename}"]
    assert [r.headers.get("Range") for r in recorded if r.method == "GET"] == ["bytes=1000-"]
    assert mirror.blob_files() == []


async def test_range_and_head_on_cached_file(mirror: Mirror, dists: Dists) -> None:
    url = file_url(dists.beta1)
    full = await (await mirror.client.get(url)).read()
    ranged = await mirror.client.get(url, headers={"Range": "bytes=10-19"})
    assert ranged.status == 206
    assert await ranged.read() == full[10:20]
    head = await mirror.client.head(url)
    assert int(head.headers["Content-Length"]) == len(full)
    assert mirror.fake.hits(f"/files/{dists.beta1.filename}") == 1


async def test_core_metadata_is_served_with_its_advertised_hash(
    mirror: Mirror, dists: Dists
) -> None:
    for _ in range(2):
        resp = await mirror.client.get(file_url(dists.alpha) + ".metadata")
        assert resp.status == 200
        body = await resp.read()
        assert hashlib.sha256(body).hexdigest() == dists.alpha.metadata_sha256
    assert mirror.fake.hits(f"/files/{dists.alpha.filename}.metadata") == 1
    assert mirror.fake.hits(f"/files/{dists.alpha.filename}") == 0


async def test_cached_file_survives_dead_upstream_and_expired_page(
    mirror_factory: MirrorFactory, dists: Dists
) -> None:
    mirror = await mirror_factory(page_ttl=0.0)
    await (await mirror.client.get("/root/pypi/+simple/alpha/")).read()
    await (await mirror.client.get(file_url(dists.alpha))).read()
    await mirror.server.close()
    page = await mirror.client.get("/root/pypi/+simple/alpha/")
    assert page.status == 200
    resp = await mirror.client.get(file_url(dists.alpha))
    assert resp.status == 200
    assert hashlib.sha256(await resp.read()).hexdigest() == dists.alpha.sha256


async def test_restarted_app_serves_cached_file_without_upstream(
    mirror_factory: MirrorFactory, dists: Dists
) -> None:
    first = await mirror_factory()
    await (await first.client.get(file_url(dists.beta2))).read()
    await first.client.close()  # a graceful stop lets the cache fill finish
    await first.server.close()
    second = await mirror_factory()  # same data dir, empty memory
    resp = await second.client.get(file_url(dists.beta2))
    assert resp.status == 200
    assert hashlib.sha256(await resp.read()).hexdigest() == dists.beta2.sha256


async def test_file_without_upstream_hash_gets_a_stable_key(mirror: Mirror, dists: Dists) -> None:
    mirror.fake.omit_hashes = True
    body = await (await mirror.client.get("/root/pypi/+simple/beta/")).text()
    href = next(line for line in body.splitlines() if dists.beta1.filename in line)
    key = href.split("/+f/")[1].split("/")[0]
    assert len(key) == 41 and key.startswith("u")
    assert "#sha256" not in href
    resp = await mirror.client.get(f"/root/pypi/+f/{key}/{dists.beta1.filename}")
    assert hashlib.sha256(await resp.read()).hexdigest() == dists.beta1.sha256
    again = await mirror.client.get(f"/root/pypi/+f/{key}/{dists.beta1.filename}")
    assert again.status == 200
    assert mirror.fake.hits(f"/files/{dists.beta1.filename}") == 1


async def test_advertised_metadata_never_404s(mirror: Mirror, dists: Dists) -> None:
    """An upstream that advertises metadata it cannot serve: read it out of the wheel."""
    hosted = mirror.fake._files[dists.beta1.filename]
    broken = dataclasses.replace(hosted, built=dataclasses.replace(hosted.built, metadata=None))
    mirror.fake._files[dists.beta1.filename] = broken  # the page still advertises it
    resp = await mirror.client.get(file_url(dists.beta1) + ".metadata")
    assert resp.status == 200
    assert hashlib.sha256(await resp.read()).hexdigest() == dists.beta1.metadata_sha256
    assert mirror.fake.hits(f"/files/{dists.beta1.filename}.metadata") == 1


async def test_sdist_metadata_is_404(mirror: Mirror, dists: Dists) -> None:
    resp = await mirror.client.get(file_url(dists.gamma) + ".metadata")
    assert resp.status == 404
