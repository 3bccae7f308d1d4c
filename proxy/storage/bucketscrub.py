"""The bucket's half of `cache verify` and of the scrubber (`storage.backend: s3`).

The disk holds copies only; the bucket is what every server sharing it reads, so a flipped bit
there fails that file for all of them (each stream refuses it at its last chunk). These passes
re-hash every object and move a corrupt one to `{prefix}quarantine/`, where no read finds it:
a mirror file is then fetched again from upstream, a hosted one put back from this disk when
its copy here hashes right (else it is gone until restored from a backup). The daemon's pass
reads at most `scrub_rate` bytes per second and keeps its place in `scrub-s3.json`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from proxy.errors import ObjectStoreError
from proxy.metrics import Metrics
from proxy.storage.blobs import LocalFile
from proxy.storage.eviction import protected_blobs
from proxy.storage.s3 import S3BlobStore, file_sha256
from proxy.storage.scrubber import read_state, write_state

log = logging.getLogger(__name__)

_SAVE_EVERY = 10.0  #: seconds between two writes of the progress file


@dataclass(frozen=True, slots=True)
class Finding:
    """A corrupt object, moved aside."""

    sha256: str
    hosted: bool
    moved_to: str  #: s3://bucket/prefix/quarantine/sha
    restored: bool  #: put back from this disk's copy, which hashes right


@dataclass(slots=True)
class BucketCheck:
    """What `wheelwell cache verify` found in the bucket."""

    checked: int = 0
    bytes: int = 0
    corrupt: list[Finding] = field(default_factory=list)

    def lines(self, where: str) -> list[str]:
        lines = []
        for found in self.corrupt:
            again = "; put back from this disk" if found.restored else ""
            lines.append(f"corrupt: {found.sha256} (moved to {found.moved_to}{again})")
        lines.append(
            f"verified {self.checked} objects ({self.bytes} bytes) in {where}, "
            f"{len(self.corrupt)} corrupt"
        )
        return lines


async def settle(store: S3BlobStore, sha: str, hosted: bool) -> Finding:
    """Quarantine a corrupt object, then put this disk's copy back if it hashes right."""
    target = await store.quarantine(sha)
    loop = asyncio.get_running_loop()
    copy = await loop.run_in_executor(None, _verified_copy, store, sha)
    if copy is not None:
        await store.put(copy, hosted=hosted)
    return Finding(sha, hosted, f"s3://{store.cfg.bucket}/{target}", copy is not None)


def _verified_copy(store: S3BlobStore, sha: str) -> LocalFile | None:
    path = store.local.find(sha)
    try:
        if path is None or file_sha256(path) != sha:
            return None
        return LocalFile(path, path.stat().st_size)
    except FileNotFoundError:  # evicted meanwhile
        return None


async def verify_bucket(store: S3BlobStore, protected: set[str]) -> BucketCheck:
    """Re-hash every object at full speed; corrupt ones are settled (quarantined)."""
    done = BucketCheck()
    async for item in store.objects():
        digest = await store.digest(item.sha256)
        if digest is None:
            continue  # deleted meanwhile
        done.checked += 1
        done.bytes += item.size
        if digest != item.sha256:
            done.corrupt.append(await settle(store, item.sha256, item.sha256 in protected))
    return done


class BucketScrubber:
    """One pass over the bucket every `interval` seconds, `rate` bytes per second at most.

    Beside the disk's scrubber, not after it: one reads this disk, this one the network.
    """

    def __init__(
        self,
        store: S3BlobStore,
        db_path: Path,
        metrics: Metrics,
        *,
        rate: int,
        interval: float,
        state_path: Path,
    ) -> None:
        self.store = store
        self.db_path = db_path
        self.metrics = metrics
        self.rate = rate
        self.interval = interval
        self.state_path = state_path
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bucket scrubber")

    async def close(self) -> None:
        """Cancelled where it is (mid-object too): the saved cursor resumes it."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.run_pass()
            except ObjectStoreError as exc:
                log.warning("bucket scrub stopped, resumed in %.0f s: %s", self.interval, exc)
            except Exception:  # a supervisor: a broken pass must not end scrubbing for good
                log.exception("bucket scrub pass failed")
            await asyncio.sleep(await self._pause())

    async def _pause(self) -> float:
        finished = (await self._load_state()).get("finished_at")
        if not isinstance(finished, int | float):
            return self.interval
        return max(0.0, finished + self.interval - time.time())

    async def _load_state(self) -> dict[str, object]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, read_state, self.state_path)

    async def _save_state(self, state: dict[str, object]) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, write_state, self.state_path, state)

    async def run_pass(self) -> None:
        """One full pass in sha256 order, resumed after the saved cursor."""
        state = await self._load_state()
        cursor = state.get("cursor")
        finished = isinstance(state.get("finished_at"), int | float)
        if cursor is None and finished and await self._pause() > 0:
            return  # a restart soon after a finished pass: wait for the next one
        saved = time.monotonic()
        checked = failed = 0
        async for item in self.store.objects(after=cursor if isinstance(cursor, str) else ""):
            digest = await self.store.digest(item.sha256, self._pacer())
            if digest is not None:
                checked += 1
                self.metrics.scrub_files.inc()
                if digest != item.sha256:
                    failed += 1
                    await self._settle(item.sha256)
            if time.monotonic() - saved > _SAVE_EVERY:
                await self._save_state({"cursor": item.sha256})
                saved = time.monotonic()
        await self._save_state({"cursor": None, "finished_at": time.time()})
        self.metrics.scrub_passes.inc()
        log.info(
            "bucket scrub pass done: %d objects in %s checked, %d corrupt",
            checked,
            self.store.where,
            failed,
        )

    def _pacer(self) -> Callable[[int], Awaitable[None]]:
        """Sleeps after each chunk as long as the object's bytes are ahead of `rate`."""
        started = time.monotonic()
        done = 0

        async def pace(size: int) -> None:
            nonlocal done
            done += size
            self.metrics.scrub_bytes.inc(size)
            ahead = done / self.rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)

        return pace

    async def _settle(self, sha: str) -> None:
        loop = asyncio.get_running_loop()
        hosted = sha in await loop.run_in_executor(None, protected_blobs, self.db_path)
        try:
            found = await settle(self.store, sha, hosted)
        finally:  # counted once settled (or failing to be): a reader of the metric sees both
            self.metrics.scrub_failures.labels("hosted" if hosted else "mirror").inc()
        kind = "uploaded" if hosted else "mirror"
        if found.restored:
            log.warning("%s blob %s was corrupt in the bucket: put back from this disk", kind, sha)
        elif not hosted:
            log.warning(
                "mirror blob %s is corrupt: moved to %s, fetched again", sha, found.moved_to
            )
        else:
            log.error("uploaded blob %s is corrupt: moved to %s", sha, found.moved_to)
