"""The one place errors become HTTP responses, and the one place they are logged."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy.accept import choose
from proxy.errors import (
    AuthError,
    ChangelogCompactedError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotAcceptableError,
    NotFoundError,
    ObjectStoreError,
    ReplicaWriteError,
    StorageFullError,
    TooManyRequestsError,
    UnauthorizedError,
    UploadNotAllowedError,
    UploadTooLargeError,
    UpstreamAddressError,
    UpstreamConcealedError,
    UpstreamError,
    UpstreamOfflineError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    WheelwellError,
)
from proxy.simple_api import LATEST_ALIASES, Format
from proxy.web import keys

log = logging.getLogger(__name__)

_JSON_TYPES = ("application/json", Format.JSON.value)
#: text first: a tie (`*/*`, no header, a browser's `text/html`) gets a plain-text error
_ERROR_OFFERS = ("text/plain", Format.LEGACY_HTML.value, Format.HTML.value, *_JSON_TYPES)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: looked up along the exception's MRO, so the most specific class wins
STATUS_FOR: dict[type[BaseException], int] = {
    NotFoundError: 404,
    NotAcceptableError: 406,
    UploadNotAllowedError: 405,
    UploadTooLargeError: 413,
    InvalidInputError: 400,
    UnauthorizedError: 401,
    ForbiddenError: 403,
    AuthError: 403,
    ConflictError: 409,
    UpstreamConcealedError: 502,  #: a user's mirror: one status and text for every failure
    UpstreamAddressError: 502,
    TooManyRequestsError: 429,
    UpstreamTimeoutError: 504,
    UpstreamOfflineError: 503,
    UpstreamError: 502,
    StorageFullError: 507,
    ObjectStoreError: 503,
    ReplicaWriteError: 503,
    ChangelogCompactedError: 410,
    WheelwellError: 500,
}


def _new_request_id() -> str:
    """Unique enough to find a request in the logs; no urandom syscall on every request."""
    return f"{random.getrandbits(64):016x}"


def status_for(exc: BaseException) -> int:
    if isinstance(exc, UpstreamStatusError) and exc.status == 404:
        return 502
    for cls in type(exc).__mro__:
        if cls in STATUS_FOR:
            return STATUS_FOR[cls]
    return 500


def _wants_json(request: web.Request) -> bool:
    """A client that names a JSON type above HTML and text (pip, uv, API clients) gets JSON."""
    accept = request.headers.get("Accept")
    return choose(accept, _ERROR_OFFERS, aliases=LATEST_ALIASES) in _JSON_TYPES


#: routes whose clients (twine, uv publish) show only the status line of a refusal
_REASON_ROUTES = frozenset({"upload", "upload-noslash", "upload-simple", "upload-simple-ns"})
_REASON_MAX = 200


def reason_phrase(message: str) -> str:
    """The message as an HTTP reason phrase: its first line, printable ASCII, bounded."""
    first = message.strip().split("\n", 1)[0].split("\r", 1)[0]
    safe = "".join(c if " " <= c <= "~" else "?" for c in first)
    if len(safe) > _REASON_MAX:
        safe = safe[: _REASON_MAX - 3] + "..."
    return safe.strip()


def error_response(request: web.Request, status: int, message: str) -> web.Response:
    request_id = request.get(keys.REQUEST_ID, "")
    reason = None
    if 400 <= status < 500 and _route_class(request) in _REASON_ROUTES:
        reason = reason_phrase(message) or None
    headers = {"X-Request-Id": request_id}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="wheelwell"'
    elif status == 405:
        headers["Allow"] = "GET, HEAD"
    if _wants_json(request):
        body = json.dumps(
            {"status": status, "error": message, "message": message, "request_id": request_id}
        )  # `message`: what devpi-client prints
        return web.Response(
            status=status,
            reason=reason,
            text=body,
            content_type="application/json",
            headers=headers,
        )
    return web.Response(
        status=status, reason=reason, text=f"{status}: {message}\n", headers=headers
    )


def _route_class(request: web.Request) -> str:
    return request.match_info.route.name or "other"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, metrics, and the exception → response table; errors are logged once here."""
    request[keys.REQUEST_ID] = request.headers.get("X-Request-Id", "")[:64] or _new_request_id()
    metrics = request.app[keys.METRICS]
    route = _route_class(request)
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers.setdefault("X-Request-Id", request[keys.REQUEST_ID])
        return response
    except web.HTTPException as exc:
        status = exc.status
        if status < 400:
            raise
        response = error_response(request, status, exc.reason)
        for header in ("Allow", "Content-Range"):  # a 405's methods, a 416's length
            if header in exc.headers:
                response.headers[header] = exc.headers[header]
        return response
    except WheelwellError as exc:
        status = status_for(exc)
        if request.writer is not None and request.writer.output_size > 0:
            log.error("response to %s broken off after it started: %s", request.path, exc)
            raise
        extra = {"request_id": request[keys.REQUEST_ID], "path": request.path}
        logged = f"{exc} ({exc.detail})" if isinstance(exc, UpstreamConcealedError) else exc
        if status >= 500:
            log.error("%s %s -> %d: %s", request.method, request.path, status, logged, extra=extra)
        elif isinstance(exc, TooManyRequestsError):
            # a flood would write a line per attempt: they are counted in metrics, and the
            # budget running out is logged once as a WARNING where it happens
            log.debug("%s %s -> %d: %s", request.method, request.path, status, logged, extra=extra)
        else:
            log.info("%s %s -> %d: %s", request.method, request.path, status, logged, extra=extra)
        response = error_response(request, status, str(exc))
        if isinstance(exc, TooManyRequestsError):
            response.headers["Retry-After"] = str(exc.retry_seconds)
        return response
    except Exception as exc:
        if request.writer is not None and request.writer.output_size > 0:
            raise
        log.exception(
            "unexpected error on %s %s (request id %s)",
            request.method,
            request.path,
            request[keys.REQUEST_ID],
        )
        message = f"internal error ({type(exc).__name__}); request id {request[keys.REQUEST_ID]}"
        return error_response(request, 500, message)
    finally:
        metrics.requests.labels(route, str(status)).inc()
        metrics.request_seconds.labels(route, str(status)).observe(time.monotonic() - started)
