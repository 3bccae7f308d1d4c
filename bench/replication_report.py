"""Scenario 10 in BENCHMARKS.md: its Targets row and its section, also spliced in alone."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from bench import replication
from bench.replication import CLIENTS, MODES, ReplicationResult
from bench.report import Check, splice, table

HEADING = "## 10. Replication: lag during upload bursts, catch-up of a fresh replica"


def _clients(n: int) -> str:
    return "1 client" if n == 1 else f"{n} clients"


def replication_checks(result: ReplicationResult | None) -> list[Check]:
    """The issue's target: replication lag p99 under 1 s on loopback, over every burst."""
    what = f"replication lag p99 during bursts of {replication.BURST} uploads (loopback)"
    goal = f"< {replication.LAG_P99_LIMIT_MS / 1000:g} s"
    if result is None:
        return [Check(what, "no figure", goal, False)]
    lag = result.lag()
    measured = (
        f"{lag.p99_ms:.1f} ms (p50 {lag.p50_ms:.1f} ms, max {lag.max_ms:.1f} ms, "
        f"{lag.uploads:,} uploads)"
    )
    ok = lag.uploads > 0 and lag.p99_ms < replication.LAG_P99_LIMIT_MS
    return [Check(what, measured, goal, ok)]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _machine() -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (
        f"Machine ({when}): {_cpu_model()} x {os.cpu_count()}, Python "
        f"{platform.python_version()}, kernel {platform.release()}. The primary, the replica, "
        "the uploading clients and the watcher all share these cores (and one disk), so the "
        "replica's work competes with the "
        "primary's for CPU here, which it would not on a machine of its own; the primary's "
        "CPU per upload is the figure that isolates what following costs the primary itself.\n"
    )


def _lag_table(result: ReplicationResult) -> str:
    rows = []
    for clients in (*MODES, None):
        lag = result.lag(clients)
        bursts = [
            b for b in result.bursts if b.watched and (clients is None or b.clients == clients)
        ]
        polls = sum(b.watch_requests for b in bursts)
        seconds = sum(b.seconds for b in bursts)
        rows.append(
            [
                "all bursts" if clients is None else _clients(clients),
                f"{lag.uploads:,}",
                f"{lag.p50_ms:.1f}",
                f"{lag.p99_ms:.1f}",
                f"{lag.max_ms:.1f}",
                f"{lag.uploads / max(seconds, 1e-9):.1f}",
                f"{polls / max(seconds, 1e-9):,.0f}",
            ]
        )
    header = ["uploads by", "uploads", "lag p50 ms", "lag p99 ms", "lag max ms", "uploads/s"]
    header.append("watcher HEAD/s")
    return table(header, rows)


def _throughput_table(result: ReplicationResult) -> str:
    rows = []
    for clients in MODES:
        alone, following = result.rate(0, clients), result.rate(1, clients)
        rows.append(
            [
                _clients(clients),
                f"{alone:.1f}",
                f"{following:.1f}",
                f"{following / max(alone, 1e-9):.2f}x",
                f"{result.cpu_ms(0, clients):.1f}",
                f"{result.cpu_ms(1, clients):.1f}",
                f"{result.replica_cpu_ms(clients):.1f}",
            ]
        )
    header = ["uploads by", "0 replicas /s", "1 replica /s", "ratio"]
    header += ["primary CPU ms/upload, 0 replicas", "1 replica", "replica CPU ms/upload"]
    return table(header, rows)


def _catch_up_table(result: ReplicationResult) -> str:
    c = result.catch_up
    rows = [
        [
            f"{c.entries:,} ({c.releases:,} releases)",
            f"{c.files:,}",
            f"{c.healthy_s:.2f}",
            f"{c.caught_up_s:.2f}",
            f"{c.files_done_s:.2f}",
            f"{c.entries_per_s:,.0f}",
            f"{c.files_per_s:,.0f}",
        ]
    ]
    header = ["changelog entries", "files", "first answer s", "at primary's serial s"]
    header += ["files_pending 0 s", "entries/s", "files/s"]
    return table(header, rows)


def replication_section(result: ReplicationResult | None, errors: list[str]) -> str:
    """Section 10; it also stands alone, for `bench/run.py --only replication`."""
    intro = (
        "A real primary and a real replica (`python -m proxy serve`, shared secret from "
        "`replication.secret_file`, `heartbeat: 1s`) on 127.0.0.1. Every change is a real "
        "upload: a tiny distinct wheel (`tests/fakes/dists.py`) POSTed multipart to "
        "`/root/public/` as twine does, with root's password. "
        f"(a) The primary is filled with {replication.RELEASES:,} releases "
        f"({replication.PROJECTS} projects x {replication.RELEASES // replication.PROJECTS} "
        "versions), then a replica with an empty data dir is started and its `/+status` polled "
        f"every {replication.CATCH_UP_POLL * 1000:.0f} ms: the time from its process start "
        "until it first answers, until it reports the primary's serial, and until "
        "`files_pending` is 0 (private files are copied in the background, "
        "`replication.file_copies` at a time). The rates count from its first answer, so "
        "Python's start is left out. "
        f"(b) Then, {result.runs if result else '?'} time(s), bursts of {replication.BURST} "
        f"uploads (one client, and {CLIENTS} clients at once, each on a keep-alive connection) "
        "go to the primary three ways: with the replica stopped (0 replicas); with it "
        "streaming (restarted, caught up and its files copied first); and streaming and "
        "watched, for the lag. Each burst with a replica ends when the replica has applied it "
        "and copied its files. During the watched bursts a thread of its own keeps one "
        "keep-alive connection to the replica issuing `HEAD /+health` with a "
        f"{replication.POLL * 1000:.0f} ms pause between answers and notes when each "
        "`X-Wheelwell-Serial` value (every response carries the serial the replica has "
        "applied) is first seen. An upload's lag is from the moment the primary's 200 (which "
        "carries the primary's serial once it committed) is read until the replica is first "
        "seen at that serial or later; with concurrent uploads that serial may already "
        "include a neighbour's upload, so the figure errs long; the watcher's own period "
        f"(a {replication.POLL * 1000:.0f} ms pause plus a round trip) is included too. "
        "Uploads/s and CPU (user + system from `/proc/<pid>/stat`, all threads) are from the "
        "unwatched bursts, the median over the runs; lag percentiles are over every upload of "
        "every watched burst (nearest rank).\n"
    )
    parts = [HEADING + "\n", intro, _machine()]
    own = [e for e in errors if e.startswith("replication")]
    if result is None:
        return "\n".join([*parts, "No figure. " + " ".join(own) + "\n"])
    fill_rate = replication.RELEASES / max(result.fill_seconds, 1e-9)
    parts += [
        "### 10a. Replication lag, 1 replica streaming\n",
        _lag_table(result),
        "### 10b. The primary's uploads with 0 replicas and with 1 replica streaming\n",
        "The ratio is uploads/s with the replica over uploads/s without, in the same run; "
        "the replica's CPU is what it spent replaying and copying the files, per upload.\n",
        _throughput_table(result),
        f"### 10c. A fresh replica catching up over {replication.RELEASES:,} releases\n",
        _catch_up_table(result),
        f"The {replication.RELEASES:,} fill uploads (one client, no replica) took "
        f"{result.fill_seconds:.1f} s ({fill_rate:.0f}/s); the "
        f"{len(result.bursts) * replication.BURST + replication.RELEASES:,} wheels were "
        f"built and encoded in {result.build_seconds:.1f} s.\n",
    ]
    if own:
        parts.append("Errors in this scenario: " + "; ".join(own)[:2000] + "\n")
    return "\n".join(parts)


def splice_replication(existing: str, result: ReplicationResult | None, errors: list[str]) -> str:
    """BENCHMARKS.md with only scenario 10's Targets row and section replaced (or added)."""
    checks = replication_checks(result)
    return splice(existing, checks, HEADING, replication_section(result, errors))
