"""A mirror's root project list: fetched streaming, parsed off the loop, kept as a file on disk.

An upstream's list can hold 700,000 names (~49 MB of HTML); as Python strings that is hundreds of
megabytes and seconds of a stalled loop. Here the body goes through `ListScanner` in batches on
the default executor into `names-<token>` (one name a line, temp + fsync + rename), and
`state.json` (written the same way, after it) is the commit: a crash leaves the old list whole.
Only that small state stays in memory; TTL, 304 revalidation, stale-if-error and offline
behaviour are those of project pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from proxy.config import UpstreamConfig
from proxy.errors import StorageError, UpstreamError, UpstreamStatusError
from proxy.metrics import Metrics
from proxy.mirror.upstream import PageHead, UpstreamClient
from proxy.model import IndexName, NameList, mask_url
from proxy.simple_api import ListScanner
from proxy.tasks import SingleFlight

log = logging.getLogger(__name__)

#: body bytes handed to the parser thread at once: big enough to make the hop cheap, small
#: enough that one batch holds the GIL for a few milliseconds only
BATCH_BYTES = 256 * 1024
#: a replaced names file stays this long for readers that were handed it just before
GRACE_SECONDS = 120.0
_STATE = "state.json"
_PREFIX = "names-"
_TEMP_SUFFIX = ".tmp"


@dataclass(frozen=True, slots=True)
class ListState:
    """What is known of the upstream's list: when fetched, its validators, which names file."""

    fetched_at: float
    status: int = 200  #: 200, or 404 (the upstream has no list: an empty one is served)
    etag: str | None = None
    last_modified: str | None = None
    serial: int | None = None
    file: str = ""  #: the names file in the directory; "" for a 404
    count: int = 0


@dataclass(frozen=True, slots=True)
class _Written:
    path: Path
    count: int
    serial: int | None  #: the JSON page's meta._last-serial


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _storage_error(directory: Path, exc: OSError) -> StorageError:
    where = f"lists/mirrors/{directory.parent.name}/{directory.name}"
    return StorageError(f"cannot write the root list under {where}: {exc.strerror}")


class _NamesWriter:
    """The parse-and-write half of a fetch (blocking: every method runs on a worker thread)."""

    def __init__(self, directory: Path, base_url: str, *, is_json: bool) -> None:
        self.directory = directory
        self.scanner = ListScanner(base_url, is_json=is_json)
        self.count = 0
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=_PREFIX, suffix=_TEMP_SUFFIX, dir=directory)
        except OSError as exc:
            raise _storage_error(directory, exc) from exc
        self.temp = Path(temp)
        self.file = os.fdopen(fd, "wb", buffering=1024 * 1024)

    def _write(self, names: list[str]) -> None:
        if not names:
            return
        try:
            self.file.write(("\n".join(names) + "\n").encode())
        except OSError as exc:
            raise _storage_error(self.directory, exc) from exc
        self.count += len(names)

    def feed(self, data: bytes) -> None:
        self._write(self.scanner.feed(data))

    def finish(self, data: bytes) -> _Written:
        """Parse the rest, then fsync and rename: the file is whole or it is not there."""
        self._write(self.scanner.feed(data))
        self._write(self.scanner.close())
        final = self.directory / f"{_PREFIX}{uuid.uuid4().hex}"
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            self.temp.replace(final)
            _fsync_dir(self.directory)
        except OSError as exc:
            raise _storage_error(self.directory, exc) from exc
        return _Written(final, self.count, self.scanner.last_serial)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        self.temp.unlink(missing_ok=True)


def _write_state(directory: Path, state: ListState) -> None:
    """state.json by temp + fsync + rename (blocking)."""
    temp = directory / f"{_STATE}{_TEMP_SUFFIX}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with temp.open("w") as out:
            json.dump(dataclasses.asdict(state), out)
            out.flush()
            os.fsync(out.fileno())
        temp.replace(directory / _STATE)
        _fsync_dir(directory)
    except OSError as exc:
        raise _storage_error(directory, exc) from exc


def _read_state(directory: Path) -> ListState | None:
    """The committed state, after removing what a crash or a replacement left (blocking)."""
    try:
        raw = json.loads((directory / _STATE).read_text())
        state: ListState | None = ListState(**raw)
    except (OSError, ValueError, TypeError):
        state = None
    if state is not None and state.file and not (directory / state.file).is_file():
        state = None
    keep = state.file if state is not None else ""
    with contextlib.suppress(OSError):
        for path in directory.iterdir():
            if (path.name.startswith(_PREFIX) and path.name != keep) or path.suffix == _TEMP_SUFFIX:
                path.unlink(missing_ok=True)
    return state


def read_names(path: Path) -> Iterator[str]:
    """The names of a names file, one by one (blocking; for worker threads)."""
    with path.open(encoding="utf-8", newline="\n") as lines:
        for line in lines:
            yield line[:-1]


class RootList:
    """One mirror's root list: `current()` is its NameList, fetched when stale, one flight."""

    def __init__(
        self,
        index: IndexName,
        url: str,
        *,
        client: UpstreamClient,
        directory: Path,
        metrics: Metrics,
        cfg: UpstreamConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.index = index
        self.url = url
        self.client = client
        self.directory = directory
        self.metrics = metrics
        self.cfg = cfg
        self.clock = clock
        self._state: ListState | None = None
        self._loaded = False
        self._loads: SingleFlight[str, ListState | None] = SingleFlight("root list load")
        self._refreshes: SingleFlight[str, ListState] = SingleFlight("root list")

    async def current(self) -> NameList:
        """The list: fresh from disk, refreshed when stale, the old one if the upstream fails."""
        state = await self._load()
        if state is not None and self._fresh(state):
            self.metrics.page_cache.labels("hit").inc()
            return self.names(state)
        state = await self._refreshes.run("", functools.partial(self._refresh, state))
        return self.names(state)

    def names(self, state: ListState) -> NameList:
        if state.status != 200 or not state.file:
            return NameList(serial=state.serial)
        return NameList(path=self.directory / state.file, count=state.count, serial=state.serial)

    def _fresh(self, state: ListState) -> bool:
        ttl = self.cfg.page_ttl if state.status == 200 else self.cfg.not_found_ttl
        return self.clock() - state.fetched_at < ttl

    async def _load(self) -> ListState | None:
        if self._loaded:
            return self._state
        return await self._loads.run("", self._load_once)

    async def _load_once(self) -> ListState | None:
        loaded = await asyncio.get_running_loop().run_in_executor(None, _read_state, self.directory)
        if not self._loaded:  # a refresh that finished meanwhile is newer than the disk
            self._state, self._loaded = loaded, True
        return self._state

    async def _refresh(self, old: ListState | None) -> ListState:
        validators = old is not None and old.status == 200
        try:
            head, written = await self.client.stream_page(
                self.url,
                self._consume,
                etag=old.etag if old and validators else None,
                last_modified=old.last_modified if old and validators else None,
                index=self.index,
                may_probe=old is None,  # a cached answer never waits for a resting upstream
            )
            state = self._settle(head, written, old)
        except UpstreamError as exc:
            if old is None:
                raise
            self.metrics.page_cache.labels("stale").inc()
            log.warning(
                "serving stale page %s/+simple: %s", self.index, exc, extra={"index": self.index}
            )
            return old
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _write_state, self.directory, state)
        if old is not None and old.file and old.file != state.file:
            loop.call_later(GRACE_SECONDS, _unlink, self.directory / old.file)
        self._state, self._loaded = state, True
        return state

    def _settle(self, head: PageHead, written: _Written | None, old: ListState | None) -> ListState:
        now = self.clock()
        if head.status == 304 and old is not None:
            self.metrics.page_cache.labels("revalidated").inc()
            return dataclasses.replace(old, fetched_at=now)
        if head.status == 404:
            self.metrics.page_cache.labels("miss").inc()
            return ListState(fetched_at=now, status=404)
        if head.status != 200 or written is None:
            raise UpstreamStatusError(mask_url(head.url), head.status)
        self.metrics.page_cache.labels("miss").inc()
        log.info(
            "fetched root list of %s (%d names) from %s",
            self.index,
            written.count,
            mask_url(head.url),
            extra={"index": self.index, "upstream": mask_url(head.url)},
        )
        return ListState(
            fetched_at=now,
            etag=head.etag,
            last_modified=head.last_modified,
            serial=head.serial if head.serial is not None else written.serial,
            file=written.path.name,
            count=written.count,
        )

    async def _consume(self, head: PageHead, chunks: AsyncIterator[bytes]) -> _Written:
        """The body, batch by batch, through the scanner into a names file, off the loop."""
        is_json = head.content_type.split(";")[0].strip().lower().endswith("json")
        loop = asyncio.get_running_loop()
        writer = await loop.run_in_executor(
            None, functools.partial(_NamesWriter, self.directory, head.url, is_json=is_json)
        )
        try:
            batch = bytearray()
            async for chunk in chunks:
                batch += chunk
                if len(batch) >= BATCH_BYTES:
                    data, batch = bytes(batch), bytearray()
                    await loop.run_in_executor(None, writer.feed, data)
            return await loop.run_in_executor(None, writer.finish, bytes(batch))
        except BaseException:
            writer.discard()  # a close and an unlink: quick enough for the loop
            raise

    async def close(self) -> None:
        await self._loads.close()
        await self._refreshes.close()


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
