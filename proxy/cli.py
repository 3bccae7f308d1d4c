"""The `wheelwell` command line: the parser for every command, then the side that runs it.

Client commands (`use`, `login`, `upload`, …) run on users' machines and must start fast, so the
server side (aiohttp, SQLite, the whole app) is imported only when a server command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from proxy import __version__
from proxy.client.commands import add_client_commands, run_client_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wheelwell", description="private Python package index")
    parser.add_argument("--version", action="version", version=f"wheelwell {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the daemon")
    _config_arg(serve)
    serve.add_argument("--host", help="address to bind (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default from config: 3141)")
    serve.add_argument("--data-dir", type=Path, help="where files and state are stored")
    serve.add_argument("--upstream", help="the index to mirror (overrides upstream.url)")
    serve.add_argument(
        "--role",
        choices=["standalone", "primary", "replica"],
        help="in a cluster (overrides replication.role)",
    )
    serve.add_argument(
        "--primary-url", help="follow this primary as a read replica (replication.primary_url)"
    )
    config = commands.add_parser("config", help="check or show the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    _config_arg(config_commands.add_parser("check", help="validate and report every problem"))
    _config_arg(config_commands.add_parser("show", help="print the effective config as JSON"))
    cache = commands.add_parser("cache", help="look after the file cache (daemon may be running)")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    for name, text in (
        ("stats", "files and bytes in the store (and the bucket, with s3)"),
        ("prune", "evict least recently used mirror files down to storage.max_size"),
        (
            "verify",
            "re-hash every stored file (and object, with s3); move corrupt ones to quarantine/",
        ),
    ):
        sub = cache_commands.add_parser(name, help=text)
        _config_arg(sub)
        sub.add_argument("--data-dir", type=Path, help="the daemon's data directory")
        if name == "prune":
            sub.add_argument("--max-size", help="target size, e.g. 20GB (default from config)")
    export = commands.add_parser(
        "export", help="write the hosted state to DEST (a dir, .tar or .tar.zst); server may run"
    )
    export.add_argument("dest", type=Path, help="a new directory, or a .tar / .tar.zst file")
    _config_arg(export)
    export.add_argument("--data-dir", type=Path, help="the data directory to export")
    export.add_argument(
        "--include-mirror",
        action="store_true",
        help="also the mirror's cached files and pages (an import then serves them warm)",
    )
    export.add_argument(
        "--include-wheelhouse",
        action="store_true",
        help="also the wheelhouse files' bytes (by default only their records)",
    )
    storage = commands.add_parser("storage", help="move the file store (daemon may be running)")
    storage_commands = storage.add_subparsers(dest="storage_command", required=True)
    migrate = storage_commands.add_parser(
        "migrate",
        help="copy every stored file (re-hashed first) into storage.s3's bucket; run it again "
        "after switching storage.backend to s3, for what was written meanwhile",
    )
    migrate.add_argument("--to", choices=["s3"], required=True, help="the backend to copy to")
    _config_arg(migrate)
    migrate.add_argument("--data-dir", type=Path, help="the daemon's data directory")
    restore = commands.add_parser(
        "import", help="build a new data dir from an export, or from a devpi-export dump"
    )
    restore.add_argument("src", type=Path, nargs="?", help="an export: dir, .tar or .tar.zst")
    restore.add_argument(
        "--from-devpi", type=Path, metavar="DUMPDIR", help="a devpi-export dump directory instead"
    )
    _config_arg(restore)
    restore.add_argument("--data-dir", type=Path, help="the new (empty) data directory")
    health = commands.add_parser(
        "healthcheck", help="exit 0 if the daemon on this data dir answers (HEALTHCHECK, probes)"
    )
    _config_arg(health)
    health.add_argument("--data-dir", type=Path, help="the daemon's data directory")
    health.add_argument("--ready", action="store_true", help="ask /+ready instead of /+health")
    health.add_argument("--timeout", type=float, default=4.0, help="seconds (default 4)")
    add_client_commands(commands)
    return parser


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="YAML config file (default: $WHEELWELL_CONFIG, else built-in)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    code = run_client_command(args)  # the client side: use, login, upload, index, …
    if code is not None:
        return code
    if args.command == "healthcheck":  # standard library only: it runs every few seconds
        from proxy import healthcheck

        return healthcheck.run(args)
    from proxy import servercli  # deferred on purpose: see the module docstring

    return servercli.run(args)
