"""devpi-client's `PUSH` method, which aiohttp's C parser (llhttp) refuses before any handler runs.

llhttp knows a fixed list of methods; aiohttp's pure-Python parser accepts any token. A
connection whose first bytes are `PUSH ` is parsed by the Python parser from its first byte on;
every other connection keeps the C parser, and pays one `startswith` on its first read. devpi-client
sends each `devpi push` as the first request of a new connection. A `PUSH` later on a kept-alive
connection still gets llhttp's 400: where one message ends inside a TCP read is known only to
the C parser, and guessing it would let a request body be taken for a request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.helpers import DEFAULT_CHUNK_SIZE
from aiohttp.http_parser import HttpRequestParserPy
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

try:  # the parser's queue bound is newer than the aiohttp versions pyproject allows
    from aiohttp.web_protocol import MAX_MSG_QUEUE_SIZE

    _QUEUE_BOUND: dict[str, Any] = {"max_msg_queue_size": MAX_MSG_QUEUE_SIZE}
except ImportError:  # pragma: no cover - older aiohttp
    _QUEUE_BOUND = {}

PUSH_OPENING = b"PUSH "


class PushAwareHandler(RequestHandler):
    """aiohttp's connection protocol, with the Python parser for a connection opening with PUSH."""

    __slots__ = ("_opening", "_parser_options")

    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        max_line_size: int = 8190,
        max_headers: int = 128,
        max_field_size: int = 8190,
        read_bufsize: int = DEFAULT_CHUNK_SIZE,
        auto_decompress: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            manager,
            loop=loop,
            max_line_size=max_line_size,
            max_headers=max_headers,
            max_field_size=max_field_size,
            read_bufsize=read_bufsize,
            auto_decompress=auto_decompress,
            **kwargs,
        )
        #: the connection's first bytes while fewer than len("PUSH "); None once decided
        self._opening: bytes | None = b""
        self._parser_options = (max_line_size, max_headers, max_field_size, auto_decompress)

    def data_received(self, data: bytes) -> None:
        if self._opening is None:
            super().data_received(data)
            return
        opening = self._opening + data
        if len(opening) < len(PUSH_OPENING) and PUSH_OPENING.startswith(opening):
            self._opening = opening  # "PU": wait for the bytes that decide
            return
        self._opening = None
        if opening.startswith(PUSH_OPENING) and self._parser is not None:
            line, headers, field, decompress = self._parser_options
            self._parser = HttpRequestParserPy(
                self,
                self._loop,
                self._read_bufsize,
                max_line_size=line,
                max_headers=headers,
                max_field_size=field,
                payload_exception=RequestPayloadError,
                auto_decompress=decompress,
                **_QUEUE_BOUND,
            )
        super().data_received(opening)


class PushAwareServer(web.Server):
    """aiohttp's low-level server, making PushAwareHandler connections."""

    def __call__(self) -> RequestHandler:
        return PushAwareHandler(self, loop=self._loop, **self._kwargs)


class PushAwareRunner(web.AppRunner):
    """An AppRunner whose server accepts devpi's PUSH; everything else as aiohttp's."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return PushAwareServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **made._kwargs,  # aiohttp has no public way to copy a server's handler options
        )
