"""Operations: offline mode (configured and automatic), cache size limits, metrics, status."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Dists
from tests.fakes.dists import Built, build_wheel
from tests.integration.conftest import ROOT_PASSWORD, MirrorFactory
from tests.polling import eventually


def file_url(filename: str, sha256: str) -> str:
    return f"/root/pypi/+f/{sha256}/{filename}"


async def test_offline_mode_serves_the_cache_and_503s_the_rest(
    mirror_factory: MirrorFactory, dists: Dists
) -> None:
    online = await mirror_factory()
    await (await online.client.get("/root/pypi/+simple/alpha/")).read()
    await (await online.client.get(file_url(dists.alpha.filename, dists.alpha.sha256))).read()
    await online.client.close()
    hits = len(online.fake.requests)
    offline = await mirror_factory(offline=True, page_ttl=0.0)
    page = await offline.client.get("/root/pypi/+simple/alpha/")
    assert page.status == 200
    resp = await offline.client.get(file_url(dists.alpha.filename, dists.alpha.sha256))
    assert hashlib.sha256(await resp.read()).hexdigest() == dists.alpha.sha256
    missing = await offline.client.get("/root/pypi/+simple/beta/")
    assert missing.status == 503
    assert "offline" in await missing.text()
    assert len(offline.fake.requests) == hits  # the upstream was never asked
    ready = await (await offline.client.get("/+ready")).json()
    assert ready["ready"] and not ready["upstream_available"]


async def test_repeated_failures_stop_asking_the_upstream(mirror_factory: MirrorFactory) -> None:
    mirror = await mirror_factory(failure_threshold=2, offline_retry=60.0)
    mirror.fake.fail_status = 503
    for _ in range(2):
        assert (await mirror.client.get("/root/pypi/+simple/alpha/")).status == 502
    probe = await mirror.client.get("/root/pypi/+simple/beta/")  # resting: one probe goes out
    assert probe.status == 502
    assert mirror.fake.hits("/simple/beta/") == 1
    started = asyncio.get_running_loop().time()
    resp = await mirror.client.get("/root/pypi/+simple/gamma/")
    assert resp.status == 503
    assert asyncio.get_running_loop().time() - started < 1.0
    assert mirror.fake.hits("/simple/gamma/") == 0
    metrics = await (await mirror.client.get("/+metrics")).text()
    assert "wheelwell_upstream_offline 1.0" in metrics
    status = await (await mirror.client.get("/+status")).json()
    assert status["upstream"]["available"] is False
    assert "503" in status["upstream"]["last_error"]


async def _upload_hosted(mirror_factory: MirrorFactory, tmp_path: Path) -> Built:
    """A 300 kB upload to root/public by a first app over the data dir (then closed)."""
    mirror = await mirror_factory()
    ours = build_wheel(tmp_path, "hosted", "1.0", payload_size=300_000)
    form = aiohttp.FormData()
    form.add_field("sha256_digest", ours.sha256)
    form.add_field("content", ours.path.read_bytes(), filename=ours.filename)
    auth = {"Authorization": aiohttp.encode_basic_auth("root", ROOT_PASSWORD)}
    assert (await mirror.client.post("/root/public/", data=form, headers=auth)).status == 200
    await mirror.client.close()
    return ours


async def test_max_size_evicts_least_recently_used_mirror_files(
    mirror_factory: MirrorFactory, dists: Dists, tmp_path: Path
) -> None:
    ours = await _upload_hosted(mirror_factory, tmp_path)
    small = await mirror_factory(max_size=1_000_000)  # the same data dir, now with a limit
    for built in (dists.beta1, dists.beta2, dists.bulky):
        resp = await small.client.get(file_url(built.filename, built.sha256))
        assert hashlib.sha256(await resp.read()).hexdigest() == built.sha256
    blobs = small.data_dir / "blobs"

    async def evicted() -> bool:
        return not (blobs / dists.beta1.sha256[:2] / dists.beta1.sha256).exists()

    await eventually(evicted, timeout=5, message=f"{dists.beta1.filename} evicted from {blobs}")
    stored = sum(p.stat().st_size for p in blobs.rglob("*") if p.is_file())
    assert stored <= 1_000_000
    assert (blobs / ours.sha256[:2] / ours.sha256).exists()  # hosted files are never evicted
    metrics = await (await small.client.get("/+metrics")).text()
    families = {f.name for f in text_string_to_metric_families(metrics)}
    assert {"wheelwell_cache_evictions", "wheelwell_blob_store_bytes"} <= families
    assert "process_resident_memory_bytes" in families
    again = await small.client.get(file_url(dists.beta1.filename, dists.beta1.sha256))
    assert hashlib.sha256(await again.read()).hexdigest() == dists.beta1.sha256  # re-fetched


async def test_keep_free_evicts_mirror_files_when_the_disk_runs_short(
    mirror_factory: MirrorFactory, dists: Dists, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No max_size: the disk's free space alone bounds the cache; uploaded files stay."""
    ours = await _upload_hosted(mirror_factory, tmp_path)
    # 50 MB more than the disk has free: this test's own files cannot make up for it
    keep_free = shutil.disk_usage(tmp_path).free + 50 * 1024**2
    short = await mirror_factory(keep_free=keep_free)
    status = await (await short.client.get("/+status")).json()
    assert status["cache"]["keep_free"] == keep_free
    for built in (dists.beta1, dists.bulky):
        resp = await short.client.get(file_url(built.filename, built.sha256))
        assert hashlib.sha256(await resp.read()).hexdigest() == built.sha256  # served all the same
    blobs = short.data_dir / "blobs"

    async def evictions() -> float:
        metrics = await (await short.client.get("/+metrics")).text()
        samples = {
            s.name: s.value for f in text_string_to_metric_families(metrics) for s in f.samples
        }
        return samples["wheelwell_cache_evictions_total"]

    async def evicted() -> bool:  # both files, once stored (a commit follows the last byte)
        return await evictions() >= 2

    await eventually(evicted, timeout=5, message=f"mirror files evicted from {blobs}")
    for built in (dists.beta1, dists.bulky):
        assert not (blobs / built.sha256[:2] / built.sha256).exists()
    assert (blobs / ours.sha256[:2] / ours.sha256).exists()  # hosted files are never evicted
    assert "cannot get under its bounds" in caplog.text  # once: the rest is not the cache's


def test_cache_cli_verify_quarantines_corrupt_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shard = data / "blobs" / ("ab")
    shard.mkdir(parents=True)
    good = b"good bytes"
    good_sha = hashlib.sha256(good).hexdigest()
    (data / "blobs" / good_sha[:2]).mkdir(exist_ok=True)
    (data / "blobs" / good_sha[:2] / good_sha).write_bytes(good)
    bad_sha = "ab" + "0" * 62
    (shard / bad_sha).write_bytes(b"these bytes do not hash to their name")
    cli = [sys.executable, "-m", "proxy", "cache"]
    env_free = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple/", "PATH": "/usr/bin:/bin"}
    stats = subprocess.run(
        [*cli, "stats", "--data-dir", str(data)], capture_output=True, text=True, env=env_free
    )
    assert stats.returncode == 0, stats.stderr
    assert '"files": 2' in stats.stdout
    verify = subprocess.run(
        [*cli, "verify", "--data-dir", str(data)], capture_output=True, text=True, env=env_free
    )
    assert verify.returncode == 1
    assert f"corrupt: {bad_sha}" in verify.stdout
    assert (data / "quarantine" / bad_sha).exists()
    assert not (shard / bad_sha).exists()
    assert (data / "blobs" / good_sha[:2] / good_sha).exists()
