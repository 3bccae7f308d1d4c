"""The scrubber: finds flipped bytes, resumes a pass after a restart, never holds up shutdown."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from proxy.metrics import Metrics
from proxy.storage.blobs import LocalBlobStore
from proxy.storage.scrubber import Scrubber
from tests.fakes.stores import open_local_blobs
from tests.polling import eventually


def _scrubber(blobs: LocalBlobStore, rate: int = 10**9, interval: float = 3600.0) -> Scrubber:
    return Scrubber(
        blobs, blobs.root / "wheelwell.sqlite3", Metrics(), rate=rate, interval=interval
    )


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _sample(scrubber: Scrubber, name: str, **labels: str) -> float:
    return scrubber.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_pass_quarantines_the_flipped_blob_only(tmp_path: Path) -> None:
    async with open_local_blobs(tmp_path) as blobs:
        good = await blobs.store_bytes(b"good" * 1000)
        bad = await blobs.store_bytes(b"bad" * 1000)
        _flip(bad.path)
        scrubber = _scrubber(blobs)
        await asyncio.get_running_loop().run_in_executor(None, scrubber.run_pass)
        assert good.path.exists()
        assert not bad.path.exists()
        assert (tmp_path / "quarantine" / bad.path.name).exists()
        assert bad.path.name not in blobs.entries
        assert _sample(scrubber, "wheelwell_scrub_failures_total", kind="mirror") == 1
        assert _sample(scrubber, "wheelwell_scrub_files_total") == 2
        assert json.loads(scrubber.state_path.read_text())["cursor"] is None


async def test_a_restart_resumes_after_the_saved_cursor(tmp_path: Path) -> None:
    async with open_local_blobs(tmp_path) as blobs:
        stored = [await blobs.store_bytes(bytes([i]) * 100) for i in range(4)]
        shas = sorted(s.path.name for s in stored)
        scrubber = _scrubber(blobs)
        scrubber.state_path.write_text(json.dumps({"cursor": shas[1]}))
        await asyncio.get_running_loop().run_in_executor(None, scrubber.run_pass)
        assert _sample(scrubber, "wheelwell_scrub_files_total") == 2  # shas[2] and shas[3]


async def test_a_finished_pass_is_not_repeated_within_the_interval(tmp_path: Path) -> None:
    async with open_local_blobs(tmp_path) as blobs:
        await blobs.store_bytes(b"x" * 100)
        scrubber = _scrubber(blobs)
        scrubber.state_path.write_text(json.dumps({"cursor": None, "finished_at": time.time()}))
        await asyncio.get_running_loop().run_in_executor(None, scrubber.run_pass)
        assert _sample(scrubber, "wheelwell_scrub_files_total") == 0


async def test_close_stops_a_slow_pass_between_chunks(tmp_path: Path) -> None:
    async with open_local_blobs(tmp_path) as blobs:
        await blobs.store_bytes(b"z" * (4 * 1024 * 1024))
        scrubber = _scrubber(blobs, rate=1024 * 1024)  # four seconds for the file
        scrubber.start()
        await eventually(
            lambda: _sample(scrubber, "wheelwell_scrub_bytes_total") > 0,
            timeout=5,
            message="the scrubber to start reading",
        )
        started = time.monotonic()
        await scrubber.close()
        assert time.monotonic() - started < 1.0
        assert _sample(scrubber, "wheelwell_scrub_files_total") == 0
