"""The one HTTP client session to upstream indexes: timeouts, retries, conditional GETs.

`translate_client_errors` is the boundary: nothing above this layer sees an aiohttp exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import aiohttp

from proxy.config import UpstreamConfig
from proxy.errors import (
    UpstreamConcealedError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from proxy.metrics import Metrics
from proxy.mirror.addresses import AddressPolicy, PolicyResolver, address_middleware, scope_of
from proxy.mirror.health import RETRY_STATUSES, HealthBook, Ticket
from proxy.model import mask_url

log = logging.getLogger(__name__)

PAGE_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
)
_RETRY_STATUSES = RETRY_STATUSES
T = TypeVar("T")


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


def _page_headers(etag: str | None, last_modified: str | None) -> dict[str, str]:
    """A page request's headers: what we accept, and the validators of a cached answer."""
    headers = {"Accept": PAGE_ACCEPT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def new_session(policy: AddressPolicy, user_agent: str) -> aiohttp.ClientSession:
    """A session whose every connection, redirects included, honours the address policy."""
    connector = aiohttp.TCPConnector(
        limit=200, limit_per_host=64, ttl_dns_cache=300, resolver=PolicyResolver(policy)
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": user_agent},
        trust_env=False,  # the proxy is settled once in config.load
        cookie_jar=aiohttp.DummyCookieJar(),  # an index sets no cookies worth keeping
        middlewares=address_middleware(policy),
    )


@contextlib.contextmanager
def conceal_for(index: str) -> Iterator[None]:
    """A user's mirror: every upstream failure in one text; the detail goes to the log only."""
    if scope_of(index) == "root":
        yield
        return
    try:
        yield
    except UpstreamConcealedError:
        raise
    except UpstreamError as exc:
        raise UpstreamConcealedError(index, exc) from exc


class UpstreamClient:
    """Wraps the ClientSessions; retries idempotent requests; tracks health per upstream.

    `index` on a request names the mirror asking: root's use `session`, other users' use
    `user_session` (their stricter address policy) and get concealed errors.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        cfg: UpstreamConfig,
        metrics: Metrics,
        *,
        user_session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.session = session
        self.user_session = user_session or session
        self.cfg = cfg
        self.metrics = metrics
        self.proxy = cfg.proxy or None
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=cfg.connect_timeout, sock_read=cfg.read_timeout
        )
        self.health = HealthBook(cfg, metrics)
        self.last_error: str | None = None  #: of root's upstreams, for /+status
        self.last_error_at: float | None = None

    @property
    def available(self) -> bool:
        """False in offline mode and while one of root's upstreams rests after failures."""
        return not self.cfg.offline and not self.health.any_resting("root")

    def _session(self, index: str) -> aiohttp.ClientSession:
        return self.session if scope_of(index) == "root" else self.user_session

    def session_for(self, index: str) -> aiohttp.ClientSession:
        """The session `index`'s requests use: root's, or users' with their address policy."""
        return self._session(index)

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(self.cfg.backoff * (2**attempt))

    def _failed(self, kind: str, ticket: Ticket, exc: UpstreamError) -> None:
        self.metrics.upstream_requests.labels(_host(exc.upstream), kind, "error").inc()
        if ticket.health.scope == "root":
            self.last_error = str(exc)
            self.last_error_at = time.time()
        self.health.failed(ticket, exc)

    async def fetch_page(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        index: str = "",
        may_probe: bool = True,
    ) -> PageResponse:
        """GET a simple page, conditional when validators are given; 404 is an answer.

        `may_probe`: false when the caller has a cached answer, which must not wait for a probe.
        """
        with conceal_for(index):
            ticket = self.health.admit(url, scope_of(index), may_probe=may_probe)
            try:
                return await self._fetch_page(url, etag, last_modified, index, ticket)
            finally:
                self.health.done(ticket)

    async def _fetch_page(
        self,
        url: str,
        etag: str | None,
        last_modified: str | None,
        index: str,
        ticket: Ticket,
    ) -> PageResponse:
        headers = _page_headers(etag, last_modified)
        session = self._session(index)
        return await self._retrying_page(
            url, ticket, lambda: self._fetch_page_once(session, url, headers)
        )

    async def _retrying_page(self, url: str, ticket: Ticket, once: Callable[[], Awaitable[T]]) -> T:
        """`once()` with the page retry policy; the ticket's health learns every outcome."""
        for attempt in range(self.cfg.retries + 1):
            try:
                result = await once()
                self.health.succeeded(ticket)
                return result
            except _ConsumerError as wrapped:  # the upstream answered; its body was the problem
                self.health.succeeded(ticket)
                raise wrapped.error from wrapped.error.__cause__
            except UpstreamError as exc:
                self._failed("page", ticket, exc)
                retryable = not isinstance(exc, UpstreamStatusError) or (
                    exc.status in _RETRY_STATUSES
                )
                if attempt >= self.cfg.retries or not retryable or not self.health.usable(ticket):
                    raise
                log.warning("retrying %s after: %s", mask_url(url), exc)
                await self._backoff(attempt)
        raise AssertionError("unreachable")

    async def _fetch_page_once(
        self, session: aiohttp.ClientSession, url: str, headers: dict[str, str]
    ) -> PageResponse:
        started = time.monotonic()
        with translate_client_errors(url):
            async with session.get(
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
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        index: str = "",
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A file response with status 200/206; reading its body may still raise UpstreamError.

        A download always may probe a resting upstream: it is only asked for when not cached.
        """
        with conceal_for(index):
            ticket = self.health.admit(url, scope_of(index), may_probe=True)
            try:
                async with self._open_file(url, method, headers, index, ticket) as resp:
                    yield resp
            finally:
                self.health.done(ticket)

    @contextlib.asynccontextmanager
    async def _open_file(
        self,
        url: str,
        method: str,
        headers: Mapping[str, str] | None,
        index: str,
        ticket: Ticket,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        session = self._session(index)
        for attempt in range(self.cfg.retries + 1):
            started = time.monotonic()
            try:
                with translate_client_errors(url):
                    resp = await session.request(
                        method, url, headers=headers, timeout=self.timeout, proxy=self.proxy
                    )
            except UpstreamError as exc:
                self._failed("file", ticket, exc)
                if attempt >= self.cfg.retries or not self.health.usable(ticket):
                    raise
                await self._backoff(attempt)
                continue
            self.metrics.upstream_seconds.labels(_host(url), "file").observe(
                time.monotonic() - started
            )
            if (
                resp.status in _RETRY_STATUSES
                and attempt < self.cfg.retries
                and self.health.usable(ticket)
            ):
                resp.release()
                await self._backoff(attempt)
                continue
            try:
                if resp.status not in (200, 206):
                    error = UpstreamStatusError(mask_url(url), resp.status)
                    self._failed("file", ticket, error)
                    raise error
                self.metrics.upstream_requests.labels(_host(url), "file", str(resp.status)).inc()
                self.health.succeeded(ticket)
                with translate_client_errors(url):
                    yield resp
            finally:
                resp.release()
            return
        raise AssertionError("unreachable")

    async def stream_page(
        self,
        url: str,
        consume: Callable[[PageHead, AsyncIterator[bytes]], Awaitable[T]],
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        index: str = "",
        may_probe: bool = True,
    ) -> tuple[PageHead, T | None]:
        """fetch_page for bodies too large to hold: `consume(head, chunks)` reads a 200's body.

        The result is None for 304 and 404. A failure to connect or to read the body is retried
        like fetch_page's (`consume` is then called again and must start over); whatever else
        `consume` raises ends the request as it is.
        """
        with conceal_for(index):
            ticket = self.health.admit(url, scope_of(index), may_probe=may_probe)
            try:
                return await self._stream_page(url, consume, etag, last_modified, index, ticket)
            finally:
                self.health.done(ticket)

    async def _stream_page(
        self,
        url: str,
        consume: Callable[[PageHead, AsyncIterator[bytes]], Awaitable[T]],
        etag: str | None,
        last_modified: str | None,
        index: str,
        ticket: Ticket,
    ) -> tuple[PageHead, T | None]:
        headers = _page_headers(etag, last_modified)
        return await self._retrying_page(
            url, ticket, lambda: self._stream_page_once(url, headers, index, consume)
        )

    async def _stream_page_once(
        self,
        url: str,
        headers: dict[str, str],
        index: str,
        consume: Callable[[PageHead, AsyncIterator[bytes]], Awaitable[T]],
    ) -> tuple[PageHead, T | None]:
        started = time.monotonic()
        with translate_client_errors(url):
            async with self._session(index).get(
                url, headers=headers, timeout=self.timeout, proxy=self.proxy
            ) as resp:
                self.metrics.upstream_seconds.labels(_host(url), "page").observe(
                    time.monotonic() - started
                )
                head = PageHead(
                    status=404 if resp.status == 410 else resp.status,
                    url=str(resp.url),
                    content_type=resp.headers.get("Content-Type", ""),
                    etag=resp.headers.get("ETag"),
                    last_modified=resp.headers.get("Last-Modified"),
                    serial=_serial(resp.headers),
                )
                if resp.status in (304, 404, 410):
                    self.metrics.upstream_requests.labels(
                        _host(url), "page", str(resp.status)
                    ).inc()
                    return head, None
                if resp.status != 200:
                    raise UpstreamStatusError(mask_url(url), resp.status)
                body_error: list[UpstreamError] = []
                try:
                    result = await consume(head, _chunks(resp, url, body_error))
                except UpstreamError as exc:
                    if body_error and exc is body_error[0]:
                        raise  # a read failure: retried by the caller
                    self.metrics.upstream_requests.labels(_host(url), "page", "200").inc()
                    raise _ConsumerError(exc) from exc
                self.metrics.upstream_requests.labels(_host(url), "page", "200").inc()
                return head, result


class _ConsumerError(Exception):
    """An UpstreamError of `consume` (a body it cannot parse): not retried, not a failure."""

    def __init__(self, error: UpstreamError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True, slots=True)
class PageHead:
    """The status and headers of a streamed page: 200 (its body went to `consume`), 304 or 404."""

    status: int
    url: str  #: the final URL
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    serial: int | None = None


async def _chunks(
    resp: aiohttp.ClientResponse, url: str, errors: list[UpstreamError]
) -> AsyncIterator[bytes]:
    """The body as it arrives; a read failure is noted in `errors` so it can be told apart."""
    try:
        with translate_client_errors(url):
            async for chunk in resp.content.iter_any():
                yield chunk
    except UpstreamError as exc:
        errors.append(exc)
        raise


@dataclass(frozen=True, slots=True)
class PostedFile:
    """Another index's answer to one legacy-API upload: its status and, on failure, its text."""

    status: int
    text: str


#: an answer's text kept for the push log: a reason, not a page
_POSTED_TEXT = 2048


async def post_upload(
    client: UpstreamClient,
    url: str,
    *,
    index: str,
    credentials: tuple[str, str],
    fields: Mapping[str, str],
    filename: str,
    content: Path | AsyncIterator[bytes],
) -> PostedFile:
    """POST one file to another index's upload API (devpi push to an external index).

    The session is the one `index`'s mirrors use, so its address policy applies to `url`; the
    credentials go in the Authorization header only, never into a log or an error.
    """
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    opened = await asyncio.to_thread(content.open, "rb") if isinstance(content, Path) else None
    form.add_field(
        "content",
        opened or content,
        filename=filename,
        content_type="application/octet-stream",
    )
    auth = aiohttp.BasicAuth(*credentials)
    timeout = aiohttp.ClientTimeout(
        total=None, connect=client.cfg.connect_timeout, sock_read=client.cfg.read_timeout
    )
    try:
        with translate_client_errors(url):
            async with client.session_for(index).post(
                url,
                data=form,
                auth=auth,
                timeout=timeout,
                proxy=client.proxy,
                allow_redirects=False,
            ) as resp:
                text = "" if resp.status in (200, 201) else await resp.text(errors="replace")
    finally:
        if opened is not None:
            opened.close()
    return PostedFile(resp.status, (text.strip() or resp.reason or "")[:_POSTED_TEXT])
