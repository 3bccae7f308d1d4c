"""A hook receiver on 127.0.0.1: plays a webhook endpoint and Jenkins, records every request.

Knobs: `fail` (answer this status to the next N requests of a path), `hang` (never answer a
path until released), and Jenkins's crumb issuer (`crumb`, None: CSRF protection off).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, Any] = field(default_factory=dict)  #: multipart fields (files as bytes)


class Receiver:
    def __init__(self, crumb: tuple[str, str] | None = None) -> None:
        self.requests: list[Received] = []
        self.crumb = crumb
        self.crumb_requests = 0
        self.hung = 0  #: requests that hung
        self.failing: dict[str, list[int]] = {}
        self.hanging: dict[str, asyncio.Event] = {}
        self.arrived = asyncio.Condition()
        self.app = web.Application()
        self.app.router.add_get("/crumbIssuer/api/json", self._crumb)
        self.app.router.add_get("/ci/crumbIssuer/api/json", self._crumb)
        self.app.router.add_post("/{tail:.*}", self._post)

    def fail(self, path: str, *statuses: int) -> None:
        self.failing.setdefault(path, []).extend(statuses)

    def hang(self, path: str) -> asyncio.Event:
        """Requests to `path` hang, unrecorded, until the returned event is set (then get 504)."""
        self.hanging[path] = asyncio.Event()
        return self.hanging[path]

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, path: str, count: int, timeout: float = 30.0) -> list[Received]:  # noqa: ASYNC109
        """The first `count` requests to `path` (a generous deadline, not a timing claim)."""
        async with asyncio.timeout(timeout), self.arrived:
            await self.arrived.wait_for(lambda: len(self.at(path)) >= count)
        return self.at(path)

    async def _crumb(self, request: web.Request) -> web.Response:
        self.crumb_requests += 1
        if self.crumb is None:
            raise web.HTTPNotFound()
        field_name, value = self.crumb
        resp = web.json_response({"crumbRequestField": field_name, "crumb": value})
        resp.set_cookie("JSESSIONID.test", "session-1")
        return resp

    async def _post(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        hanging = self.hanging.get(path)
        if hanging is not None and not hanging.is_set():
            self.hung += 1
            await hanging.wait()
            return web.Response(status=504, text="hung")
        form: dict[str, Any] = {}
        body = b""
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, BodyPartReader) and part.name is not None:
                    data = bytes(await part.read())
                    form[part.name] = data if part.filename else data.decode()
        else:
            body = await request.read()
        async with self.arrived:
            self.requests.append(Received(path, dict(request.headers), body, form))
            self.arrived.notify_all()
        statuses = self.failing.get(path)
        if statuses:
            return web.Response(status=statuses.pop(0), text="receiver says no " + "x" * 3000)
        return web.Response(text="thanks")


def signature_ok(secret: str, received: Received) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received.headers.get("X-Wheelwell-Signature", ""))
