"""Security headers on every response: CSP on HTML, nosniff, HSTS over https, a bare Server."""

from __future__ import annotations

from aiohttp import web

from proxy.web.forwarded import PUBLIC_SCHEME

#: the UI's pages need only their own stylesheet and icon; nothing runs, nothing frames them
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HSTS = "max-age=31536000"
SERVER = "wheelwell"


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: runs for handlers' responses, errors and aiohttp's own alike."""
    headers = response.headers
    headers["Server"] = SERVER  # no aiohttp or Python version for scanners
    headers["X-Content-Type-Options"] = "nosniff"
    headers.setdefault("Referrer-Policy", "same-origin")
    if response.content_type == "text/html":
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers.setdefault("X-Frame-Options", "DENY")
    if request.get(PUBLIC_SCHEME, request.scheme) == "https":
        headers["Strict-Transport-Security"] = HSTS
