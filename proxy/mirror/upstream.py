"""The one HTTP client session to upstream indexes: timeouts, retries, conditional GETs.

`translate_client_errors` is the boundary: nothing above this layer sees an aiohttp exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from proxy.config import UpstreamConfig
from proxy.errors import (
    UpstreamError,
    UpstreamOfflineError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from proxy.metrics import Metrics
from proxy.model import mask_url

log = logging.getLogger(__name__)

PAGE_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
)
_RETRY_STATUSES = frozenset({500, 502, 503, 504, 429})


@functools.lru_cache(maxsize=256)
def _host(url: str) -> str:
    """The metrics label for an upstream: host[:port], never credentials or paths."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


@contextlib.contextmanager
def translate_client_errors(url: str) -> Iterator[None]:
    """Map aiohttp/timeout/OS errors to UpstreamError subclasses, chained `from` the original."""
    shown = mask_url(url)
    try:
        yield
    except TimeoutError as exc:
        raise UpstreamTimeoutError(shown, "timed out") from exc
    except aiohttp.ClientPayloadError as exc:
        raise UpstreamUnavailableError(shown, f"response body broken: {exc}") from exc
    except aiohttp.ClientResponseError as exc:
        raise UpstreamStatusError(shown, exc.status) from exc
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamUnavailableError(shown, f"cannot connect: {exc.os_error}") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamUnavailableError(shown, str(exc) or type(exc).__name__) from exc


@dataclass(frozen=True, slots=True)
class PageResponse:
    """An upstream answer to a page request: 200 with a body, 304, or 404."""

    status: int
    url: str  #: the final URL, the base for relative links
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    serial: int | None = None


def _serial(headers: Mapping[str, str]) -> int | None:
    value = headers.get("X-PyPI-Last-Serial")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class UpstreamClient:
    """Wraps the shared ClientSession; retries idempotent requests with exponential backoff."""

    def __init__(
        self, session: aiohttp.ClientSession, cfg: UpstreamConfig, metrics: Metrics
    ) -> None:
        self.session = session
        self.cfg = cfg
        self.metrics = metrics
        self.proxy = cfg.proxy or None
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=cfg.connect_timeout, sock_read=cfg.read_timeout
        )
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._failures = 0  #: failures in a row
        self._resting_until = 0.0  #: monotonic time before which the upstream is not asked
        metrics.upstream_offline.set(1 if cfg.offline else 0)

    @property
    def available(self) -> bool:
        """False in offline mode and while resting after repeated failures."""
        return not self.cfg.offline and time.monotonic() >= self._resting_until

    def _check_available(self, url: str) -> None:
        if self.cfg.offline:
            raise UpstreamOfflineError(mask_url(url), "offline mode, and this is not cached")
        remaining = self._resting_until - time.monotonic()
        if remaining > 0:
            raise UpstreamOfflineError(
                mask_url(url),
                f"failing ({self.last_error}); not asked again for {remaining:.0f}s, "
                "and this is not cached",
            )

    def _succeeded(self) -> None:
        if self._failures >= self.cfg.failure_threshold:
            log.warning("upstream answers again; leaving offline mode")
            self.metrics.upstream_offline.set(0)
        self._failures = 0

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(self.cfg.backoff * (2**attempt))

    def _failed(self, kind: str, exc: UpstreamError) -> None:
        self.metrics.upstream_requests.labels(_host(exc.upstream), kind, "error").inc()
        self.last_error = str(exc)
        self.last_error_at = time.time()
        if isinstance(exc, UpstreamStatusError) and exc.status not in _RETRY_STATUSES:
            return  # the upstream answered; it is not down
        self._failures += 1
        if self._failures >= self.cfg.failure_threshold:
            self._resting_until = time.monotonic() + self.cfg.offline_retry
            self.metrics.upstream_offline.set(1)
            log.warning(
                "upstream failed %d times in a row; serving from cache only for %.0fs: %s",
                self._failures,
                self.cfg.offline_retry,
                exc,
            )

    async def fetch_page(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> PageResponse:
        """GET a simple page, conditional when validators are given; 404 is an answer."""
        self._check_available(url)
        headers = {"Accept": PAGE_ACCEPT}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        for attempt in range(self.cfg.retries + 1):
            try:
                page = await self._fetch_page_once(url, headers)
                self._succeeded()
                return page
            except UpstreamError as exc:
                self._failed("page", exc)
                retryable = not isinstance(exc, UpstreamStatusError) or (
                    exc.status in _RETRY_STATUSES
                )
                if attempt >= self.cfg.retries or not retryable or not self.available:
                    raise
                log.warning("retrying %s after: %s", mask_url(url), exc)
                await self._backoff(attempt)
        raise AssertionError("unreachable")

    async def _fetch_page_once(self, url: str, headers: dict[str, str]) -> PageResponse:
        started = time.monotonic()
        with translate_client_errors(url):
            async with self.session.get(
                url, headers=headers, timeout=self.timeout, proxy=self.proxy
            ) as resp:
                self.metrics.upstream_seconds.labels(_host(url), "page").observe(
                    time.monotonic() - started
                )
                final = str(resp.url)
                if resp.status in (304, 404, 410):
                    self.metrics.upstream_requests.labels(
                        _host(url), "page", str(resp.status)
                    ).inc()
                    return PageResponse(
                        status=404 if resp.status == 410 else resp.status,
                        url=final,
                        etag=resp.headers.get("ETag"),
                        last_modified=resp.headers.get("Last-Modified"),
                    )
                if resp.status != 200:
                    raise UpstreamStatusError(mask_url(url), resp.status)
                body = await resp.read()
                self.metrics.upstream_requests.labels(_host(url), "page", "200").inc()
                return PageResponse(
                    status=200,
                    url=final,
                    body=body,
                    content_type=resp.headers.get("Content-Type", ""),
                    etag=resp.headers.get("ETag"),
                    last_modified=resp.headers.get("Last-Modified"),
                    serial=_serial(resp.headers),
                )

    @contextlib.asynccontextmanager
    async def open_file(
        self, url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A file response with status 200/206; reading its body may still raise UpstreamError."""
        self._check_available(url)
        for attempt in range(self.cfg.retries + 1):
            started = time.monotonic()
            try:
                with translate_client_errors(url):
                    resp = await self.session.request(
                        method, url, headers=headers, timeout=self.timeout, proxy=self.proxy
                    )
            except UpstreamError as exc:
                self._failed("file", exc)
                if attempt >= self.cfg.retries or not self.available:
                    raise
                await self._backoff(attempt)
                continue
            self.metrics.upstream_seconds.labels(_host(url), "file").observe(
                time.monotonic() - started
            )
            if resp.status in _RETRY_STATUSES and attempt < self.cfg.retries:
                resp.release()
                await self._backoff(attempt)
                continue
            try:
                if resp.status not in (200, 206):
                    error = UpstreamStatusError(mask_url(url), resp.status)
                    self._failed("file", error)
                    raise error
                self.metrics.upstream_requests.labels(_host(url), "file", str(resp.status)).inc()
                self._succeeded()
                with translate_client_errors(url):
                    yield resp
            finally:
                resp.release()
            return
        raise AssertionError("unreachable")
