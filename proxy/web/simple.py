"""Simple API handlers (PEP 503/691): negotiate, look up the rendered bytes, answer."""

from __future__ import annotations

from aiohttp import web

from proxy.indexes.registry import Rendered
from proxy.model import normalize
from proxy.simple_api import Format, negotiate
from proxy.web import keys
from proxy.web.common import index_name

PAGE_CACHE_CONTROL = "max-age=60, public"


def _respond(request: web.Request, rendered: Rendered, fmt: Format) -> web.Response:
    gzip_ok = rendered.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", "")
    etag = rendered.etag[:-1] + '-gz"' if gzip_ok else rendered.etag
    headers = {
        "Vary": "Accept, Accept-Encoding",
        "ETag": etag,
        "Cache-Control": PAGE_CACHE_CONTROL,
    }
    if rendered.serial is not None:
        headers["X-PyPI-Last-Serial"] = str(rendered.serial)
    if_none_match = request.headers.get("If-None-Match", "")
    if if_none_match and (if_none_match.strip() == "*" or etag in if_none_match):
        return web.Response(status=304, headers=headers)
    content_type = fmt.value
    if fmt is not Format.JSON:
        content_type += "; charset=utf-8"
    headers["Content-Type"] = content_type
    if gzip_ok:
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=rendered.gzipped, headers=headers)
    return web.Response(body=rendered.body, headers=headers)


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
    return _respond(request, rendered, fmt)


def add_routes(app: web.Application) -> None:
    for label, prefix in (("", "/{user}/{index}/+simple"), ("-default", "/simple")):
        app.router.add_get(prefix + "/", project_list, name=f"simple-list{label}")
        app.router.add_get(prefix, project_list, name=f"simple-list-noslash{label}")
        app.router.add_get(prefix + "/{project}/", project_page, name=f"simple-project{label}")
        app.router.add_get(prefix + "/{project}", project_page, name=f"simple-project-ns{label}")
