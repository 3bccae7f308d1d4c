"""A read replica relays writes to its primary and answers once it has the change itself.

The request goes to the primary as it came (method, path, query, credentials, body streamed, not
buffered); the primary authorizes and commits it and says in `X-Wheelwell-Serial` which serial
its state is at. The replica waits until it has applied that serial, so a client that uploads
through a replica and then installs from it sees its upload (read-your-writes). A primary that
cannot be reached, or a change that does not arrive within `replication.write_wait`, is a 503.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from proxy.cluster.protocol import SERIAL_HEADER
from proxy.errors import ReplicaWriteError
from proxy.model import mask_url
from proxy.web import keys

log = logging.getLogger(__name__)

#: request headers that belong to one hop, never forwarded
_HOP = frozenset(
    h.lower()
    for h in (
        "Host",
        "Connection",
        "Keep-Alive",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Content-Length",
    )
)
#: a primary's answer to a write is a small JSON or text body; more is not an answer to relay
MAX_ANSWER = 4 * 1024**2
CHUNK = 256 * 1024


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK):
        yield chunk


async def relay(request: web.Request) -> web.Response:
    """Send the write to the primary; answer with its response once the change is here."""
    app = request.app
    rep = app[keys.CONFIG].replication
    follower = app[keys.FOLLOWER]
    primary = mask_url(rep.primary_url)
    url = rep.primary_url.rstrip("/") + request.rel_url.path_qs
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    headers["X-Forwarded-For"] = request.remote or ""
    body = _body(request) if request.can_read_body else None
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=120)
    try:
        async with follower.session.request(
            _method(request),
            url,
            headers=headers,
            data=body,
            timeout=timeout,
            allow_redirects=False,
        ) as resp:
            answer = await resp.content.read(MAX_ANSWER + 1)
            if len(answer) > MAX_ANSWER:
                raise ReplicaWriteError(primary, "the primary's answer is too large to relay")
            status, out_headers = resp.status, resp.headers.copy()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise ReplicaWriteError(
            primary, f"the primary cannot be reached ({exc or type(exc).__name__})"
        ) from exc
    serial = _serial(out_headers.get(SERIAL_HEADER))
    db = app[keys.DB]
    if serial is not None and serial > db.serial:
        follower.expect(serial)
        if not await db.wait_beyond(serial - 1, rep.write_wait):
            raise ReplicaWriteError(
                primary,
                f"the primary took the write (serial {serial}) but it has not arrived here "
                f"within {rep.write_wait:g} s (replication.write_wait); it will",
            )
    kept = {
        k: v
        for k, v in out_headers.items()
        if k.lower() in {"content-type", "www-authenticate", "retry-after", "location", "allow"}
    }
    return web.Response(status=status, body=answer, headers=kept)


def _method(request: web.Request) -> str:
    """devpi's PUSH goes on as the POST devpi takes the same way: a kept-alive connection to the
    primary could not carry it (proxy/web/pushmethod.py)."""
    return "POST" if request.method == "PUSH" else request.method


def _serial(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None
