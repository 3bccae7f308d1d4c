"""Simple API handlers (PEP 503/691): negotiate, look up the rendered bytes, answer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import BinaryIO

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from proxy.indexes.registry import Rendered, RenderedList
from proxy.model import normalize
from proxy.simple_api import Format, negotiate
from proxy.web import keys
from proxy.web.common import index_name

PAGE_CACHE_CONTROL = "max-age=60, public"


def _headers(
    request: web.Request, etag: str, serial: int | None, gzip_ok: bool
) -> tuple[dict[str, str], bool]:
    """The headers of a page or list answer, and whether it is a 304."""
    etag = etag[:-1] + '-gz"' if gzip_ok else etag
    headers = {
        "Vary": "Accept, Accept-Encoding",
        "ETag": etag,
        "Cache-Control": PAGE_CACHE_CONTROL,
    }
    if serial is not None:
        headers["X-PyPI-Last-Serial"] = str(serial)
    if_none_match = request.headers.get("If-None-Match", "")
    return headers, bool(if_none_match) and (if_none_match.strip() == "*" or etag in if_none_match)


def _content_type(fmt: Format) -> str:
    return fmt.value if fmt is Format.JSON else fmt.value + "; charset=utf-8"


def _respond(request: web.Request, rendered: Rendered, fmt: Format) -> web.Response:
    gzip_ok = rendered.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", "")
    headers, not_modified = _headers(request, rendered.etag, rendered.serial, gzip_ok)
    if not_modified:
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = _content_type(fmt)
    if gzip_ok:
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=rendered.gzipped, headers=headers)
    return web.Response(body=rendered.body, headers=headers)


class _FileBody(web.StreamResponse):
    """A body sent from an open file with sendfile; the file is opened before any await."""

    def __init__(self, file: BinaryIO, size: int, headers: dict[str, str]) -> None:
        super().__init__(headers=headers)
        self._file = file
        self._size = size

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        try:
            self.content_length = self._size
            writer = await super().prepare(request)
            if request.method != "HEAD" and self._size:
                transport = request.transport
                if transport is None:
                    raise ConnectionResetError("connection lost")
                await asyncio.get_running_loop().sendfile(transport, self._file, 0, self._size)
            return writer
        finally:
            self._file.close()


def _respond_list(request: web.Request, rendered: RenderedList, fmt: Format) -> web.StreamResponse:
    """A rendered root page from its file: the same headers, 304 and gzip as a project page."""
    gzip_ok = rendered.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", "")
    headers, not_modified = _headers(request, rendered.etag, rendered.serial, gzip_ok)
    if not_modified:
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = _content_type(fmt)
    path: Path = rendered.path
    size = rendered.size
    if gzip_ok and rendered.gzipped is not None:
        headers["Content-Encoding"] = "gzip"
        path, size = rendered.gzipped, rendered.gzipped_size
    return _FileBody(path.open("rb"), size, headers)  # open now: replaced files linger briefly


def simple_root(request: web.Request) -> str:
    info = request.match_info
    return f"/{info['user']}/{info['index']}/+simple/" if "user" in info else "/simple/"


async def project_page(request: web.Request) -> web.StreamResponse:
    name = index_name(request)
    raw = request.match_info["project"]
    project = normalize(raw)
    if raw != project or not request.path.endswith("/"):
        location = request.rel_url.with_path(f"{simple_root(request)}{project}/")
        raise web.HTTPMovedPermanently(location=str(location))
    registry = request.app[keys.INDEXES]
    registry.get(name)
    fmt = negotiate(request.headers.get("Accept"), request.query.get("format"))
    prefix = "../" * (request.path.count("/") - 1)
    rendered = await registry.render(name, project, fmt, prefix)
    return _respond(request, rendered, fmt)


async def project_list(request: web.Request) -> web.StreamResponse:
    name = index_name(request)
    if not request.path.endswith("/"):
        location = request.rel_url.with_path(simple_root(request))
        raise web.HTTPMovedPermanently(location=str(location))
    fmt = negotiate(request.headers.get("Accept"), request.query.get("format"))
    registry = request.app[keys.INDEXES]
    registry.get(name)
    rendered = await registry.render_list(name, fmt)
    return _respond_list(request, rendered, fmt)


def add_routes(app: web.Application) -> None:
    for label, prefix in (("", "/{user}/{index}/+simple"), ("-default", "/simple")):
        app.router.add_get(prefix + "/", project_list, name=f"simple-list{label}")
        app.router.add_get(prefix, project_list, name=f"simple-list-noslash{label}")
        app.router.add_get(prefix + "/{project}/", project_page, name=f"simple-project{label}")
        app.router.add_get(prefix + "/{project}", project_page, name=f"simple-project-ns{label}")
