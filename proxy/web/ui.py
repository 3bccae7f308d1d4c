"""Server-rendered HTML pages for people: the same URLs answer JSON to API clients."""

from __future__ import annotations

import importlib.resources
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web
from packaging.version import InvalidVersion, Version

from proxy.accept import choose
from proxy.config import IndexKind
from proxy.hosted.private import HostedFile
from proxy.indexes.registry import Resolution, merge_pages
from proxy.model import Distribution, NormalizedName, version_of
from proxy.web import keys

_RECENT_MIRROR_PROJECTS = 200
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_HTML_TYPES = ("text/html", "application/xhtml+xml")
#: JSON first: a tie (`*/*`, no header) goes to API clients
_UI_OFFERS = ("application/json", *_HTML_TYPES)


def create_templates() -> jinja2.Environment:
    """One environment per app, autoescaping everything: page data comes from uploaders."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("proxy", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["size"] = render_size
    env.filters["when"] = render_time
    return env


#: the UI's own files, served from the package so the CSP needs no 'unsafe-inline'
_STATIC_TYPES = {"wheelwell.css": "text/css", "favicon.svg": "image/svg+xml"}


async def static_file(request: web.Request) -> web.Response:
    """`/+static/NAME`: one of the few files the pages link to."""
    name = request.match_info["name"]
    if name not in _STATIC_TYPES:
        raise web.HTTPNotFound()
    body = (importlib.resources.files("proxy") / "static" / name).read_bytes()
    headers = {"Cache-Control": "max-age=3600, public"}
    return web.Response(body=body, content_type=_STATIC_TYPES[name], headers=headers)


def add_routes(app: web.Application) -> None:
    """Before the `/{user}/{index}` routes, which would take `/+static/NAME` for an index."""
    app.router.add_get("/+static/{name}", static_file, name="static")


def setup(app: web.Application) -> None:
    """Give the app its template environment; the pages share the JSON handlers' routes."""
    app[keys.TEMPLATES] = create_templates()


def wants_html(request: web.Request) -> bool:
    """A browser: it names `text/html` above JSON (JSON is offered first, so curl gets JSON)."""
    forced = request.query.get("format")
    if forced in ("html", "json"):
        return forced == "html"
    return choose(request.headers.get("Accept"), _UI_OFFERS) in _HTML_TYPES


def render_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def render_time(value: float | str | None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value[:19].replace("T", " ")
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    env = request.app[keys.TEMPLATES]
    body = env.get_template(template).render(base_url=_base_url(request), **context)
    return web.Response(
        text=body, status=status, content_type="text/html", headers={"Vary": "Accept"}
    )


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def render_snippets(request: web.Request, index: str) -> dict[str, str]:
    """Copy-paste client configuration for `index`, using the host the browser used."""
    base = _base_url(request)
    simple = f"{base}/{index}/+simple/"
    trusted = f" --trusted-host {request.url.host}" if request.scheme == "http" else ""
    conf = f"[global]\nindex-url = {simple}\n"
    if request.scheme == "http":
        conf += f"trusted-host = {request.url.host}\n"
    return {
        "pip.conf": conf,
        "pip": f"pip install --index-url {simple}{trusted} PROJECT",
        "uv": f"uv pip install --index-url {simple} PROJECT",
        "uv.toml": f'[[index]]\nurl = "{simple}"\ndefault = true\n',
        "twine": f"twine upload --repository-url {base}/{index}/ dist/*",
    }


# ---- home and status -----------------------------------------------------------------------


async def _index_rows(request: web.Request, indexes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    registry = request.app[keys.INDEXES]
    rows = []
    for data in indexes:
        index = registry.indexes.get(data["name"])
        count = 0 if index is None else len(await index.shown_names())
        what = "cached page" if index is not None and index.kind is IndexKind.MIRROR else "project"
        rows.append({**data, "count": count, "count_of": what + ("" if count == 1 else "s")})
    return rows


async def render_home(request: web.Request, data: dict[str, Any]) -> web.Response:
    """The front page: indexes, search, and client snippets for `?index=` (JSON data given)."""
    names = [i["name"] for i in data["indexes"]]
    chosen = request.query.get("index", "")
    if chosen not in names:
        chosen = "root/public" if "root/public" in names else data["default_index"]
    rows = await _index_rows(request, data["indexes"])
    snippets = render_snippets(request, chosen)
    return _page(request, "home.html", data=data, rows=rows, chosen=chosen, snippets=snippets)


def render_status(request: web.Request, data: dict[str, Any]) -> web.Response:
    """`/+status` for people: the same data as the JSON."""
    return _page(request, "status.html", data=data)


def render_search(
    request: web.Request, query: str, results: list[dict[str, Any]], status: int = 200
) -> web.Response:
    """Search results; each result has name, index, kind, version, summary and url."""
    return _page(request, "search.html", status=status, query=query, results=results)


# ---- index and project pages ---------------------------------------------------------------


async def render_index(
    request: web.Request, name: str, data: dict[str, Any], hooks: dict[str, Any] | None = None
) -> web.Response:
    """An index: private projects first, then the mirror pages recently asked for; its hooks'
    queues and last attempts for whom may change it (`hooks`, from web/hooks.py)."""
    listed = await request.app[keys.INDEXES].listing(name, _RECENT_MIRROR_PROJECTS)
    private = [(p.project, p.index) for p in listed if p.kind is IndexKind.PRIVATE]
    mirrored = [(p.project, p.index) for p in listed if p.kind is IndexKind.MIRROR]
    snippets = render_snippets(request, name)
    return _page(
        request,
        "index.html",
        name=name,
        cfg=data,
        private=private,
        mirrored=mirrored,
        snippets=snippets,
        hooks=_hook_rows(hooks),
    )


def _hook_rows(hooks: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Webhooks and the Jenkins trigger as one list of rows for the page."""
    if hooks is None:
        return []
    rows = [{**h, "kind": "webhook"} for h in hooks["webhooks"]]
    if hooks["jenkins"] is not None:
        rows.append({**hooks["jenkins"], "kind": "Jenkins", "events": ["upload (sdists)"]})
    return rows


def _sort_key(version: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def _releases(files: tuple[Distribution, ...]) -> list[tuple[str, list[Distribution]]]:
    by_version: dict[str, list[Distribution]] = {}
    for dist in files:
        by_version.setdefault(version_of(dist.filename) or "?", []).append(dist)
    ordered = sorted(by_version, key=_sort_key, reverse=True)
    return [(v, by_version[v]) for v in ordered]


def _explain_line(resolution: Resolution) -> list[str]:
    """`+explain` in a sentence per index that contributed, hid or failed."""
    lines = []
    for step in resolution.steps:
        files, hidden = len(step.files), len(step.hidden)
        if not files and not hidden and step.error is None:
            continue
        line = f"{step.index} ({step.kind.value}): {files} file{'' if files == 1 else 's'}"
        if hidden:
            line += f", {hidden} hidden: {resolution.reason(step) or ''}"
        if step.error is not None:
            line += f", error: {step.error}"
        lines.append(line)
    return lines


async def render_project(request: web.Request, name: str, project: NormalizedName) -> web.Response:
    """A project in an index's merged view: releases newest first, description, provenance."""
    registry = request.app[keys.INDEXES]
    resolution = await registry.resolve(name, project, fetch_hidden=True)  # explain lists all
    page = merge_pages(resolution.pages())
    releases = _releases(page.files)
    hosted = await registry.hosted_files(name, project)
    latest = _latest(hosted)
    description = ""
    if latest is not None:
        renderer = request.app[keys.DESCRIPTIONS]  # off the loop, bounded in size and time
        description = await renderer.render(latest.description, latest.description_type)
    explain = _explain_line(resolution)
    simple = f"{_base_url(request)}/{name}/+simple/"
    found = await request.app[keys.TOXRESULTS].summaries(hosted)
    tests = {
        f"{filename}:{sha}": [s.to_json(index) for s in summaries]
        for (index, filename, sha), summaries in found.items()
    }
    return _page(
        request,
        "project.html",
        name=name,
        project=project,
        releases=releases,
        latest=latest,
        description=description,
        explain=explain,
        tests=tests,
        install=f"pip install --index-url {simple} {project}",
    )


def _latest(hosted: list[HostedFile]) -> HostedFile | None:
    """The newest hosted release's file: its summary and description describe the project."""
    if not hosted:
        return None
    return max(hosted, key=lambda f: (_sort_key(f.version), f.uploaded))
