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
_ALWAYS = {"Server": SERVER, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
_HTML = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Frame-Options": "DENY"}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: runs for handlers' responses, errors and aiohttp's own alike."""
    headers = response.headers
    headers.update(_ALWAYS)  # no aiohttp or Python version in Server, for scanners
    if headers.get("Content-Type", "").startswith("text/html"):
        headers.update(_HTML)
    if (request.get(PUBLIC_SCHEME) or request.scheme) == "https":
        headers["Strict-Transport-Security"] = HSTS
