"""`make bench`: wheelwell against proxpi, devpi and plain nginx, on loopback and 30 ms away.

What is measured, and why:
1. warm simple pages (HTML and PEP 691 JSON; a 1-file and a 2,000-file project) with wrk:
   req/s and p99, because page serving is what every resolver does most;
2. warm ~20 MB file MiB/s vs nginx, because cached files should go out at sendfile speed;
3. cold `pip download` of 20 wheels and 4. cold `uv pip compile` of a 100-package graph:
   wall time and bytes pulled from the upstream, because a proxy must not slow a cold CI job
   down or download more than the client would;
5. 16 concurrent cold clients on one file: upstream GETs (single flight) and body hashes;
6. wheelwell's peak RSS, because memory must not grow with file size or client count;
7. wheelwell's start-up with 10,000 files in a wheelhouse directory, first (cold scan) and
   later starts, because a restart must not re-hash what the daemon already knows;
8. a cached file's p50/p99 during a flood of wrong passwords vs quiet, and RSS after 100,000
   random project names, because no client may starve serving or grow memory without bound;
9. a realistic upstream (nginx behind `bench/delay.py`, 30 ms per request and per new
   connection, no PEP 658 metadata, a 700,000-name root list): cold and warm `uv pip compile`
   and `pip install` with upstream requests/bytes/HEADs/Ranges vs direct, and the root list's
   peak RSS, a warm 1-file page's p99 during its cold fetch, and its warm time, because real
   upstreams are far away and many offer no metadata (run alone: `--only realistic`);
10. a primary and a read replica: replication lag p50/p99/max during bursts of 100 uploads,
   the primary's uploads/s (and CPU per upload) with 0 vs 1 replica streaming, and a fresh
   replica's catch-up over 1,000 releases (entries/s, files/s), because replicas must follow
   within a second and must not slow the primary down (run alone: `--only replication`);
11. `wheelwell export` of a running server with 1,000 releases and `wheelwell import` of it:
   releases/s and peak RSS of each (run alone: `--only backup`);
12. upload latency to an index with 5 webhooks whose receiver hangs vs one with none: the
   ratio of the medians, because a hook must never slow an upload (run alone: `--only hooks`).
13. storage.backend s3 on a real SeaweedFS: a warm 200 MB file's MB/s streamed from the
   bucket, from the disk copy and redirected, against the local backend, and a cold 200 MB
   mirror download through each (run alone: `--only s3`).
The script installs what it needs (nginx and wrk via apt-get, the peers in `.bench-venv/`),
generates the data under `bench/work/`, and writes BENCHMARKS.md with PASS/FAIL per target.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions per figure (median)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument(
        "--proxies",
        default="wheelwell,proxpi,devpi",
        help="comma-separated subset of wheelwell,proxpi,devpi",
    )
    parser.add_argument(
        "--only",
        choices=["wheelhouse", "security", "realistic", "replication", "backup", "hooks", "s3"],
        help="run one scenario alone and update only its parts of BENCHMARKS.md",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.scenarios import Settings
    from bench.servers import PROXIES
    from bench.suite import run_alone, run_security_only, run_suite, run_wheelhouse_only

    settings = Settings(runs=args.runs, duration=args.duration)
    if args.only == "security":
        return run_security_only()
    if args.only == "wheelhouse":
        return run_wheelhouse_only(settings)
    proxies = [p for p in args.proxies.split(",") if p]
    if args.only is not None and args.only != "realistic":  # only realistic runs the peers
        return run_alone(args.only, proxies, settings)
    unknown = set(proxies) - set(PROXIES)
    if unknown:
        parser.error(f"unknown proxies: {', '.join(sorted(unknown))}")
    if args.only == "realistic":
        return run_alone(args.only, proxies, settings)
    return run_suite(proxies, settings)


if __name__ == "__main__":
    sys.exit(main())
