"""Small request helpers the handlers share: validated path parameters."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aiohttp import web

from proxy.errors import InvalidInputError, UnauthorizedError
from proxy.hosted.auth import Identity
from proxy.model import IndexName, parse_index_name
from proxy.web import keys


def index_name(request: web.Request) -> IndexName:
    """The `{user}/{index}` of the URL, or the configured default index for `/simple/…`."""
    info = request.match_info
    if "user" in info:
        return parse_index_name(info["user"], info["index"])
    return IndexName(request.app[keys.CONFIG].server.default_index)


async def identify(request: web.Request) -> Identity:
    """Who is writing: Basic credentials (a password, or `__token__` and a token)."""
    header = request.headers.get("Authorization")
    if not header:
        raise UnauthorizedError("authentication required")
    scheme, _, encoded = header.partition(" ")
    try:
        if scheme.lower() != "basic":
            raise ValueError(scheme)
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        if not sep:
            raise ValueError("no colon")
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise UnauthorizedError("malformed Authorization header (Basic expected)") from exc
    return await request.app[keys.AUTH].authenticate(user, password, client=request.remote)


async def read_json(request: web.Request) -> dict[str, Any]:
    """A JSON object body, or InvalidInputError naming what is wrong."""
    if not request.can_read_body:
        return {}
    try:
        data = json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError("body must be a JSON object")
    return data
