"""The replica's side: follow the primary's changelog and replay it, entry by entry.

Each entry is applied by `Database.replay`, the same `apply` the primary committed it with, and
its serial lands in the changelog in the same transaction: a replica killed at any instant
restarts at the last entry it applied, consistent, and asks for the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp

from proxy.cluster.protocol import (
    REPLICA_ID_HEADER,
    REPLICA_URL_HEADER,
    SECRET_HEADER,
    SERIAL_HEADER,
    Heartbeat,
    decode_line,
    identity_from,
)
from proxy.cluster.snapshots import fetch_snapshot
from proxy.config import ReplicationConfig
from proxy.errors import WheelwellError
from proxy.metrics import Metrics
from proxy.model import mask_url
from proxy.storage import identity
from proxy.storage.db import ChangelogEntry, Database

log = logging.getLogger(__name__)

#: a reconnect waits this long after a failure, doubling up to the maximum
RETRY_FIRST = 0.2
RETRY_MAX = 5.0
#: heartbeats missed before the link counts as dead
MISSED_HEARTBEATS = 3
#: longest line accepted (a changelog entry of a huge wheelhouse scan stays far below)
MAX_LINE = 64 * 1024**2


@dataclass(slots=True)
class PrimaryState:
    """What this replica knows of its primary, for /+status and the metrics."""

    url: str
    serial: int = 0  #: the primary's latest serial, from its headers and heartbeats
    last_contact: float | None = None  #: wall-clock time of the last line or connect
    behind_since: float | None = None  #: when this replica last fell behind (None: caught up)
    streaming: bool = False
    last_error: str | None = None
    last_error_at: float | None = None


class Follower:
    """Streams the primary's changelog into the local database; reconnects for ever."""

    def __init__(
        self,
        db: Database,
        session: aiohttp.ClientSession,
        cfg: ReplicationConfig,
        metrics: Metrics,
    ) -> None:
        self.db = db
        self.session = session
        self.cfg = cfg
        self.metrics = metrics
        self.state = PrimaryState(url=cfg.primary_url.rstrip("/"))
        self.caught_up = asyncio.Event()  #: set once the first catch-up is done (readiness)
        self._task: asyncio.Task[None] | None = None
        metrics.replication_lag_serials.set_function(lambda: self.lag_serials)
        metrics.replication_lag_seconds.set_function(lambda: self.lag_seconds)
        metrics.replication_last_contact.set_function(self._since_contact)

    @property
    def lag_serials(self) -> int:
        return max(0, self.state.serial - self.db.serial)

    @property
    def lag_seconds(self) -> float:
        behind = self.state.behind_since
        return 0.0 if behind is None else max(0.0, time.time() - behind)

    def _since_contact(self) -> float:
        last = self.state.last_contact
        return -1.0 if last is None else max(0.0, time.time() - last)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="replication follower")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            try:
                await self._follow()
                delay = RETRY_FIRST  # the primary ended the stream (it is stopping): reconnect
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, OSError, WheelwellError) as exc:
                self._failed(exc)
            except Exception as exc:  # the follower must outlive any one bad entry
                log.exception("replication: unexpected error; following again")
                self._failed(exc)
            self.state.streaming = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _failed(self, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        if message != self.state.last_error:
            log.warning("replication from %s: %s", mask_url(self.state.url), message)
        self.state.last_error = message
        self.state.last_error_at = time.time()

    async def _follow(self) -> None:
        headers = {
            SECRET_HEADER: self.cfg.secret,
            REPLICA_ID_HEADER: self.cfg.replica_id,
            REPLICA_URL_HEADER: self.cfg.outside_url,
        }
        url = f"{self.state.url}/+replication/changes"
        timeout = aiohttp.ClientTimeout(
            total=None, connect=10, sock_read=self.cfg.heartbeat * MISSED_HEARTBEATS
        )
        params = {"since": str(self.db.serial)}
        async with self.session.get(url, params=params, headers=headers, timeout=timeout) as resp:
            if resp.status == 410:  # what it needs was compacted: start from a snapshot
                await resp.read()
                await self._bootstrap()
                return
            if resp.status != 200:
                text = (await resp.content.read(300)).decode(errors="replace").strip()
                raise WheelwellError(f"primary answered {resp.status}: {text}")
            primary_serial = int(resp.headers.get(SERIAL_HEADER, "0") or 0)
            if not await self._same_history(identity_from(resp.headers), primary_serial):
                resp.close()
                await self._bootstrap(replace=True)
                return
            self._contact(primary_serial)
            self.state.streaming = True
            if self.state.last_error is not None:
                log.info("replication from %s: streaming again", mask_url(self.state.url))
                self.state.last_error = None
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                if not line.endswith(b"\n"):
                    raise WheelwellError("stream ended inside a line")
                item = decode_line(line)
                if isinstance(item, Heartbeat):
                    self._contact(item.serial)
                else:
                    await self._apply(item)

    async def _same_history(self, primary: identity.Identity | None, serial: int) -> bool:
        """False where replaying would mix two histories (storage/identity.py); else adopt it."""
        if primary is None:  # a primary older than identities
            return True
        reason = identity.diverges(self.db.identity, self.db.serial, primary, serial)
        if reason is not None:
            log.warning("replication: %s; starting from the primary's snapshot instead", reason)
            return False
        if self.db.identity != primary:
            await self.db.adopt(primary)
        return True

    async def _bootstrap(self, *, replace: bool = False) -> None:
        """Replace the local state by the primary's newest snapshot, then follow from there.

        `replace`: the local state is not the primary's history, so an older snapshot is fine.
        """
        before = self.db.serial
        directory = self.db.path.parent / "snapshots"
        directory.mkdir(mode=0o700, exist_ok=True)
        for stale in directory.glob("*.part"):  # a download a crash interrupted
            stale.unlink(missing_ok=True)
        path, serial = await fetch_snapshot(
            self.session, self.state.url, self.cfg.secret, directory
        )
        if serial < before and not replace:
            path.unlink(missing_ok=True)
            raise WheelwellError(f"the primary's snapshot (serial {serial}) is older than {before}")
        await self.db.restore(path)
        log.info(
            "replication: started from the primary's snapshot at serial %d (was at %d)",
            serial,
            before,
        )
        self._contact(serial)

    def expect(self, serial: int) -> None:
        """A relayed write told us the primary is at `serial` (before its stream did)."""
        self.state.serial = max(self.state.serial, serial)
        self._check_caught_up()

    def _contact(self, primary_serial: int) -> None:
        state = self.state
        state.last_contact = time.time()
        state.serial = max(state.serial, primary_serial)
        self._check_caught_up()

    def _check_caught_up(self) -> None:
        state = self.state
        if self.db.serial >= state.serial:
            state.behind_since = None
            if not self.caught_up.is_set():
                log.info("replication: caught up with the primary at serial %d", self.db.serial)
                self.caught_up.set()
        elif state.behind_since is None:
            state.behind_since = time.time()

    async def _apply(self, entry: ChangelogEntry) -> None:
        if entry.serial <= self.db.serial:
            return  # already applied (a reconnect's overlap)
        if entry.serial != self.db.serial + 1:
            raise WheelwellError(
                f"the primary sent serial {entry.serial} after {self.db.serial}: a gap"
            )
        await self.db.replay(entry)  # its listeners (the index registry, the file copier) run
        self.state.last_contact = time.time()
        self.state.serial = max(self.state.serial, entry.serial)
        self._check_caught_up()
