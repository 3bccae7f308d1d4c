"""Index resolution: an index's view is its own files, then its bases', mirrors last.

Order (devpi's): breadth-first from the index itself, each index once, mirror indexes moved to
the end; the first index to list a filename wins. A project that any private index in the chain
hosts hides the mirrors' files of that name unless whitelisted (no dependency confusion).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gzip
import hashlib
import os
import shutil
import tempfile
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from packaging.utils import canonicalize_name

from proxy.config import ANONYMOUS, IndexConfig, IndexKind
from proxy.errors import (
    IndexNotFoundError,
    InvalidInputError,
    ProjectNotFoundError,
    StorageError,
    UpstreamError,
)
from proxy.hosted.private import HostedFile, PrivateIndex
from proxy.indexes.base import Index as Index
from proxy.mirror.index import MirrorIndex
from proxy.mirror.rootlist import GRACE_SECONDS, read_names
from proxy.model import IndexName, NameList, NormalizedName, ProjectPage
from proxy.simple_api import Format, render_list_chunks, render_page
from proxy.tasks import SingleFlight

_RENDER_CACHE_SIZE = 4096
_RENDER_CACHE_BYTES = 32 * 1024 * 1024  #: rendered bodies and their gzip, over all pages
_GZIP_MIN = 4096  #: smaller bodies fit in a few packets; compressing them costs more than it saves
_INLINE_LIMIT = 16 * 1024
_GZIP_FAST = 256 * 1024  #: bodies from this size are compressed at level 1
#: a merged page with more files than this is merged and rendered on a worker thread
_OFF_LOOP_FILES = 200


class Hiding(StrEnum):
    """Why an index's files are left out of a view."""

    SHADOWED = "shadowed"  #: an index earlier in the order lists the same file names
    PRIVATE = "private"  #: a private index in the chain hosts the project (not whitelisted)


@dataclass(frozen=True, slots=True)
class Step:
    """What one index of the resolution order gave to a project's view, and what it did not."""

    index: IndexName
    kind: IndexKind
    page: ProjectPage | None  #: None: no such project here, an error, or a hidden mirror unasked
    files: tuple[str, ...] = ()  #: the file names this index contributed
    hidden: tuple[str, ...] = ()  #: its file names left out, for `hiding`
    hiding: Hiding | None = None
    error: UpstreamError | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    """A project's view of an index, one step per index of the resolution order."""

    index: IndexName
    project: NormalizedName
    steps: tuple[Step, ...]
    hosted_in: IndexName | None = None  #: the first private index hosting the project

    def pages(self) -> tuple[ProjectPage, ...]:
        """The pages that make up the view; the first upstream error, else not found, if none."""
        parts = tuple(
            s.page for s in self.steps if s.page is not None and s.hiding is not Hiding.PRIVATE
        )
        if parts:
            return parts
        error = next((s.error for s in self.steps if s.error is not None), None)
        if error is not None:
            raise error
        raise ProjectNotFoundError(self.project, self.index)

    def reason(self, step: Step) -> str | None:
        """Why `step` hid files, in the words of /+explain."""
        if step.hiding is Hiding.PRIVATE:
            return (
                f"'{self.project}' is hosted privately in {self.hosted_in}; mirror files are "
                f"hidden (dependency-confusion protection) unless whitelisted"
            )
        if step.hiding is Hiding.SHADOWED:
            return "an index earlier in the order lists the same file names"
        return None


@dataclass(frozen=True, slots=True)
class Listed:
    """A project shown on an index's web page, and the index it comes from."""

    project: str
    index: IndexName
    kind: IndexKind


@dataclass(frozen=True, slots=True)
class Rendered:
    """Response bytes for one (index, project, format, prefix), plus gzip and a strong ETag."""

    body: bytes
    gzipped: bytes | None
    etag: str
    serial: int | None = None


@dataclass(frozen=True, slots=True)
class RenderedList:
    """A root page rendered to a file (and its gzip), for sendfile, with a strong ETag."""

    path: Path
    size: int
    gzipped: Path | None
    gzipped_size: int
    etag: str
    serial: int | None = None


def _size(rendered: Rendered) -> int:
    return len(rendered.body) + (len(rendered.gzipped) if rendered.gzipped is not None else 0)


def _make_rendered(body: bytes, serial: int | None) -> Rendered:
    digest = hashlib.blake2b(body, digest_size=12).hexdigest()
    # a big page at level 1: half the CPU of level 5, about 15% larger (a 1.7 MB JSON page)
    level = 5 if len(body) < _GZIP_FAST else 1
    gzipped = gzip.compress(body, compresslevel=level, mtime=0) if len(body) >= _GZIP_MIN else None
    return Rendered(body=body, gzipped=gzipped, etag=f'"{digest}"', serial=serial)


class IndexRegistry:
    """All indexes by name, their resolution orders, and a cache of rendered pages.

    Index objects are built by `build` and kept across configuration changes that do not alter
    their kind or upstream, so their page caches survive a PATCH of bases or whitelist.
    """

    def __init__(
        self,
        configs: Iterable[IndexConfig],
        build: Callable[[IndexConfig], Index],
        *,
        lists: Path | None = None,
    ) -> None:
        self._build = build
        #: rendered root pages; None: a temporary directory, made on first use
        self._list_dir = lists / "rendered" if lists is not None else None
        self._temp_dir: Path | None = None
        self._lists: dict[tuple[str, bool], tuple[tuple[NameList, ...], RenderedList]] = {}
        self._list_renders: SingleFlight[tuple[str, bool], RenderedList] = SingleFlight("list")
        self._list_dir_ready = asyncio.Lock()
        self._list_dir_clean = False
        self.configs: dict[str, IndexConfig] = {}
        self.indexes: dict[str, Index] = {}
        self._orders: dict[str, tuple[Index, ...]] = {}
        self._public: dict[str, bool] = {}
        self._rendered: OrderedDict[
            tuple[str, str, Format, str], tuple[tuple[object, ...], Rendered]
        ]
        self._rendered = OrderedDict()
        self._rendered_bytes = 0  #: body and gzip bytes in `_rendered`
        for cfg in configs:
            self.put(cfg)

    def get(self, name: str) -> Index:
        index = self.indexes.get(name)
        if index is None:
            raise IndexNotFoundError(name)
        return index

    def config(self, name: str) -> IndexConfig:
        cfg = self.configs.get(name)
        if cfg is None:
            raise IndexNotFoundError(name)
        return cfg

    def put(self, cfg: IndexConfig) -> None:
        """Add or replace an index's configuration (already validated)."""
        old = self.configs.get(cfg.name)
        index = self.indexes.get(cfg.name)
        rebuild = (
            index is None or old is None or old.kind is not cfg.kind or old.upstream != cfg.upstream
        )
        self.configs[cfg.name] = cfg
        if rebuild:
            self.indexes[cfg.name] = self._build(cfg)
        elif isinstance(index, PrivateIndex):
            index.cfg = cfg
        elif isinstance(index, MirrorIndex):
            index.set_generate(cfg.generate_metadata)
        self.changed()

    def remove(self, name: str) -> Index:
        self.configs.pop(name, None)
        index = self.indexes.pop(name)
        self.changed()
        return index

    def changed(self) -> None:
        """Drop derived state: resolution orders and every rendered page."""
        self._orders.clear()
        self._public.clear()
        self._rendered.clear()
        self._rendered_bytes = 0

    def private(self, name: str) -> PrivateIndex:
        """The private index `name`, for what only hosted indexes do (uploads, yanks, deletes)."""
        index = self.get(name)
        if not isinstance(index, PrivateIndex):
            raise InvalidInputError(f"'{name}' is a mirror index; this needs a private index")
        return index

    def privates(self) -> tuple[PrivateIndex, ...]:
        """Every private index (the wheelhouse watchers start from these)."""
        return tuple(i for i in self.indexes.values() if isinstance(i, PrivateIndex))

    def public(self, name: str) -> bool:
        """Whether anyone may read the index: it and all it inherits list :ANONYMOUS: (cached)."""
        cached = self._public.get(name)
        if cached is None:
            order = self.resolution_order(name)
            cached = all(ANONYMOUS in self.configs[i.name].acl_read for i in order)
            self._public[name] = cached
        return cached

    def resolution_order(self, name: str) -> tuple[Index, ...]:
        cached = self._orders.get(name)
        if cached is not None:
            return cached
        seen: dict[str, Index] = {}
        queue: deque[str] = deque([self.get(name).name])
        while queue:
            current = queue.popleft()
            if current in seen or current not in self.indexes:
                continue
            seen[current] = self.indexes[current]
            queue.extend(self.configs[current].bases)
        ordered = [i for i in seen.values() if i.kind is not IndexKind.MIRROR]
        ordered += [i for i in seen.values() if i.kind is IndexKind.MIRROR]
        result = tuple(ordered)
        self._orders[name] = result
        return result

    def _whitelisted(self, name: str, project: NormalizedName) -> bool:
        whitelist = self.config(name).mirror_whitelist
        return "*" in whitelist or project in {canonicalize_name(w) for w in whitelist}

    async def resolve(
        self, name: str, project: NormalizedName, *, fetch_hidden: bool = False
    ) -> Resolution:
        """Ask each index of the order for the project: what it gives, what is hidden and why.

        A mirror hidden by a private index is not asked unless `fetch_hidden` (for /+explain,
        which lists its files): a page view never waits on an upstream it will not show.
        """
        steps: list[Step] = []
        seen: set[str] = set()
        hosted_in: IndexName | None = None
        whitelisted: bool | None = None
        for index in self.resolution_order(name):
            hide = False
            if index.kind is IndexKind.MIRROR and hosted_in is not None:
                if whitelisted is None:
                    whitelisted = self._whitelisted(name, project)
                hide = not whitelisted
            if hide and not fetch_hidden:
                steps.append(Step(index.name, index.kind, None, hiding=Hiding.PRIVATE))
                continue
            try:
                page = await index.page(project)
            except UpstreamError as exc:
                steps.append(Step(index.name, index.kind, None, error=exc))
                continue
            if page is None:
                steps.append(Step(index.name, index.kind, None))
                continue
            files = [d.filename for d in page.files]
            if hide:
                steps.append(
                    Step(index.name, index.kind, page, hidden=tuple(files), hiding=Hiding.PRIVATE)
                )
                continue
            if index.kind is IndexKind.PRIVATE and hosted_in is None:
                hosted_in = index.name
            shadowed = tuple(f for f in files if f in seen)
            own = tuple(f for f in files if f not in seen)
            seen.update(files)
            hiding = Hiding.SHADOWED if shadowed else None
            steps.append(Step(index.name, index.kind, page, own, shadowed, hiding))
        return Resolution(IndexName(name), project, tuple(steps), hosted_in)

    async def view_parts(self, name: str, project: NormalizedName) -> tuple[ProjectPage, ...]:
        """The pages that make up the view, in resolution order (mirrors dropped if shadowed)."""
        return (await self.resolve(name, project)).pages()

    async def explain(self, name: str, project: NormalizedName) -> list[dict[str, object]]:
        """For each index in the resolution order: what it contributed, what was hidden, why."""
        return render_explain(await self.resolve(name, project, fetch_hidden=True))

    async def refresh(self, name: str, project: NormalizedName) -> None:
        """Ask upstream again for the project's page in every mirror of `name`'s order."""
        for index in self.resolution_order(name):
            if isinstance(index, MirrorIndex):
                await index.refresh(project)

    async def hosted_files(self, name: str, project: str) -> list[HostedFile]:
        """Hosted files of the project in the private indexes of `name`'s resolution order."""
        hosted: list[HostedFile] = []
        for index in self.resolution_order(name):
            if isinstance(index, PrivateIndex):
                hosted.extend(await index.files(project))
        return hosted

    async def listing(self, name: str, mirror_limit: int | None = None) -> tuple[Listed, ...]:
        """The projects an index's web page shows, each once, from the first index showing it."""
        listed: list[Listed] = []
        seen: set[str] = set()
        for index in self.resolution_order(name):
            names = await index.shown_names()
            if index.kind is IndexKind.MIRROR and mirror_limit is not None:
                names = names[:mirror_limit]
            for project in names:
                if project not in seen:
                    seen.add(project)
                    listed.append(Listed(project, index.name, index.kind))
        return tuple(listed)

    async def view(self, name: str, project: NormalizedName) -> ProjectPage:
        return merge_pages(await self.view_parts(name, project))

    async def render(
        self, name: str, project: NormalizedName, fmt: Format, url_prefix: str
    ) -> Rendered:
        parts = await self.view_parts(name, project)
        key = (name, project, fmt, url_prefix)
        hit = self._rendered.get(key)
        if hit is not None and _same(hit[0], parts):
            self._rendered.move_to_end(key)
            return hit[1]
        loop = asyncio.get_running_loop()
        if sum(len(p.files) for p in parts) > _OFF_LOOP_FILES:  # merge, render, gzip: one trip
            rendered = await loop.run_in_executor(None, _render_parts, parts, fmt, url_prefix)
        else:
            page = merge_pages(parts)
            body = render_page(page, fmt, url_prefix)
            if len(body) < _INLINE_LIMIT:  # cheaper than a hop to the thread pool
                rendered = _make_rendered(body, page.last_serial)
            else:
                rendered = await loop.run_in_executor(None, _make_rendered, body, page.last_serial)
        old = self._rendered.pop(key, None)
        if old is not None:
            self._rendered_bytes -= _size(old[1])
        self._rendered[key] = (parts, rendered)
        self._rendered_bytes += _size(rendered)
        while len(self._rendered) > 1 and (
            len(self._rendered) > _RENDER_CACHE_SIZE or self._rendered_bytes > _RENDER_CACHE_BYTES
        ):
            _, (_, dropped) = self._rendered.popitem(last=False)
            self._rendered_bytes -= _size(dropped)
        return rendered

    async def list_parts(self, name: str) -> tuple[NameList, ...]:
        """The root lists making up `name`'s, in resolution order (names files for mirrors)."""
        return tuple([await index.name_list() for index in self.resolution_order(name)])

    async def render_list(self, name: str, fmt: Format) -> RenderedList:
        """The root page as a file: rendered again, streaming, only when a part changed."""
        parts = await self.list_parts(name)
        key = (name, fmt is Format.JSON)  # both HTML formats have the same body
        hit = self._lists.get(key)
        if hit is not None and _same_lists(hit[0], parts):
            return hit[1]
        return await self._list_renders.run(key, functools.partial(self._render, key, parts))

    async def _render(self, key: tuple[str, bool], parts: tuple[NameList, ...]) -> RenderedList:
        loop = asyncio.get_running_loop()
        directory = self._list_dir
        if directory is None:
            if self._temp_dir is None:
                self._temp_dir = Path(tempfile.mkdtemp(prefix="wheelwell-lists-"))
            directory = self._temp_dir
        async with self._list_dir_ready:
            if not self._list_dir_clean:
                await loop.run_in_executor(None, _clean_dir, directory)
                self._list_dir_clean = True
        fmt = Format.JSON if key[1] else Format.HTML
        serial = parts[0].serial if len(parts) == 1 else None  # a merged list has no one serial
        rendered = await loop.run_in_executor(
            None, _write_list, directory, key[0], parts, fmt, serial
        )
        old = self._lists.get(key)
        self._lists[key] = (parts, rendered)
        if old is not None and old[1].path != rendered.path:
            for path in (old[1].path, old[1].gzipped):
                if path is not None:  # a response may have been handed it a moment ago
                    loop.call_later(GRACE_SECONDS, _unlink, path)
        return rendered

    async def close(self) -> None:
        await self._list_renders.close()
        for index in self.indexes.values():
            await index.close()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)


def render_explain(resolution: Resolution) -> list[dict[str, object]]:
    """The JSON of /+explain: per index its files, the hidden ones and why, or its error."""
    steps: list[dict[str, object]] = []
    for step in resolution.steps:
        data: dict[str, object] = {"index": step.index, "type": step.kind.value}
        if step.error is not None:
            data["error"] = str(step.error)
        data["files"] = list(step.files)
        data["hidden"] = list(step.hidden)
        reason = resolution.reason(step)
        if reason is not None:
            data["reason"] = reason
        steps.append(data)
    return steps


def _render_parts(parts: tuple[ProjectPage, ...], fmt: Format, url_prefix: str) -> Rendered:
    """Merge, render, compress and hash (pure: small pages inline, large ones on a thread)."""
    page = merge_pages(parts)
    return _make_rendered(render_page(page, fmt, url_prefix), page.last_serial)


def merged_names(parts: tuple[NameList, ...]) -> Iterator[str]:
    """Every name once (by its normalized form), in resolution order, streaming (blocking).

    Names in memory (private indexes, few) are remembered exactly; a names file is read line by
    line and only remembered, by hash, when another file follows it (two mirrors in one chain).
    """
    seen: set[str] = set()
    hashes: set[int] = set()
    files = [i for i, part in enumerate(parts) if part.path is not None]
    for i, part in enumerate(parts):
        if part.path is None:
            for name in part.names:
                normal = canonicalize_name(name)
                if normal not in seen:
                    seen.add(normal)
                    yield name
            continue
        remember = any(j > i for j in files)
        if not seen and not hashes and not remember:
            yield from read_names(part.path)  # the mirror's own list: nothing to compare
            continue
        for name in read_names(part.path):
            normal = canonicalize_name(name)
            if normal in seen or hash(normal) in hashes:
                continue
            if remember:
                hashes.add(hash(normal))
            yield name


def _write_list(
    directory: Path,
    index: str,
    parts: tuple[NameList, ...],
    fmt: Format,
    serial: int | None,
) -> RenderedList:
    """Render, gzip and hash in one streaming pass to temp files, then rename (blocking)."""
    try:
        return _write_list_files(directory, index, parts, fmt, serial)
    except OSError as exc:
        raise StorageError(f"cannot write the root list of {index}: {exc.strerror}") from exc


def _clean_dir(directory: Path) -> None:
    """Remove what an earlier run rendered: every file here is derived (blocking)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.iterdir():
            stale.unlink(missing_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot prepare lists/rendered: {exc.strerror}") from exc


def _write_list_files(
    directory: Path, index: str, parts: tuple[NameList, ...], fmt: Format, serial: int | None
) -> RenderedList:
    stem = index.replace("/", "+") + ("-json" if fmt is Format.JSON else "-html")
    digest = hashlib.blake2b(digest_size=12)
    size = 0
    body_fd, body_temp = tempfile.mkstemp(prefix=stem, suffix=".tmp", dir=directory)
    gz_fd, gz_temp = tempfile.mkstemp(prefix=stem, suffix=".gz.tmp", dir=directory)
    try:
        with (
            os.fdopen(body_fd, "wb", buffering=1024 * 1024) as body,
            os.fdopen(gz_fd, "wb", buffering=1024 * 1024) as raw_gz,
            gzip.GzipFile(filename="", fileobj=raw_gz, mode="wb", compresslevel=5, mtime=0) as gz,
        ):
            for chunk in render_list_chunks(merged_names(parts), fmt, serial):
                body.write(chunk)
                gz.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        tag = digest.hexdigest()
        path = directory / f"{stem}-{tag}"
        Path(body_temp).replace(path)
        gzipped: Path | None = None
        gzipped_size = 0
        if size >= _GZIP_MIN:
            gzipped = directory / f"{stem}-{tag}.gzip"
            Path(gz_temp).replace(gzipped)
            gzipped_size = gzipped.stat().st_size
        return RenderedList(path, size, gzipped, gzipped_size, f'"{tag}"', serial)
    finally:
        for temp in (body_temp, gz_temp):
            Path(temp).unlink(missing_ok=True)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _same_lists(a: tuple[NameList, ...], b: tuple[NameList, ...]) -> bool:
    return len(a) == len(b) and all(x.same(y) for x, y in zip(a, b, strict=True))


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Identity, not equality: a page object is replaced whenever its content may change."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def merge_pages(parts: tuple[ProjectPage, ...]) -> ProjectPage:
    """First index to list a filename wins; a single part is returned as is (cheap and cached)."""
    if len(parts) == 1:
        return parts[0]
    seen: dict[str, None] = {}
    files = []
    for part in parts:
        for dist in part.files:
            if dist.filename not in seen:
                seen[dist.filename] = None
                files.append(dist)
    versions: dict[str, None] = {}
    for part in parts:
        versions.update(dict.fromkeys(part.all_versions()))
    return dataclasses.replace(
        parts[0], files=tuple(files), versions=tuple(versions), last_serial=None
    )
