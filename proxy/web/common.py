"""Small request helpers the handlers share: validated path parameters."""

from __future__ import annotations

import base64
import binascii
import json
import math
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


DEVPI_AUTH_HEADER = "X-Devpi-Auth"  #: devpi-client's base64 `user:token`; Basic may be a proxy's


def decode_devpi_auth(value: str) -> tuple[str, str]:
    """`X-Devpi-Auth` → (user, secret); UnauthorizedError unless it is base64 `user:secret`."""
    try:
        user, sep, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise UnauthorizedError(f"malformed {DEVPI_AUTH_HEADER} header") from exc
    if not sep or not user:
        raise UnauthorizedError(f"malformed {DEVPI_AUTH_HEADER} header")
    return user, secret


def has_credentials(request: web.Request) -> bool:
    return DEVPI_AUTH_HEADER in request.headers or "Authorization" in request.headers


async def identify(request: web.Request) -> Identity:
    """Who is writing: X-Devpi-Auth, or Basic (a password, or `__token__` and a token)."""
    devpi = request.headers.get(DEVPI_AUTH_HEADER)
    if devpi is not None:  # ahead of Basic, which devpi-client sends to a proxy in front
        user, secret = decode_devpi_auth(devpi)
        return await request.app[keys.AUTH].authenticate(user, secret, client=request.remote)
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


def _depth(data: object) -> int:
    """How deeply arrays and objects nest (iteratively: the parser already recursed once)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item)
    return deepest


def parse_json_body(body: bytes, *, max_depth: int = 32, max_number_length: int = 100) -> Any:
    """JSON within limits: nesting, number length, finite numbers; InvalidInputError otherwise."""

    def number(text: str) -> int | float:
        if len(text) > max_number_length:
            raise InvalidInputError(f"body has a number longer than {max_number_length} characters")
        value = float(text) if any(c in text for c in ".eE") else int(text)
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInputError(f"body has a number out of range: {text}")
        return value

    def constant(name: str) -> float:
        raise InvalidInputError(f"body has {name}, which is not JSON")

    try:
        data = json.loads(body, parse_int=number, parse_float=number, parse_constant=constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidInputError(f"body nests deeper than {max_depth} levels") from exc
    if _depth(data) > max_depth:
        raise InvalidInputError(f"body nests deeper than {max_depth} levels")
    return data


async def read_json_value(request: web.Request) -> Any:
    """Any JSON body within limits.json_*, or None when the request has none."""
    if not request.can_read_body:
        return None
    limits = request.app[keys.CONFIG].limits
    return parse_json_body(
        await request.read(),
        max_depth=limits.json_max_depth,
        max_number_length=limits.json_max_number_length,
    )


async def read_json(request: web.Request) -> dict[str, Any]:
    """A JSON object body within limits.json_*, or InvalidInputError naming what is wrong."""
    data = await read_json_value(request)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInputError("body must be a JSON object")
    return data
