"""XML-RPC `search` at `POST /{user}/{index}/` (text/xml): what `pip search --index` calls.

The body is parsed by defusedxml's expat parser with DTDs forbidden, so entity expansion
("billion laughs") and external entities never run; any such body is refused with 400.
"""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Mapping, Sequence
from typing import Any
from xml.parsers.expat import ExpatError

from aiohttp import web
from defusedxml import DefusedXmlException
from defusedxml.xmlrpc import DefusedExpatParser

from proxy.errors import InvalidInputError
from proxy.hosted.search import SearchHit
from proxy.model import IndexName
from proxy.web import keys

LIMIT = 100  #: hits per call; pip prints them all
_METHOD_NOT_FOUND = -32601  #: the codes of the XML-RPC "specification for fault code interop"
_INVALID_PARAMS = -32602


def parse_call(body: bytes) -> tuple[str, tuple[Any, ...]]:
    """(method, params) of a methodCall; InvalidInputError for anything unsafe or malformed."""
    unmarshaller = xmlrpc.client.Unmarshaller(use_datetime=False, use_builtin_types=True)
    parser = DefusedExpatParser(unmarshaller, forbid_dtd=True)
    try:
        parser.feed(body)
        parser.close()
        params = unmarshaller.close()
    except DefusedXmlException as exc:
        raise InvalidInputError(f"XML-RPC body refused: {exc}") from exc
    except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError) as exc:
        raise InvalidInputError(f"malformed XML-RPC body: {exc}") from exc
    method = unmarshaller.getmethodname()
    if not method:
        raise InvalidInputError("XML-RPC body is not a methodCall")
    return method, params


def parse_search_params(params: Sequence[Any]) -> tuple[dict[str, list[str]], str]:
    """PyPI's `search(spec, operator="and")`: spec maps a field to a term or a list of terms."""
    if not params or len(params) > 2 or not isinstance(params[0], Mapping):
        raise ValueError("search takes (spec: struct, operator: string)")
    operator = params[1] if len(params) == 2 else "and"
    if not isinstance(operator, str) or operator.lower() not in ("and", "or"):
        raise ValueError(f"operator must be 'and' or 'or', not {operator!r}")
    fields: dict[str, list[str]] = {}
    for field, value in params[0].items():
        terms = value if isinstance(value, list) else [value]
        if not all(isinstance(t, str) for t in terms):
            raise ValueError(f"terms of {field!r} must be strings")
        fields[str(field)] = terms
    return fields, operator


def render_hits(hits: Sequence[SearchHit]) -> tuple[list[dict[str, Any]], ...]:
    """pip reads name, summary and version (and compares versions, so every hit has one)."""
    structs = [
        {"name": h.project, "summary": h.summary, "version": h.version, "_pypi_ordering": 0}
        for h in hits
        if h.version is not None
    ]
    return (structs,)


def _fault(code: int, message: str) -> web.Response:
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(code, message), methodresponse=True)
    return web.Response(text=body, content_type="text/xml")


async def handle(request: web.Request, name: IndexName) -> web.Response:
    """Answer one XML-RPC call on index `name`; only `search` is offered."""
    method, params = parse_call(await request.read())
    if method != "search":
        return _fault(_METHOD_NOT_FOUND, f"method {method!r} is not offered; only 'search' is")
    try:
        fields, operator = parse_search_params(params)
    except ValueError as exc:
        return _fault(_INVALID_PARAMS, str(exc))
    scope = [i.name for i in request.app[keys.INDEXES].resolution_order(name)]
    hits = await request.app[keys.SEARCH].search_fields(fields, operator, scope, LIMIT, True)
    body = xmlrpc.client.dumps(render_hits(hits), methodresponse=True, allow_none=True)
    return web.Response(text=body, content_type="text/xml")
