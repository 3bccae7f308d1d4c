"""X-Forwarded-Proto/-Host/-For, believed only from `server.trusted_proxies`."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

#: the public scheme, set on the original request too: aiohttp prepares the response with it
PUBLIC_SCHEME = web.RequestKey("wheelwell.public_scheme", str)
#: the client's address behind the proxies, for the access log (it is given the original request)
CLIENT_ADDRESS = web.RequestKey("wheelwell.client_address", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted(address: str | None, networks: tuple[Network, ...]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def _first(value: str | None) -> str:
    """The first of a comma list: a proxy chain appends, the front one is the client's."""
    return (value or "").split(",")[0].strip()


def client_address(peer: str | None, forwarded_for: str, networks: tuple[Network, ...]) -> str:
    """The rightmost address in peer + X-Forwarded-For that is not a trusted proxy."""
    chain = [a.strip() for a in forwarded_for.split(",") if a.strip()]
    address = peer or ""
    while chain and _trusted(address, networks):
        address = chain.pop()
    return address


def _host_ok(host: str) -> bool:
    return bool(host) and all(c.isalnum() or c in ".-:[]_" for c in host)


def forwarded_middleware(trusted_proxies: Iterable[str]) -> Middleware:
    """A middleware that rewrites scheme, host and remote from a trusted proxy's headers."""
    networks = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies)

    @web.middleware
    async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not networks or not _trusted(request.remote, networks):
            return await handler(request)
        changes: dict[str, Any] = {}
        proto = _first(request.headers.get("X-Forwarded-Proto")).lower()
        if proto in ("http", "https"):
            changes["scheme"] = proto
            request[PUBLIC_SCHEME] = proto
        host = _first(request.headers.get("X-Forwarded-Host"))
        if _host_ok(host):
            changes["host"] = host
        forwarded_for = request.headers.get("X-Forwarded-For", "")
        if forwarded_for:
            changes["remote"] = client_address(request.remote, forwarded_for, networks)
            request[CLIENT_ADDRESS] = changes["remote"]
        if not changes:
            return await handler(request)
        clone = request.clone(**changes)
        try:
            return await handler(clone)
        finally:
            for key, value in clone.items():  # the request id, for the access log
                request[key] = value

    return forwarded
