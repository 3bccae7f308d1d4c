"""Scenario 11: `wheelwell export` and `wheelwell import` of 1,000 releases, speed and peak RSS.

A standalone daemon is filled with RELEASES real uploads (the replication scenario's wheels and
uploader); the export runs while it keeps running, as cron would run it, to a `.tar.zst`; the
import builds a new data dir from it. Each is one `python -m proxy` process, timed whole, its
peak RSS read from the kernel (`wait4`'s ru_maxrss).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.procs import BenchError
from bench.replication import RELEASES, Uploader, _clean_env, fresh_work, standalone
from bench.report import Check, splice, table
from bench.servers import REPO

HEADING = "## 11. Export and import of the whole server"
RSS_LIMIT_MB = 150.0


@dataclass(frozen=True, slots=True)
class Step:
    seconds: float
    peak_rss_mb: float


@dataclass(frozen=True, slots=True)
class BackupResult:
    releases: int
    archive_bytes: int
    export: Step
    imported: Step


def _run(argv: Sequence[str | Path]) -> Step:
    """One command, timed, with its peak RSS (ru_maxrss is in KiB on Linux)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(a) for a in argv],
        cwd=REPO,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = (proc.stdout.read() if proc.stdout else b"") + (
        proc.stderr.read() if proc.stderr else b""
    )
    if proc.stdout:
        proc.stdout.close()
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise BenchError(f"{argv[3]} failed ({proc.returncode}): {out.decode()[-500:]}")
    return Step(seconds, usage.ru_maxrss / 1024)


def measure_backup(say: Callable[[str], None] = lambda _: None) -> BackupResult:
    work, bodies = fresh_work("backup", RELEASES)
    archive = work / "export.tar.zst"
    with standalone(work) as daemon:
        say(f"backup: {RELEASES:,} releases into the server")
        Uploader(daemon.base).send(bodies, 1)
        say("backup: export while it runs")
        exported = _run(
            [sys.executable, "-m", "proxy", "export", archive, "--data-dir", work / "server"]
        )
    say("backup: import into a new data dir")
    imported = _run(
        [sys.executable, "-m", "proxy", "import", archive, "--data-dir", work / "restored"]
    )
    return BackupResult(RELEASES, archive.stat().st_size, exported, imported)


def backup_checks(result: BackupResult | None) -> list[Check]:
    what = f"export and import of {RELEASES:,} releases: peak RSS"
    goal = f"<= {RSS_LIMIT_MB:g} MB"
    if result is None:
        return [Check(what, "no figure", goal, False)]
    peak = max(result.export.peak_rss_mb, result.imported.peak_rss_mb)
    measured = (
        f"{peak:.1f} MB (export {result.releases / result.export.seconds:.0f} releases/s, "
        f"import {result.releases / result.imported.seconds:.0f} releases/s)"
    )
    return [Check(what, measured, goal, peak <= RSS_LIMIT_MB)]


def backup_section(result: BackupResult | None, errors: Sequence[str]) -> str:
    text = (
        f"{HEADING}\n\n"
        f"A standalone daemon holds {RELEASES:,} uploaded releases (with their PEP 658 metadata). "
        "`wheelwell export` runs while it keeps running, to a `.tar.zst`; `wheelwell import` "
        "builds a new data dir from it, checking every file against the manifest. Each is one "
        "process, timed whole (interpreter start included); peak RSS is the kernel's ru_maxrss.\n\n"
    )
    if result is None:
        return text + "No figures: " + "; ".join(errors) + "\n"
    rows = [
        [
            name,
            f"{step.seconds:.2f}",
            f"{result.releases / step.seconds:.0f}",
            f"{step.peak_rss_mb:.1f}",
        ]
        for name, step in (("export", result.export), ("import", result.imported))
    ]
    text += table(["step", "seconds", "releases/s", "peak RSS MB"], rows)
    return text + f"\nThe archive: {result.archive_bytes / 1e6:.1f} MB.\n"


def splice_backup(existing: str, result: BackupResult | None, errors: list[str]) -> str:
    return splice(existing, backup_checks(result), HEADING, backup_section(result, errors))
