"""A mirror index: upstream pages with TTL, revalidation, stale-if-error and negative entries."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from proxy.config import IndexKind, UpstreamConfig
from proxy.distfiles import DEFAULT_METADATA_LIMIT
from proxy.errors import (
    DistributionNotFoundError,
    HashMismatchError,
    ProjectNotFoundError,
    StorageError,
    UpstreamConcealedError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from proxy.httpranges import ByteRange
from proxy.metrics import Metrics
from proxy.mirror.fetch import Download, Fetcher
from proxy.mirror.ranges import (
    CACHED_RANGE_LIMIT,
    TAIL_BYTES,
    RangeCache,
    RangeUnsupportedError,
    fetch_range,
    read_metadata,
)
from proxy.mirror.rootlist import RootList, read_names
from proxy.mirror.sources import (
    CachedRange,
    FileSource,
    InFlight,
    KnownSize,
    Passthrough,
    read_wheel_metadata,
)
from proxy.mirror.upstream import PageResponse, UpstreamClient, conceal_for
from proxy.model import (
    Distribution,
    IndexName,
    NameList,
    NormalizedName,
    ProjectList,
    ProjectPage,
    is_sha256,
    mask_url,
)
from proxy.simple_api import parse_html, parse_json
from proxy.storage.blobs import BlobStore, LocalFile, RemoteObject
from proxy.storage.locations import InMemory, MetadataSource
from proxy.storage.pagecache import CachedPage, PageCache
from proxy.tasks import Background, SingleFlight, WriteBehind

log = logging.getLogger(__name__)

T = TypeVar("T")

_MEMORY_PAGES = 4096
#: files of the pages kept in memory (a 5,000-file page is ~6 MB of objects): past this the
#: least recently used pages are parsed again from the disk cache when asked for
_MEMORY_FILES = 60_000
#: metadata hashes learned (of files whose page gives none), for the pages' `core-metadata`
_KNOWN_HASHES = 20_000
#: statuses an upstream may answer a Range request with that a whole GET may still get past
_RANGE_REFUSALS = frozenset({400, 403, 405, 416, 501})
#: bytes of core metadata kept in memory (a warm resolver's requests skip the database)
_METADATA_MEMORY = 8 * 1024 * 1024
#: bodies below this are parsed on the loop: the executor hop (~50 µs) costs more than the work
_INLINE_BYTES = 2 * 1024


_PARSERS = 2  #: pages parsed at once: the GIL runs one anyway, and each holds its objects


async def _off_loop(size: int, fn: Callable[..., T], *args: Any) -> T:
    """Run blocking parse work on the default executor, unless the body is tiny.

    At most `_PARSERS` at a time: a resolver asking for 40 big pages at once would otherwise
    hold 40 parses' worth of objects (the peak RSS) for no gain in speed.
    """
    if size < _INLINE_BYTES:
        return fn(*args)
    async with _parsing():
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


_SEMAPHORES: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


def _parsing() -> asyncio.Semaphore:
    """The running loop's parse semaphore (tests run several loops, one after another)."""
    loop = asyncio.get_running_loop()
    semaphore = _SEMAPHORES.get(loop)
    if semaphore is None:
        _SEMAPHORES.clear()  # an old loop's is of no use any more
        semaphore = _SEMAPHORES[loop] = asyncio.Semaphore(_PARSERS)
    return semaphore


@dataclass(frozen=True, slots=True)
class _Entry:
    cached: CachedPage
    page: ProjectPage | None  #: None for a remembered 404
    served: ProjectPage | None  #: `page` with URLs rewritten to our +f/ paths
    gen: tuple[int, int] = (0, 0)  #: `MirrorIndex._generation` that `served` was rewritten at


def _files(entry: _Entry) -> int:
    return 1 + (len(entry.page.files) if entry.page is not None else 0)


class MirrorIndex:
    """Mirror of one upstream simple index, exposed under `name`."""

    kind = IndexKind.MIRROR

    def __init__(
        self,
        name: IndexName,
        upstream_url: str,
        *,
        client: UpstreamClient,
        pages: PageCache,
        blobs: BlobStore,
        fetcher: Fetcher,
        metrics: Metrics,
        cfg: UpstreamConfig,
        clock: Callable[[], float] = time.time,
        metadata_limit: int = DEFAULT_METADATA_LIMIT,
        generate_metadata: bool = True,
        ranges: RangeCache | None = None,
        lists: Path | None = None,
    ) -> None:
        self.metadata_limit = metadata_limit  #: limits.max_metadata_size
        self.name = name
        self.base_url = upstream_url.rstrip("/") + "/"
        self.client = client
        self.pages = pages
        self.blobs = blobs
        self.fetcher = fetcher
        self.metrics = metrics
        self.cfg = cfg
        self.clock = clock
        self._memory: OrderedDict[str, _Entry] = OrderedDict()
        self._memory_files = 0  #: files of the pages in `_memory`
        self._loads: SingleFlight[str, _Entry | None] = SingleFlight("page load")
        self._refreshes: SingleFlight[str, _Entry] = SingleFlight("page")
        self._metadata_fetches: SingleFlight[str, bytes] = SingleFlight("metadata")
        #: the client has its bytes before the fsync
        self._metadata_writes: WriteBehind[str, bytes] = WriteBehind(
            "metadata", self._store_metadata
        )
        self.on_page: Callable[[str, ProjectPage], None] | None = None  #: after a page fetch
        self.ranges = ranges if ranges is not None else RangeCache()
        self._generate = generate_metadata  #: advertise and serve metadata upstream lacks
        self._ranges_ok = True  #: False once the upstream answered a Range with the whole file
        self._epoch = 0  #: bumped when what the pages advertise changes for every project
        self._hashes: OrderedDict[str, str] = OrderedDict()  #: file key -> metadata sha256
        self._learned: dict[str, int] = {}  #: project -> hashes learned, to refresh its page
        self._checks = Background()  #: generated metadata compared with the downloaded wheel
        self._metadata_memory: OrderedDict[str, bytes] = OrderedDict()  #: alias -> body
        self._metadata_bytes = 0
        #: small wheels read whole for their metadata, on their way into the store
        self._storing: dict[str, asyncio.Task[None]] = {}
        #: the root list, on disk under `lists` (default: beside the page cache)
        self.root_list = RootList(
            name,
            self.base_url,
            client=client,
            directory=(lists or pages.directory.parent / "lists") / "mirrors" / name,
            metrics=metrics,
            cfg=cfg,
            clock=clock,
        )

    # ---- pages ---------------------------------------------------------------------------

    def _cache_key(self, project: str) -> str:
        return f"{self.name}:{project}"

    def names_cached(self) -> list[str]:
        """Projects whose pages are in memory, most recently used first (for the web UI)."""
        return list(reversed(self._memory))

    def _fresh(self, entry: _Entry) -> bool:
        ttl = self.cfg.page_ttl if entry.cached.status == 200 else self.cfg.not_found_ttl
        return self.clock() - entry.cached.fetched_at < ttl

    def _remember(self, project: str, entry: _Entry) -> None:
        old = self._memory.pop(project, None)
        if old is not None:
            self._memory_files -= _files(old)
        self._memory[project] = entry
        self._memory_files += _files(entry)
        while len(self._memory) > 1 and (
            len(self._memory) > _MEMORY_PAGES or self._memory_files > _MEMORY_FILES
        ):
            _, dropped = self._memory.popitem(last=False)
            self._memory_files -= _files(dropped)

    async def _lookup(self, project: str) -> _Entry | None:
        entry = self._memory.get(project)
        if entry is not None:
            self._memory.move_to_end(project)
            return entry
        return await self._loads.run(project, functools.partial(self._load, project))

    async def _load(self, project: str) -> _Entry | None:
        """The disk-cached page, parsed once however many clients ask for it after a restart."""
        cached = await self.pages.load(self._cache_key(project))
        if cached is None:
            return None
        entry = await _off_loop(len(cached.body), self._entry_from, project, cached)
        current = self._memory.get(project)
        if current is not None:  # a refresh finished meanwhile: it is newer than the disk
            return current
        self._remember(project, entry)
        return entry

    def _entry_from(self, project: str, cached: CachedPage) -> _Entry:
        """A page from the disk cache, parsed and rewritten (blocking: run it off the loop)."""
        if cached.status != 200:
            return _Entry(cached, None, None)
        gen = self._generation(project)
        if cached.content_type:  # the upstream's own body
            url = cached.url or self._url_for(project)
            resp = PageResponse(200, url, cached.body, cached.content_type, serial=cached.serial)
            page, served = self._parse_page(project, resp)
        else:
            page = parse_json(cached.body, self.base_url)
            served = self._rewrite(page)
        return _Entry(dataclasses.replace(cached, body=b""), page, served, gen=gen)

    def _rewrite(self, page: ProjectPage) -> ProjectPage:
        """File URLs pointing at our +f/ paths, generated metadata advertised (off the loop)."""
        generating = self.generating
        files = tuple(self._served_dist(d, generating) for d in page.files)
        return dataclasses.replace(page, files=files, versions=page.all_versions())

    def _served_dist(self, dist: Distribution, generating: bool) -> Distribution:
        """The dist as served (built directly: dataclasses.replace is slow on 5,000 files)."""
        key = dist.key
        metadata, hashes = dist.metadata, dist.metadata_hashes
        if not metadata and generating and dist.filename.endswith(".whl"):
            sha = self._hashes.get(key)  # PEP 714: `true` until the hash is known
            metadata, hashes = True, ({"sha256": sha} if sha is not None else {})
        return Distribution(
            dist.filename,
            f"{self.name}/+f/{key}/{dist.filename}",
            dist.hashes,
            dist.requires_python,
            dist.yanked,
            dist.yanked_reason,
            metadata,
            hashes,
            dist.size,
            dist.upload_time,
            dist.gpg_sig,
        )

    @property
    def generating(self) -> bool:
        """Whether pages advertise core metadata for wheels whose upstream page gives none."""
        return self._generate and self._ranges_ok

    def set_generate(self, on: bool) -> None:
        """The index's `generate_metadata` changed: every served page is rewritten."""
        if on != self._generate:
            self._generate = on
            self._epoch += 1

    def _generation(self, project: str) -> tuple[int, int]:
        return self._epoch, self._learned.get(project, 0)

    def _learn(self, project: str, key: str, sha: str) -> None:
        """A metadata hash is known now: the project's page shows it from its next refresh.

        Not at once: that would render a page of thousands of files again for every hash.
        """
        if self._hashes.get(key) == sha:
            return
        self._hashes[key] = sha
        self._hashes.move_to_end(key)
        while len(self._hashes) > _KNOWN_HASHES:
            self._hashes.popitem(last=False)
        if len(self._learned) > _KNOWN_HASHES:
            self._learned.clear()  # a page whose count is gone is rewritten at its refresh
        self._learned[project] = self._learned.get(project, 0) + 1

    async def _entry(self, project: str) -> _Entry:
        entry = await self._lookup(project)
        if entry is not None and self._fresh(entry):
            self.metrics.page_cache.labels("hit").inc()
            return entry
        return await self._refreshes.run(project, functools.partial(self._refresh, project, entry))

    async def refresh(self, project: NormalizedName) -> None:
        """Fetch the page now whatever its age (devpi's refresh); a conditional GET if cached."""
        entry = await self._lookup(project)
        await self._refreshes.run(project, functools.partial(self._refresh, project, entry))

    async def project_page(self, project: NormalizedName) -> ProjectPage:
        """The upstream page with upstream URLs; ProjectNotFoundError when upstream has none."""
        entry = await self._entry(project)
        if entry.page is None:
            raise ProjectNotFoundError(project, self.name)
        return entry.page

    async def served_page(self, project: NormalizedName) -> ProjectPage:
        """The page as this index serves it, file URLs pointing at `{index}/+f/…`."""
        entry = await self._entry(project)
        if entry.served is None or entry.page is None:
            raise ProjectNotFoundError(project, self.name)
        if entry.gen[0] == self._epoch:  # learned hashes wait for the next refresh
            return entry.served
        gen = self._generation(project)
        served = await _off_loop(len(entry.page.files) * 256, self._rewrite, entry.page)
        if self._memory.get(project) is entry:
            self._remember(project, dataclasses.replace(entry, served=served, gen=gen))
        return served

    async def project_list(self) -> ProjectList:
        """The root list as one value: every name in memory, for tests and small upstreams only."""
        names = await self.name_list()
        if names.path is None:
            return ProjectList(last_serial=names.serial)
        path = names.path
        loop = asyncio.get_running_loop()
        read = await loop.run_in_executor(None, lambda: tuple(read_names(path)))
        return ProjectList(names=read, last_serial=names.serial)

    async def name_list(self) -> NameList:
        """The root list as a names file, fetched streaming (see proxy/mirror/rootlist.py)."""
        return await self.root_list.current()

    def _url_for(self, project: str) -> str:
        return f"{self.base_url}{project}/"

    async def _refresh(self, project: str, old: _Entry | None) -> _Entry:
        url = self._url_for(project)
        validators = old is not None and old.cached.status == 200
        try:
            resp = await self.client.fetch_page(
                url,
                etag=old.cached.etag if old and validators else None,
                last_modified=old.cached.last_modified if old and validators else None,
                index=self.name,
                may_probe=old is None,  # a cached answer never waits for a resting upstream
            )
            entry = await self._entry_from_response(project, resp, old)
        except UpstreamError as exc:
            if old is None:
                raise
            self.metrics.page_cache.labels("stale").inc()
            log.warning(
                "serving stale page %s/%s: %s",
                self.name,
                project,
                exc,
                extra={"project": project, "index": self.name},
            )
            return old
        if entry is not old:
            key = self._cache_key(project)
            if resp.status == 200 and entry.page is not None:  # kept as sent: no render
                self.pages.store(key, dataclasses.replace(entry.cached, body=resp.body))
            else:
                self.pages.store(key, entry.cached, entry.page)
        self._remember(project, entry)
        if self.on_page is not None and entry.served is not None:
            self.on_page(project, entry.served)
        return entry

    async def _entry_from_response(
        self, project: str, resp: PageResponse, old: _Entry | None
    ) -> _Entry:
        now = self.clock()
        if resp.status == 304 and old is not None:
            self.metrics.page_cache.labels("revalidated").inc()
            cached = dataclasses.replace(old.cached, fetched_at=now)
            gen = self._generation(project)
            if old.gen == gen or old.page is None:
                return _Entry(cached, old.page, old.served, gen=old.gen)
            served = await _off_loop(len(old.page.files) * 256, self._rewrite, old.page)
            return _Entry(cached, old.page, served, gen=gen)  # with the hashes learned since
        if resp.status == 404:
            self.metrics.page_cache.labels("miss").inc()
            return _Entry(CachedPage(body=b"", fetched_at=now, status=404), None, None)
        if resp.status != 200:
            raise UpstreamStatusError(mask_url(resp.url), resp.status)
        self.metrics.page_cache.labels("miss").inc()
        gen = self._generation(project)
        page, served = await _off_loop(len(resp.body), self._parse_page, project, resp)
        serial = page.last_serial
        old_serial = old.cached.serial if old is not None else None
        if (
            old is not None
            and serial is not None
            and old_serial is not None
            and serial < old_serial
        ):
            log.warning(
                "upstream page %s has serial %d < cached %d; keeping the cached page",
                mask_url(resp.url),
                serial,
                old_serial,
            )
            self.metrics.page_cache.labels("stale").inc()
            return old
        cached = CachedPage(
            body=b"",  # the upstream's body goes to disk only, not into memory
            fetched_at=now,
            etag=resp.etag,
            last_modified=resp.last_modified,
            serial=serial,
            content_type=resp.content_type or "text/html",
            url=resp.url,
        )
        log.info(
            "fetched page %s (%d files) from %s",
            project,
            len(page.files),
            mask_url(resp.url),
            extra={"project": project, "index": self.name, "upstream": mask_url(resp.url)},
        )
        return _Entry(cached, page, served, gen=gen)

    def _parse_page(self, project: str, resp: PageResponse) -> tuple[ProjectPage, ProjectPage]:
        """The page with the response's serial, and as served (blocking: run it off the loop)."""
        ctype = resp.content_type.split(";")[0].strip().lower()
        if ctype.endswith("json"):
            page = parse_json(resp.body, resp.url)
        elif "html" in ctype or not ctype:
            page = parse_html(resp.body, resp.url, project)
        else:
            raise UpstreamProtocolError(mask_url(resp.url), f"unexpected content type {ctype!r}")
        serial = resp.serial if resp.serial is not None else page.last_serial
        page = dataclasses.replace(page, name=page.name or project, last_serial=serial)
        return page, self._rewrite(page)

    # ---- files ---------------------------------------------------------------------------

    async def find_dist(self, project: NormalizedName, key: str, filename: str) -> Distribution:
        page = await self.project_page(project)
        dist = page.find(filename)
        if dist is None or dist.key != key:
            raise DistributionNotFoundError(filename, self.name)
        return dist

    async def locate_file(
        self,
        project: NormalizedName,
        key: str,
        filename: str,
        *,
        probe: bool,
        head: bool = False,
        byte_range: ByteRange | None = None,
    ) -> FileSource:
        """Where to read a file from; `probe` (HEAD or Range) never starts a whole download.

        A HEAD is answered from the size the page gives, a Range from bytes read before; what
        has to go upstream goes once and is kept (small ranges) for the next client.
        """
        download = self.fetcher.find(key)
        if download is not None and download.verified:
            await download.finished.wait()  # only the rename is left: wait, then use the store
        storing = self._storing.get(key)
        if storing is not None:  # read whole for its metadata a moment ago
            await asyncio.shield(storing)
        stored = await self.blobs.locate(key)
        if stored is not None:
            self.metrics.file_cache.labels("hit").inc()
            return stored
        dist = await self.find_dist(project, key, filename)
        if probe:
            return await self._probe(dist, head, byte_range)
        download = self.fetcher.fetch(key, dist.url, filename, dist.sha256, index=self.name)
        if not dist.metadata and filename.endswith(".whl"):
            self._checks.spawn(self._check_metadata(project, download), f"check {filename}")
        return InFlight(download)

    async def _probe(
        self, dist: Distribution, head: bool, byte_range: ByteRange | None
    ) -> FileSource:
        total = dist.size if dist.size is not None else self.ranges.total(dist.key)
        if head and total is not None:
            self.metrics.file_cache.labels("probe").inc()
            return KnownSize(total)
        if head:  # the page gives no size: ask once, and remember
            async with self.client.open_file(dist.url, method="HEAD", index=self.name) as resp:
                size = resp.content_length
            if size is not None:
                self.ranges.note_total(dist.key, size)
                self.metrics.file_cache.labels("range").inc()
                return KnownSize(size)
        span = byte_range.resolve(total) if byte_range is not None and total else None
        if span is not None and total is not None:
            data = self.ranges.read(dist.key, span[0], span[1] - span[0] + 1)
            if data is not None:
                self.metrics.file_cache.labels("probe").inc()
                return CachedRange(span[0], data, total)
            if span[1] - span[0] < CACHED_RANGE_LIMIT and self._ranges_ok:
                wanted = ByteRange(span[0], span[1])
                answer = await fetch_range(
                    self.client, dist.url, wanted, index=self.name, limit=CACHED_RANGE_LIMIT
                )
                if answer is not None:
                    start, data, size = answer
                    self.ranges.add(dist.key, size, start, data)
                    self.metrics.file_cache.labels("range").inc()
                    return CachedRange(start, data, size)
        self.metrics.file_cache.labels("passthrough").inc()
        return Passthrough(dist.url, dist.size, self.name)

    async def locate_metadata(
        self, project: NormalizedName, key: str, filename: str
    ) -> MetadataSource:
        """PEP 658 metadata: from disk, from memory while being stored, or fetched (one flight)."""
        alias = f"{key}.metadata"
        kept = self._metadata_memory.get(alias)
        if kept is not None:
            self._metadata_memory.move_to_end(alias)
            self.metrics.file_cache.labels("hit").inc()
            return InMemory(kept)
        stored = await self.blobs.locate(alias)
        if stored is not None:
            self.metrics.file_cache.labels("hit").inc()
            if isinstance(stored, LocalFile) and key not in self._hashes:
                self._learn(project, key, stored.path.name)  # blobs are named by their sha256
            return stored
        body = self._metadata_writes.pending(alias)
        if body is not None:
            return InMemory(body)
        fetch = functools.partial(self._fetch_metadata, project, key, filename)
        return InMemory(await self._metadata_fetches.run(alias, fetch))

    async def _fetch_metadata(self, project: NormalizedName, key: str, filename: str) -> bytes:
        dist = await self.find_dist(project, key, filename)
        body: bytes | None = None
        if dist.metadata:
            try:
                async with self.client.open_file(dist.url + ".metadata", index=self.name) as resp:
                    body = await resp.read()
            except UpstreamStatusError as exc:
                if exc.status != 404:
                    raise
        if body is None:
            if not filename.endswith(".whl"):
                raise DistributionNotFoundError(filename + ".metadata", self.name)
            body = await self._generate_metadata(key, dist)
        expected = dist.metadata_hashes.get("sha256")
        if expected and is_sha256(expected):
            actual = hashlib.sha256(body).hexdigest()
            if actual != expected:
                log.warning("metadata of %s: sha256 %s, page says %s", filename, actual, expected)
        if not dist.metadata:
            self._learn(project, key, hashlib.sha256(body).hexdigest())
        self._keep_metadata(f"{key}.metadata", body)
        return body

    def _keep_metadata(self, alias: str, body: bytes) -> None:
        """Store it (behind the answer) and keep it in memory within `_METADATA_MEMORY`."""
        self._metadata_writes.put(alias, body)
        old = self._metadata_memory.pop(alias, None)
        self._metadata_bytes -= len(old) if old is not None else 0
        self._metadata_memory[alias] = body
        self._metadata_bytes += len(body)
        while self._metadata_bytes > _METADATA_MEMORY and self._metadata_memory:
            _, dropped = self._metadata_memory.popitem(last=False)
            self._metadata_bytes -= len(dropped)

    async def _generate_metadata(self, key: str, dist: Distribution) -> bytes:
        """The wheel's METADATA: from the stored wheel, by Range reads, or from a download."""
        if (
            self.generating
            and await self.blobs.locate(key) is None
            and self.fetcher.find(key) is None
        ):
            whole = self.cfg.whole_wheel_below
            small = dist.size is None or dist.size <= whole
            with conceal_for(self.name):
                try:
                    body = await read_metadata(
                        self.client,
                        self.ranges,
                        key,
                        dist.url,
                        dist.filename,
                        index=self.name,
                        limit=self.metadata_limit,
                        first_read=whole if small and whole > 0 else TAIL_BYTES,
                    )
                    kept = await self._keep_whole(dist)
                    self.metrics.generated_metadata.labels("whole" if kept else "range").inc()
                    return body
                except RangeUnsupportedError as exc:
                    self._ranges_ok = False
                    self._epoch += 1
                    log.warning(
                        "%s: %s; metadata is no longer advertised for wheels it has none for",
                        self.name,
                        exc,
                        extra={"index": self.name},
                    )
                except UpstreamError as exc:
                    if not _refuses_ranges(exc):
                        raise
                    log.info("%s: range reads refused (%s); downloading it", dist.filename, exc)
        if not dist.metadata:
            self.metrics.generated_metadata.labels("download").inc()
        return await self._extract_metadata(key, dist)

    async def _keep_whole(self, dist: Distribution) -> bool:
        """A wheel the metadata read got all of: hash it, then store it behind the answer.

        HashMismatchError when it is not the file the page names (its metadata is not served).
        """
        data = self.ranges.whole(dist.key)
        if data is None or dist.key in self._storing:
            return False
        actual = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        if dist.sha256 and actual != dist.sha256:
            self.metrics.hash_mismatches.inc()
            self.ranges.forget(dist.key)
            raise HashMismatchError(mask_url(dist.url), dist.filename, dist.sha256, actual)
        task = self._checks.spawn(self._commit_whole(dist, data, actual), f"store {dist.filename}")
        self._storing[dist.key] = task
        task.add_done_callback(lambda _: self._storing.pop(dist.key, None))
        return True

    async def _commit_whole(self, dist: Distribution, data: bytes, sha: str) -> None:
        try:
            await self.blobs.store_bytes(data, () if dist.key == sha else (dist.key,))
            self.metrics.bytes_from_upstream.inc(len(data))
            self.ranges.forget(dist.key)
        except StorageError as exc:
            log.warning("could not store %s: %s", dist.filename, exc)

    async def _check_metadata(self, project: NormalizedName, download: Download) -> None:
        """After a whole download: the metadata served before must be the wheel's own."""
        try:
            await download.finished.wait()
            self.ranges.forget(download.key)
            if not download.verified or not isinstance(download.stored, LocalFile):
                return
            alias = f"{download.key}.metadata"
            served = self._metadata_writes.pending(alias)
            if served is None:
                located = await self.blobs.locate(alias)
                if not isinstance(located, LocalFile):
                    return  # none served yet: it will be read from the wheel when asked for
                served = await asyncio.to_thread(located.path.read_bytes)
            own = await asyncio.to_thread(
                read_wheel_metadata, download.stored.path, download.filename, self.metadata_limit
            )
            if own == served:
                return
            log.warning(
                "metadata served for %s differs from the wheel's own: replaced",
                download.filename,
                extra={"file": download.filename, "index": self.name},
            )
            self._learn(project, download.key, hashlib.sha256(own).hexdigest())
            self._keep_metadata(alias, own)
        except (DistributionNotFoundError, StorageError, OSError) as exc:
            log.warning("could not check the metadata of %s: %s", download.filename, exc)

    async def _store_metadata(self, batch: dict[str, bytes]) -> None:
        """Behind the response, each file on its own: one that fails does not stop the rest."""
        results = await asyncio.gather(
            *(self._store_one(alias, body) for alias, body in batch.items()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _store_one(self, alias: str, body: bytes) -> None:
        try:
            await self.blobs.store_bytes(body, (alias,))
        except StorageError as exc:
            log.error("could not store %s: %s", alias, exc)

    async def _extract_metadata(self, key: str, dist: Distribution) -> bytes:
        """The wheel's own METADATA, for upstreams that advertise metadata they do not serve."""
        stored = await self.blobs.locate(key)
        if stored is None:
            download = self.fetcher.fetch(
                key, dist.url, dist.filename, dist.sha256, index=self.name
            )
            await download.finished.wait()
            if download.error is not None:
                raise download.error
            stored = download.stored
        if not isinstance(stored, LocalFile):  # a remote store reads it through a download
            raise DistributionNotFoundError(dist.filename, self.name)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, read_wheel_metadata, stored.path, dist.filename, self.metadata_limit
        )

    def open_stream(self, blob: RemoteObject) -> AsyncIterator[bytes]:
        return self.blobs.open_stream(blob)

    async def close(self) -> None:
        """Cancel page refreshes and metadata fetches; let queued metadata writes finish."""
        await self._loads.close()
        await self._refreshes.close()
        await self.root_list.close()
        await self._metadata_fetches.close()
        await self._checks.close()
        await self._metadata_writes.close()

    # ---- the registry's Index protocol ---------------------------------------------------

    async def page(self, project: NormalizedName) -> ProjectPage | None:
        """The served page, None when upstream has no such project (UpstreamError raises)."""
        try:
            return await self.served_page(project)
        except ProjectNotFoundError:
            return None

    async def shown_names(self) -> tuple[str, ...]:
        """The pages in memory, most recently used first: the upstream's list is too long."""
        return tuple(self.names_cached())


def _refuses_ranges(exc: UpstreamError) -> bool:
    """An answer saying this file cannot be read by ranges here (the whole file still may be)."""
    cause = exc.detail if isinstance(exc, UpstreamConcealedError) else exc
    if isinstance(cause, UpstreamStatusError):
        return cause.status in _RANGE_REFUSALS
    return type(cause) is UpstreamProtocolError  # a malformed 206, not a broken connection
