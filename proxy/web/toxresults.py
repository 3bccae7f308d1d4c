"""Tox results over HTTP: devpi's POST of a report to a file's URL, and reading them back.

`devpi test` posts tox's JSON report to the release file's URL (the `href` of its `+links`)
and `wheelwell test` does the same; `GET /{user}/{index}/{project}/{version}` lists each file's
results (devpi's `+links` of rel `toxresult` read the same rows, proxy/web/devpi.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy.errors import InvalidInputError, NotFoundError
from proxy.hosted.permissions import Operation
from proxy.hosted.private import HostedFile
from proxy.hosted.toxresults import ToxSummary, result_path
from proxy.model import check_file_key, check_filename, normalize
from proxy.web import authz, keys, ui
from proxy.web.common import index_name, read_json_value


async def post_toxresult(request: web.Request) -> web.Response:
    """`POST /{user}/{index}/+f/{sha256}/{filename}` with tox's JSON report (devpi test's)."""
    name = index_name(request)
    key = check_file_key(request.match_info["key"])
    filename = check_filename(request.match_info["filename"])
    registry = request.app[keys.INDEXES]
    authz.check(request, Operation.READ, registry.config(name))  # the file must be readable
    data = await read_json_value(request)
    if data is None:
        raise InvalidInputError("a tox report (tox --result-json) is required as the body")
    who = request.get(keys.IDENTITY)
    n = await request.app[keys.TOXRESULTS].add(
        registry.private(name), key, filename, data, who.user if who is not None else None
    )
    path = result_path(name, key, filename, n)
    return web.json_response({"type": "toxresultpath", "result": path, "n": n})


async def get_toxresult(request: web.Request) -> web.Response:
    """One posted report, as it was posted (devpi list -f reads it)."""
    name = index_name(request)
    key = check_file_key(request.match_info["key"])
    filename = check_filename(request.match_info["filename"])
    try:
        n = int(request.match_info["n"])
    except ValueError as exc:
        raise InvalidInputError("a tox result's number is an integer") from exc
    text = await request.app[keys.TOXRESULTS].report(name, key, filename, n)
    return web.Response(text=text, content_type="application/json")


def file_json(f: HostedFile, summaries: list[ToxSummary]) -> dict[str, Any]:
    """A hosted file as wheelwell's project and release JSON list it."""
    return {
        "filename": f.filename,
        "url": f"/{f.index}/+f/{f.sha256}/{f.filename}",
        "index": f.index,
        "sha256": f.sha256,
        "size": f.size,
        "yanked": f.yanked,
        "yanked_reason": f.yanked_reason,
        "requires_python": f.requires_python,
        "uploaded": f.uploaded,
        "uploader": f.uploader,
        "summary": f.summary,
        "toxresults": [s.to_json(f.index) for s in summaries],
    }


async def get_release(request: web.Request) -> web.StreamResponse:
    """`GET /{user}/{index}/{project}/{version}`: the release's hosted files and their tests."""
    name = index_name(request)
    project = normalize(request.match_info["project"])
    version = request.match_info["version"]
    if ui.wants_html(request):
        raise web.HTTPFound(f"/{name}/{project}#v{version}")
    hosted = await request.app[keys.INDEXES].hosted_files(name, project)
    files = [f for f in hosted if f.version == version]
    if not files:
        raise NotFoundError(f"release {project} {version} not found in index '{name}'")
    found = await request.app[keys.TOXRESULTS].summaries(files)
    return web.json_response(
        {
            "name": project,
            "version": version,
            "index": name,
            "files": [file_json(f, found.get((f.index, f.filename, f.sha256), [])) for f in files],
        }
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/{user}/{index}/+f/{key}/{filename}", post_toxresult, name="toxresult-post")
    r.add_get(
        "/{user}/{index}/+f/{key}/{filename}/+toxresults/{n}", get_toxresult, name="toxresult"
    )
    r.add_get("/{user}/{index}/{project}/{version}", get_release, name="release-get")
