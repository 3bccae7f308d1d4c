"""One outgoing hook request: bounded in time and in what is read back, never raising.

The hosted side sends hooks but may not import the mirror side, where the upstream client
lives; this module is the shared lower piece. The caller hands in a `ClientSession` built with
the mirrors' address policy (proxy/app.py), so every connection obeys upstream.deny/allow.
aiohttp and timeout errors are translated here into an `Outcome`, as upstream.py does.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from proxy.errors import WheelwellError
from proxy.model import mask_url

#: of a receiver's answer, at most this much is read (and kept as the attempt's excerpt)
EXCERPT_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int | None  #: None: no answer (refused, timed out, denied address)
    error: str  #: empty on success; never holds credentials
    excerpt: str  #: the answer's first bytes (EXCERPT_BYTES at most)
    headers: dict[str, str] | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without userinfo, and a Basic Authorization header made from it (or None)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    host = parts.netloc.rsplit("@", 1)[1]
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return urlunsplit(parts._replace(netloc=host)), f"Basic {token}"


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    timeout: float,  # noqa: ASYNC109 - an Outcome, not an exception, on timeout
    data: bytes | aiohttp.FormData | None = None,
    headers: dict[str, str] | None = None,
) -> Outcome:
    """Send one request; credentials in `url` become Basic auth; redirects are not followed."""
    plain, authorization = split_credentials(url)
    sent = dict(headers or {})
    if authorization is not None:
        sent["Authorization"] = authorization
    try:
        async with asyncio.timeout(timeout):
            async with session.request(
                method, plain, data=data, headers=sent, allow_redirects=False
            ) as resp:
                raw = await resp.content.read(EXCERPT_BYTES)
                excerpt = raw.decode("utf-8", "replace")
                error = "" if 200 <= resp.status < 300 else f"answered {resp.status}"
                return Outcome(resp.status, error, excerpt, dict(resp.headers))
    except TimeoutError:
        return Outcome(None, f"no answer within {timeout:g} s", "")
    except (aiohttp.ClientError, WheelwellError, OSError) as exc:
        return Outcome(None, _describe(exc, url), "")


def _describe(exc: BaseException, url: str) -> str:
    """An error's text without the URL's credentials (aiohttp puts the URL in some)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    _, authorization = split_credentials(url)
    if authorization is not None:
        text = text.replace(url, mask_url(url))
        password = urlsplit(url).password
        if password:
            text = text.replace(password, "***")
    return text[:EXCERPT_BYTES]


def parse_json(outcome: Outcome) -> Any:
    """The excerpt as JSON, None when it is not (Jenkins's crumb answer is small)."""
    try:
        return json.loads(outcome.excerpt)
    except ValueError:
        return None
