"""Background scrubber: re-hash every stored blob at a bounded rate and quarantine what fails.

Serving only checks sizes (cheap); a flipped bit keeps the size, so this pass finds it before a
client does. It runs on its own thread, reads at most `rate` bytes per second, checks between
chunks whether it should stop (shutdown never waits for a file), and keeps its place in
`<data_dir>/scrub.json` so a restart resumes the pass instead of starting it again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import threading
import time
from pathlib import Path

from proxy.metrics import Metrics
from proxy.storage.blobs import LocalBlobStore
from proxy.storage.eviction import protected_blobs

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
_SAVE_EVERY = 10.0  #: seconds between two writes of the progress file


class Scrubber:
    """One pass over the store every `interval` seconds, `rate` bytes per second at most."""

    def __init__(
        self,
        blobs: LocalBlobStore,
        db_path: Path,
        metrics: Metrics,
        *,
        rate: int,
        interval: float,
    ) -> None:
        self.blobs = blobs
        self.db_path = db_path
        self.metrics = metrics
        self.rate = rate
        self.interval = interval
        self.state_path = blobs.root / "scrub.json"
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="scrub")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="blob scrubber")

    async def close(self) -> None:
        """Stop between two chunks; the thread notices within one chunk's read."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._pool.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            try:
                await loop.run_in_executor(self._pool, self.run_pass)
            except Exception:  # a supervisor: a broken pass must not end scrubbing for good
                log.exception("scrub pass failed")
            await asyncio.sleep(self._pause())

    def _pause(self) -> float:
        state = self._load_state()
        finished = state.get("finished_at")
        if not isinstance(finished, int | float):
            return self.interval
        return max(0.0, finished + self.interval - time.time())

    def _load_state(self) -> dict[str, object]:
        return read_state(self.state_path)

    def _save_state(self, state: dict[str, object]) -> None:
        write_state(self.state_path, state)

    def run_pass(self) -> None:
        """One full pass in sha256 order, resumed after `cursor` (blocking)."""
        state = self._load_state()
        finished = isinstance(state.get("finished_at"), int | float)
        if state.get("cursor") is None and finished and self._pause() > 0:
            return  # a restart soon after a finished pass: wait for the next one
        cursor = state.get("cursor")
        after = cursor if isinstance(cursor, str) else ""
        saved = time.monotonic()
        checked = failed = 0
        for sha in sorted(s for s in list(self.blobs.entries) if s > after):
            if self._stop.is_set():
                return
            result = self._check(sha)
            if result is None:
                continue
            checked += 1
            if not result:
                failed += 1
                self._quarantine(sha, sha in protected_blobs(self.db_path))
            if time.monotonic() - saved > _SAVE_EVERY:
                self._save_state({"cursor": sha})
                saved = time.monotonic()
        self._save_state({"cursor": None, "finished_at": time.time()})
        self.metrics.scrub_passes.inc()
        log.info("scrub pass done: %d files checked, %d corrupt", checked, failed)

    def _check(self, sha: str) -> bool | None:
        """True when the bytes hash to their name; None when gone or when stopping."""
        digest = hashlib.sha256()
        started = time.monotonic()
        done = 0
        try:
            with self.blobs.path_for(sha).open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
                    done += len(chunk)
                    self.metrics.scrub_bytes.inc(len(chunk))
                    ahead = done / self.rate - (time.monotonic() - started)
                    if self._stop.wait(max(ahead, 0.0)):
                        return None
        except FileNotFoundError:  # evicted meanwhile
            return None
        self.metrics.scrub_files.inc()
        return digest.hexdigest() == sha

    def _quarantine(self, sha: str, hosted: bool) -> None:
        kind = "hosted" if hosted else "mirror"
        self.metrics.scrub_failures.labels(kind).inc()
        try:
            self.blobs.quarantine(sha)
        except OSError as exc:
            log.error("blob %s is corrupt and could not be quarantined: %s", sha, exc)
            return
        if hosted:
            log.error("uploaded blob %s is corrupt: moved to quarantine/", sha)
        else:
            log.warning("mirror blob %s is corrupt: quarantined, it is fetched again", sha)


def read_state(path: Path) -> dict[str, object]:
    """A pass's saved place; {} when there is none (or it cannot be read)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(path: Path, state: dict[str, object]) -> None:
    """Best effort: on a full disk the next start scrubs from the start again."""
    temp = path.with_suffix(".tmp")
    with contextlib.suppress(OSError):
        temp.write_text(json.dumps(state))
        temp.replace(path)
