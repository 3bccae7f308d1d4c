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
from dataclasses import dataclass

from proxy.config import Config
from proxy.errors import IndexNotFoundError, ProjectNotFoundError, UpstreamError
from proxy.mirror import MirrorIndex
from proxy.model import IndexName, NormalizedName, ProjectList, ProjectPage
from proxy.private import PrivateIndex
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
    """All indexes by name, their resolution orders, and a cache of rendered pages."""

    def __init__(self, config: Config, indexes: dict[IndexName, Index]) -> None:
        self.config = config
        self.indexes = indexes
        self._orders: dict[IndexName, tuple[Index, ...]] = {}
        self._rendered: OrderedDict[
            tuple[str, str, Format, str], tuple[tuple[object, ...], Rendered]
        ]
        self._rendered = OrderedDict()

    def get(self, name: str) -> Index:
        index = self.indexes.get(IndexName(name))
        if index is None:
            raise IndexNotFoundError(name)
        return index

    def resolution_order(self, name: str) -> tuple[Index, ...]:
        cached = self._orders.get(IndexName(name))
        if cached is not None:
            return cached
        start = self.get(name)
        seen: dict[str, Index] = {}
        queue: deque[Index] = deque([start])
        while queue:
            index = queue.popleft()
            if index.name in seen:
                continue
            seen[index.name] = index
            cfg = self.config.index(index.name)
            for base in cfg.bases if cfg else ():
                if base in self.indexes:
                    queue.append(self.indexes[IndexName(base)])
        ordered: list[Index] = [i for i in seen.values() if not isinstance(i, MirrorIndex)]
        ordered += [i for i in seen.values() if isinstance(i, MirrorIndex)]
        result = tuple(ordered)
        self._orders[IndexName(name)] = result
        return result

    def _whitelisted(self, name: str, project: NormalizedName) -> bool:
        cfg = self.config.index(name)
        whitelist = cfg.mirror_whitelist if cfg else ()
        return "*" in whitelist or project in whitelist

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
        names: dict[str, None] = {}
        for part in await self._list_parts(name):
            names.update(dict.fromkeys(part))
        return ProjectList(names=tuple(names))

    async def render_list(self, name: str, fmt: Format) -> Rendered:
        """The root page; rendered again only when a part changed (a mirror's list is large)."""
        parts = await self._list_parts(name)
        key = (name, "", fmt, "")
        hit = self._rendered.get(key)
        if hit is not None and _same(hit[0], parts):
            return hit[1]
        projects = await self.project_list(name)
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, render_list, projects, fmt)
        rendered = await loop.run_in_executor(None, _make_rendered, body, projects.last_serial)
        self._rendered[key] = (parts, rendered)
        return rendered

    async def close(self) -> None:
        for index in self.indexes.values():
            if isinstance(index, MirrorIndex):
                await index.close()


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
