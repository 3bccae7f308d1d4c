"""Index resolution: an index's view is its own files, then its bases', mirrors last.

Order (devpi's): breadth-first from the index itself, each index once, mirror indexes moved to
the end; the first index to list a filename wins. A project that any private index in the chain
hosts hides the mirrors' files of that name unless whitelisted (no dependency confusion).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from packaging.utils import canonicalize_name

from proxy.config import IndexConfig
from proxy.errors import IndexNotFoundError, ProjectNotFoundError, UpstreamError
from proxy.hosted.private import PrivateIndex
from proxy.mirror.index import MirrorIndex
from proxy.model import NormalizedName, ProjectList, ProjectPage
from proxy.simple_api import Format, render_list, render_page

Index = MirrorIndex | PrivateIndex

_RENDER_CACHE_SIZE = 4096
_GZIP_MIN = 4096  #: smaller bodies fit in a few packets; compressing them costs more than it saves
_INLINE_LIMIT = 16 * 1024


@dataclass(frozen=True, slots=True)
class Rendered:
    """Response bytes for one (index, project, format, prefix), plus gzip and a strong ETag."""

    body: bytes
    gzipped: bytes | None
    etag: str
    serial: int | None = None


def _make_rendered(body: bytes, serial: int | None) -> Rendered:
    digest = hashlib.blake2b(body, digest_size=12).hexdigest()
    gzipped = gzip.compress(body, compresslevel=5, mtime=0) if len(body) >= _GZIP_MIN else None
    return Rendered(body=body, gzipped=gzipped, etag=f'"{digest}"', serial=serial)


class IndexRegistry:
    """All indexes by name, their resolution orders, and a cache of rendered pages.

    Index objects are built by `build` and kept across configuration changes that do not alter
    their kind or upstream, so their page caches survive a PATCH of bases or whitelist.
    """

    def __init__(
        self, configs: Iterable[IndexConfig], build: Callable[[IndexConfig], Index]
    ) -> None:
        self._build = build
        self.configs: dict[str, IndexConfig] = {}
        self.indexes: dict[str, Index] = {}
        self._orders: dict[str, tuple[Index, ...]] = {}
        self._rendered: OrderedDict[
            tuple[str, str, Format, str], tuple[tuple[object, ...], Rendered]
        ]
        self._rendered = OrderedDict()
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
        self.changed()

    def remove(self, name: str) -> Index:
        self.configs.pop(name, None)
        index = self.indexes.pop(name)
        self.changed()
        return index

    def changed(self) -> None:
        """Drop derived state: resolution orders and every rendered page."""
        self._orders.clear()
        self._rendered.clear()

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
        ordered: list[Index] = [i for i in seen.values() if not isinstance(i, MirrorIndex)]
        ordered += [i for i in seen.values() if isinstance(i, MirrorIndex)]
        result = tuple(ordered)
        self._orders[name] = result
        return result

    def _whitelisted(self, name: str, project: NormalizedName) -> bool:
        whitelist = self.config(name).mirror_whitelist
        return "*" in whitelist or project in {canonicalize_name(w) for w in whitelist}

    async def view_parts(self, name: str, project: NormalizedName) -> tuple[ProjectPage, ...]:
        """The pages that make up the view, in resolution order (mirrors dropped if shadowed)."""
        parts: list[ProjectPage] = []
        private_hit = False
        upstream_error: UpstreamError | None = None
        for index in self.resolution_order(name):
            if isinstance(index, PrivateIndex):
                page = await index.own_page(project)
                if page is not None:
                    parts.append(page)
                    private_hit = True
                continue
            if private_hit and not self._whitelisted(name, project):
                continue
            try:
                parts.append(await index.served_page(project))
            except ProjectNotFoundError:
                continue
            except UpstreamError as exc:
                upstream_error = exc
        if not parts:
            if upstream_error is not None:
                raise upstream_error
            raise ProjectNotFoundError(project, name)
        return tuple(parts)

    async def explain(self, name: str, project: NormalizedName) -> list[dict[str, object]]:
        """For each index in the resolution order: what it contributed, what was hidden, why."""
        steps: list[dict[str, object]] = []
        seen: set[str] = set()
        private_hit: str | None = None
        for index in self.resolution_order(name):
            step: dict[str, object] = {
                "index": index.name,
                "type": self.configs[index.name].kind.value,
            }
            try:
                if isinstance(index, PrivateIndex):
                    page = await index.own_page(project)
                else:
                    page = await index.served_page(project)
            except ProjectNotFoundError:
                page = None
            except UpstreamError as exc:
                page, step["error"] = None, str(exc)
            files = [d.filename for d in page.files] if page else []
            hide = page and isinstance(index, MirrorIndex) and private_hit
            if hide and not self._whitelisted(name, project):
                step.update(
                    files=[],
                    hidden=files,
                    reason=(
                        f"'{project}' is hosted privately in {private_hit}; mirror files are "
                        f"hidden (dependency-confusion protection) unless whitelisted"
                    ),
                )
                steps.append(step)
                continue
            if page and isinstance(index, PrivateIndex):
                private_hit = private_hit or index.name
            shadowed = [f for f in files if f in seen]
            step["files"] = [f for f in files if f not in seen]
            step["hidden"] = shadowed
            if shadowed:
                step["reason"] = "an index earlier in the order lists the same file names"
            seen.update(files)
            steps.append(step)
        return steps

    async def view(self, name: str, project: NormalizedName) -> ProjectPage:
        return _merge(await self.view_parts(name, project))

    async def render(
        self, name: str, project: NormalizedName, fmt: Format, url_prefix: str
    ) -> Rendered:
        parts = await self.view_parts(name, project)
        key = (name, project, fmt, url_prefix)
        hit = self._rendered.get(key)
        if hit is not None and _same(hit[0], parts):
            self._rendered.move_to_end(key)
            return hit[1]
        page = _merge(parts)
        body = render_page(page, fmt, url_prefix)
        if len(body) < _INLINE_LIMIT:  # cheaper than a hop to the thread pool
            rendered = _make_rendered(body, page.last_serial)
        else:
            loop = asyncio.get_running_loop()
            rendered = await loop.run_in_executor(None, _make_rendered, body, page.last_serial)
        self._rendered[key] = (parts, rendered)
        while len(self._rendered) > _RENDER_CACHE_SIZE:
            self._rendered.popitem(last=False)
        return rendered

    async def _list_parts(self, name: str) -> tuple[tuple[str, ...], ...]:
        parts: list[tuple[str, ...]] = []
        for index in self.resolution_order(name):
            if isinstance(index, PrivateIndex):
                parts.append(await index.own_projects())
            else:
                parts.append((await index.project_list()).names)
        return tuple(parts)

    async def project_list(self, name: str) -> ProjectList:
        return _merge_names(await self._list_parts(name))

    async def render_list(self, name: str, fmt: Format) -> Rendered:
        """The root page; rendered again only when a part changed (a mirror's list is large)."""
        parts = await self._list_parts(name)
        key = (name, "", fmt, "")
        hit = self._rendered.get(key)
        if hit is not None and _same(hit[0], parts):
            return hit[1]
        projects = _merge_names(parts)
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, render_list, projects, fmt)
        rendered = await loop.run_in_executor(None, _make_rendered, body, projects.last_serial)
        self._rendered[key] = (parts, rendered)
        return rendered

    async def close(self) -> None:
        for index in self.indexes.values():
            if isinstance(index, MirrorIndex):
                await index.close()


def _merge_names(parts: tuple[tuple[str, ...], ...]) -> ProjectList:
    """Every name once, in resolution order."""
    names: dict[str, None] = {}
    for part in parts:
        names.update(dict.fromkeys(part))
    return ProjectList(names=tuple(names))


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Identity, not equality: a page object is replaced whenever its content may change."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _merge(parts: tuple[ProjectPage, ...]) -> ProjectPage:
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
