"""Logging setup (text or JSON to stderr) and the access logger; only the CLI calls `setup`."""

from __future__ import annotations

import json
import logging
import sys
import time

from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import BaseRequest, StreamResponse

from proxy.config import LogFormat, LoggingConfig
from proxy.web.forwarded import CLIENT_ADDRESS
from proxy.web.keys import REQUEST_ID

_EXTRA_KEYS = (
    "project",
    "index",
    "file",
    "upstream",
    "serial",
    "request_id",
    "duration_ms",
    "path",
    "status",
    "bytes",
    "method",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra=` keys become fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _EXTRA_KEYS:
            if key in record.__dict__:
                data[key] = record.__dict__[key]
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a malformed request at ERROR with a traceback; a client's fault gets a line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "-"
            reason = (str(exc.message).strip().splitlines() or [""])[0][:200]
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = (
                "malformed request from %s (%d): %s",
                (remote, exc.code, reason),
            )
            record.exc_info, record.exc_text = None, None
        return True


def quiet_malformed_requests() -> None:
    """Install `MalformedRequestFilter` on aiohttp's server logger, once."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in logger.filters):
        logger.addFilter(MalformedRequestFilter())


def setup(cfg: LoggingConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if cfg.format is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.level.upper())


#: logged at DEBUG: health and readiness probes, Prometheus scrapes
QUIET_PATHS = frozenset({"/+health", "/+ready", "/+metrics"})


class AccessLogger(AbstractAccessLogger):
    """One line per request with request id, status, bytes and duration."""

    @property
    def enabled(self) -> bool:
        """aiohttp skips `log` entirely when False: no cost at level WARNING."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        request_id = request.get(REQUEST_ID, "-")
        # probes and scrapes come every few seconds: at INFO they would bury the requests
        level = logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
        self.logger.log(
            level,
            "%s %s %s %d %d %.1fms id=%s",
            request.get(CLIENT_ADDRESS) or request.remote,
            request.method,
            request.path_qs,
            response.status,
            response.body_length,
            time * 1000,
            request_id,
            extra={
                "method": request.method,
                "path": request.path_qs,
                "status": response.status,
                "bytes": response.body_length,
                "duration_ms": round(time * 1000, 1),
                "request_id": request_id,
            },
        )
