"""`GET /+search?q=…[&index=user/index]`: JSON for scripts, the UI's page for browsers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from aiohttp import web

from proxy.errors import InvalidInputError
from proxy.hosted.permissions import Operation
from proxy.hosted.search import HitKind, SearchHit
from proxy.web import authz, keys, ui

LIMIT = 50  #: results per query: enough to pick from, small enough to render at once
_MAX_QUERY = 200


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One project in one index, as the page and the JSON show it."""

    name: str
    index: str
    kind: HitKind
    version: str | None  #: the latest release (None for a mirror project not yet fetched)
    summary: str
    url: str


@dataclass(frozen=True, slots=True)
class SearchResults:
    """A query, its scope (None for every index) and its ranked results."""

    query: str
    index: str | None
    results: tuple[SearchResult, ...]


def _result(hit: SearchHit) -> SearchResult:
    return SearchResult(
        name=hit.project,
        index=hit.index,
        kind=hit.kind,
        version=hit.version,
        summary=hit.summary,
        url=f"/{hit.index}/{hit.project}",
    )


async def search_results(request: web.Request) -> SearchResults:
    """Run the request's query; shared by the JSON answer and the UI's HTML page."""
    query = request.query.get("q", "").strip()
    if len(query) > _MAX_QUERY:
        raise InvalidInputError(f"search query longer than {_MAX_QUERY} characters")
    index = request.query.get("index", "").strip().strip("/") or None
    registry = request.app[keys.INDEXES]
    scope: list[str]
    if index is not None:
        authz.check(request, Operation.READ, registry.config(index))
        scope = [i.name for i in registry.resolution_order(index)]
    else:  # indexes deleted since stay out of the answer, and those the caller may not read
        scope = [c.name for c in authz.readable_configs(request) if c.name in registry.indexes]
    shadow = index is not None  # within one index, its own project hides a base's
    hits = await request.app[keys.SEARCH].search(query, scope, LIMIT, shadow) if query else []
    return SearchResults(query, index, tuple(_result(h) for h in hits))


async def search(request: web.Request) -> web.StreamResponse:
    found = await search_results(request)
    results = [dataclasses.asdict(r) for r in found.results]
    if ui.wants_html(request):
        return ui.render_search(request, found.query, results)
    return web.json_response({"query": found.query, "index": found.index, "results": results})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/+search", search, name="search")
