"""`wheelwell healthcheck`: does the daemon on this data dir answer? For HEALTHCHECK and probes.

A container's health check cannot see the arguments its entrypoint was given (`--port 8080`), so
it asks the daemon itself: `serve` records the URL it listens on in the data dir's lock file. The
config (file, WHEELWELL_* variables) is resolved the way `serve` resolves it, for the data dir and
as the fallback address. Only the standard library is used: it runs every few seconds.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import urllib.error
import urllib.request

from proxy.config import load
from proxy.errors import ConfigError
from proxy.storage.datadir import announced_url


def local_url(scheme: str, host: str, port: int) -> str:
    """The URL this host reaches a socket bound to host:port at (a wildcard means loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def run(args: argparse.Namespace) -> int:
    """Exit 0 when /+health (or /+ready with --ready) answers 200, else 1 with one line."""
    try:
        cfg = load(args.config)
    except ConfigError as exc:
        print(f"wheelwell: configuration error:\n{exc}", file=sys.stderr)  # noqa: T201
        return 2
    data_dir = args.data_dir or cfg.storage.data_dir
    base = announced_url(data_dir)
    if base is None:  # not listening yet, or not running: where the config says it would
        base = local_url(
            "https" if cfg.server.tls_cert else "http", cfg.server.host, cfg.server.port
        )
    url = f"{base}/+ready" if args.ready else f"{base}/+health"
    # this host's own daemon: no proxy, and a self-signed certificate is fine
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if url.startswith("https:"):
        handlers.append(urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))  # noqa: S323
    try:
        with urllib.request.build_opener(*handlers).open(url, timeout=args.timeout) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        print(f"wheelwell: {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)  # noqa: T201
        return 1
    if status != 200:
        print(f"wheelwell: {url} answered {status}", file=sys.stderr)  # noqa: T201
        return 1
    return 0
