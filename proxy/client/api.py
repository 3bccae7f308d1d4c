"""Calls to a wheelwell server over `urllib`, with every failure turned into one `ClientError`."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

from proxy import __version__
from proxy.client.errors import ClientError, ServerError, UnreachableError

JSON_TYPE = "application/json"
_ERROR_BODY_LIMIT = 64 * 1024
_CHUNK = 1024 * 1024
_LOGIN_HINT = "; run `wheelwell login` or pass --user"
_EXPIRED_HINT = "; the stored login may have expired or been revoked: run `wheelwell login`"


@dataclass(frozen=True, slots=True)
class Credentials:
    """HTTP Basic credentials: a user's password, or `__token__` and an API token."""

    user: str
    password: str

    def render_header(self) -> str:
        raw = f"{self.user}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, password='***')"


def render_path(*segments: str) -> str:
    """A URL path from raw segments, each quoted so a name can never add a path level."""
    return "".join("/" + quote(segment, safe="") for segment in segments)


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow GET redirects on the same server only, so credentials never travel elsewhere."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        old, new = urlsplit(req.full_url), urlsplit(newurl)
        if req.get_method() != "GET" or (old.scheme, old.netloc) != (new.scheme, new.netloc):
            raise ServerError(code, f"{req.get_method()} {req.full_url} redirected to {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _describe_unreachable(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host name ({reason.strerror})"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, ssl.SSLError):
        return f"TLS error ({reason.reason or reason})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


def parse_error_body(status: int, content_type: str, body: bytes, fallback: str) -> str:
    """The server's one-line reason, from its JSON or text error body."""
    text = body.decode("utf-8", errors="replace")
    if content_type.startswith(JSON_TYPE):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            text = data["error"]
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    prefix = f"{status}:"
    if line.startswith(prefix):
        line = line[len(prefix) :].strip()
    return line[:500] or fallback


class Api:
    """One server and one set of credentials; methods answer parsed JSON or raise."""

    def __init__(
        self,
        server: str,
        credentials: Credentials | None = None,
        timeout: float = 60.0,
        login_hint: bool = True,
    ) -> None:
        self.server = server.rstrip("/")
        self.credentials = credentials
        self.timeout = timeout
        self.login_hint = login_hint  #: suggest `wheelwell login` on a 401 without credentials
        self._opener = urllib.request.build_opener(_SameOriginRedirects())

    def fetch_json(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Make one API call; the answer's JSON, or None for an empty answer."""
        headers = {"Accept": JSON_TYPE}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = JSON_TYPE
        raw = self._send(method, path, data, headers)
        return json.loads(raw) if raw.strip() else None

    def fetch_upload(self, path: str, body: Iterable[bytes], length: int, content_type: str) -> str:
        """POST a streamed body (an upload); the server's answer as text."""
        headers = {"Accept": JSON_TYPE, "Content-Type": content_type}
        headers["Content-Length"] = str(length)
        return self._send("POST", path, body, headers).decode("utf-8", errors="replace")

    def fetch_file(self, path: str, dest: Path, sha256: str, size: int) -> None:
        """Download to `dest`, streamed; ClientError unless it is `size` bytes with `sha256`."""
        digest, written = hashlib.sha256(), 0
        with self._open(self._request("GET", path, None, {})) as response, dest.open("wb") as sink:
            while chunk := self._read(response):
                written += len(chunk)
                if written > size:
                    raise ClientError(f"{dest.name}: the server sent more than {size} bytes")
                digest.update(chunk)
                sink.write(chunk)
        if written != size or digest.hexdigest() != sha256:
            raise ClientError(f"{dest.name}: the download does not match its sha256 {sha256}")

    def _request(
        self, method: str, path: str, data: bytes | Iterable[bytes] | None, headers: dict[str, str]
    ) -> urllib.request.Request:
        request = urllib.request.Request(  # noqa: S310 (the scheme was checked by parse_target)
            self.server + path, data=data, method=method, headers=headers
        )
        request.add_header("User-Agent", f"wheelwell/{__version__}")
        if self.credentials is not None:
            request.add_header("Authorization", self.credentials.render_header())
        return request

    def _open(self, request: urllib.request.Request) -> http.client.HTTPResponse:
        """The answer to read from; a failure to get one becomes a ClientError."""
        try:
            response: http.client.HTTPResponse = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raise self._server_error(exc) from None
        except urllib.error.URLError as exc:
            raise UnreachableError(self.server, _describe_unreachable(exc.reason)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise UnreachableError(self.server, _describe_unreachable(exc)) from None
        return response

    def _read(self, response: http.client.HTTPResponse, size: int | None = _CHUNK) -> bytes:
        """The next `size` bytes (None: all the rest); a broken connection is a ClientError."""
        try:
            return response.read(size)
        except (OSError, http.client.HTTPException) as exc:
            raise UnreachableError(self.server, _describe_unreachable(exc)) from None

    def _send(
        self, method: str, path: str, data: bytes | Iterable[bytes] | None, headers: dict[str, str]
    ) -> bytes:
        with self._open(self._request(method, path, data, headers)) as response:
            return self._read(response, None)

    def _server_error(self, exc: urllib.error.HTTPError) -> ServerError:
        with exc:
            body = exc.read(_ERROR_BODY_LIMIT)
        content_type = exc.headers.get("Content-Type", "") if exc.headers else ""
        reason = parse_error_body(exc.code, content_type, body, str(exc.reason))
        if exc.code == 401 and self.login_hint:
            if self.credentials is None:
                reason += _LOGIN_HINT
            elif self.credentials.user == "__token__":
                reason += _EXPIRED_HINT
        return ServerError(exc.code, reason)
