"""Small request helpers the handlers share: validated path parameters."""

from __future__ import annotations

from aiohttp import web

from proxy.model import IndexName, parse_index_name
from proxy.web import keys


def index_name(request: web.Request) -> IndexName:
    """The `{user}/{index}` of the URL, or the configured default index for `/simple/…`."""
    info = request.match_info
    if "user" in info:
        return parse_index_name(info["user"], info["index"])
    return IndexName(request.app[keys.CONFIG].server.default_index)
