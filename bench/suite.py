"""Run every scenario against every target, with all servers stopped at the end whatever happens."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bench import (
    backup,
    hooks,
    objectstore,
    provision,
    realistic,
    realistic_report,
    replication,
    replication_report,
    report,
    scenarios,
    security,
    security_report,
    wheelhouse,
)
from bench.dataset import Dataset, build_dataset
from bench.procs import BenchError
from bench.servers import PROXIES, REPO, WORK, Direct, DirectOneWorker, Nginx, Target


def _say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _attempt(results: scenarios.Results, what: str, step: Callable[[], None]) -> None:
    """Run one scenario step; a failure is recorded for the report and the run goes on."""
    started = time.perf_counter()
    try:
        step()
        _say(f"{what}: done in {time.perf_counter() - started:.1f}s")
    except (BenchError, OSError) as exc:
        _say(f"{what}: FAILED: {exc}")
        results.errors.append(f"{what}: {exc}")


def _measure(
    targets: Sequence[Target], upstream: Nginx, ds: Dataset, cfg: scenarios.Settings
) -> scenarios.Results:
    results = scenarios.Results()
    for target in targets:

        def warm(t: Target = target) -> None:
            scenarios.measure_warm(t, upstream, ds, cfg, results)

        _attempt(results, f"warm pages and file: {target.name}", warm)
    reference = DirectOneWorker(upstream)
    try:
        _attempt(
            results,
            "warm file: nginx with 1 worker",
            lambda: scenarios.measure_warm(reference, upstream, ds, cfg, results, pages=False),
        )
    finally:
        reference.stop()
    _measure_cold(targets, upstream, ds, cfg, results)
    for target in targets:
        if target.is_proxy:

            def stampede(t: Target = target) -> None:
                results.stampede[t.name] = scenarios.measure_stampede(t, upstream, ds)

            _attempt(results, f"{scenarios.STAMPEDE_CLIENTS} cold clients: {target.name}", stampede)
    _measure_wheelhouse(results, cfg, f"{upstream.url}/simple/")
    _measure_security(results)
    return results


def _measure_security(results: scenarios.Results) -> None:
    """Scenario 8; its own daemon and its own loopback upstream."""
    _say(f"login flood and {security.NAMES:,} random names")

    def step() -> None:
        results.security = security.measure_security()

    _attempt(results, "login flood and random names", step)


def _measure_wheelhouse(results: scenarios.Results, cfg: scenarios.Settings, upstream: str) -> None:
    """Scenario 7; nothing is fetched from `upstream` (the wheelhouse hides the mirror)."""
    _say(f"wheelhouse start-up: {wheelhouse.FILES:,} files, 1 + {cfg.runs} + 1 starts")

    def step() -> None:
        results.wheelhouse = wheelhouse.measure_wheelhouse(cfg.runs, upstream)

    _attempt(results, "wheelhouse start-up", step)


def _measure_cold(
    targets: Sequence[Target],
    upstream: Nginx,
    ds: Dataset,
    cfg: scenarios.Settings,
    results: scenarios.Results,
) -> None:
    for label, client, store in (
        ("cold pip download", scenarios.pip_client(ds), results.pip),
        ("cold uv pip compile", scenarios.uv_client(ds.graph_requirements), results.uv),
        (
            "cold uv pip compile (chain)",
            scenarios.uv_client(ds.chain_requirements),
            results.uv_chain,
        ),
    ):
        _say(f"{label}: {cfg.runs} runs x {len(targets)} targets")
        rows, errors = scenarios.measure_cold(targets, upstream, client, cfg.runs, label)
        store.update(rows)
        results.errors.extend(errors)


def run_wheelhouse_only(cfg: scenarios.Settings) -> int:
    """`run.py --only wheelhouse`: scenario 7 alone; only its row and section of BENCHMARKS.md
    are replaced (no nginx needed: the mirror's upstream is a loopback port nobody uses)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    results = scenarios.Results()
    _say(f"wheelhouse start-up: {wheelhouse.FILES:,} files, 1 + {cfg.runs} + 1 starts")

    def step() -> None:
        results.wheelhouse = wheelhouse.measure_wheelhouse(cfg.runs)

    _attempt(results, "wheelhouse start-up", step)
    path = REPO / "BENCHMARKS.md"
    existing = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(report.splice_wheelhouse(existing, results))
    check = report.wheelhouse_check(results)
    print(report.wheelhouse_section(results))
    verdict = "PASS" if check.passed else "FAIL"
    _say(f"updated BENCHMARKS.md: {check.what}: {check.measured} ({check.goal}): {verdict}")
    return 0 if check.passed and not results.errors else 1


def run_security_only() -> int:
    """`run.py --only security`: scenario 8 alone; only its rows and section are replaced."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    results = scenarios.Results()
    _measure_security(results)
    path = REPO / "BENCHMARKS.md"
    existing = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(security_report.splice_security(existing, results))
    print(security_report.security_section(results))
    checks = security_report.security_checks(results)
    for check in checks:
        _say(f"{check.what}: {check.measured} ({check.goal}): {'PASS' if check.passed else 'FAIL'}")
    return 0 if all(c.passed for c in checks) and not results.errors else 1


def _measure_realistic(
    proxies: Sequence[str],
    cfg: scenarios.Settings,
    source: Callable[[], Path],
    errors: list[str],
) -> realistic.RealisticResult | None:
    """Scenario 9; its own nginx and delaying proxy, after the loopback upstream is stopped."""
    _say(f"realistic upstream: {cfg.runs} run(s) x {1 + len(proxies)} targets")
    started = time.perf_counter()
    try:
        result = realistic.measure_realistic(source, proxies, cfg.runs, _say, errors)
    except (BenchError, OSError) as exc:
        _say(f"realistic upstream: FAILED: {exc}")
        errors.append(f"realistic upstream: {exc}")
        return None
    _say(f"realistic upstream: done in {time.perf_counter() - started:.1f}s")
    return result


def run_realistic_only(proxies: Sequence[str], cfg: scenarios.Settings) -> int:
    """`run.py --only realistic`: scenario 9 alone; only its rows and section are replaced (the
    loopback dataset is generated only when the no-metadata variant has to be)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    provision.ensure_tools()
    provision.ensure_bench_venv()
    errors: list[str] = []

    def source() -> Path:
        _say("generating the upstream's data (for the no-metadata variant)")
        return build_dataset(WORK / "upstream").root

    result = _measure_realistic(proxies, cfg, source, errors)
    return _write_only(
        realistic_report.splice_realistic,
        realistic_report.realistic_section,
        realistic_report.realistic_checks(result),
        result,
        errors,
    )


def _write_only(
    splice: Callable[[str, Any, list[str]], str],
    section: Callable[[Any, list[str]], str],
    checks: Sequence[report.Check],
    result: object,
    errors: list[str],
) -> int:
    """An `--only` run's end: its row and section spliced into BENCHMARKS.md, PASS/FAIL said."""
    path = REPO / "BENCHMARKS.md"
    existing = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(splice(existing, result, errors))
    print(section(result, errors))
    for check in checks:
        _say(f"{check.what}: {check.measured} ({check.goal}): {'PASS' if check.passed else 'FAIL'}")
    return 0 if all(c.passed for c in checks) and not errors else 1


def _measure_replication(
    cfg: scenarios.Settings, errors: list[str]
) -> replication.ReplicationResult | None:
    """Scenario 10; its own primary and replica, with nothing else running."""
    _say(f"replication: {replication.RELEASES:,} releases, then {cfg.runs} run(s) of bursts")
    started = time.perf_counter()
    try:
        result = replication.measure_replication(cfg.runs, _say)
    except (BenchError, OSError) as exc:
        _say(f"replication: FAILED: {exc}")
        errors.append(f"replication: {exc}")
        return None
    _say(f"replication: done in {time.perf_counter() - started:.1f}s")
    return result


def _measure_backup(errors: list[str]) -> backup.BackupResult | None:
    """Scenario 11: export and import of a filled server."""
    started = time.perf_counter()
    try:
        result = backup.measure_backup(_say)
    except (BenchError, OSError) as exc:
        _say(f"backup: FAILED: {exc}")
        errors.append(f"backup: {exc}")
        return None
    _say(f"backup: done in {time.perf_counter() - started:.1f}s")
    return result


def _measure_hooks(errors: list[str]) -> hooks.HooksResult | None:
    """Scenario 12: upload latency with hung webhooks vs none."""
    started = time.perf_counter()
    try:
        result = hooks.measure_hooks(_say)
    except (BenchError, OSError) as exc:
        _say(f"hooks: FAILED: {exc}")
        errors.append(f"hooks: {exc}")
        return None
    _say(f"hooks: done in {time.perf_counter() - started:.1f}s")
    return result


def run_hooks_only() -> int:
    """`run.py --only hooks`: scenario 12 alone; only its row and section are replaced."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    errors: list[str] = []
    result = _measure_hooks(errors)
    return _write_only(
        hooks.splice_hooks, hooks.hooks_section, hooks.hooks_checks(result), result, errors
    )


def _measure_objectstore(runs: int, errors: list[str]) -> objectstore.ObjectStoreResult | None:
    """Scenario 13: a 200 MB file through the s3 backend vs the local one."""
    started = time.perf_counter()
    try:
        result = objectstore.measure_objectstore(runs, _say)
    except (BenchError, OSError, AssertionError) as exc:
        _say(f"s3: FAILED: {exc}")
        errors.append(f"s3: {exc}")
        return None
    _say(f"s3: done in {time.perf_counter() - started:.1f}s")
    return result


def run_objectstore_only(runs: int) -> int:
    """`run.py --only s3`: scenario 13 alone; only its row and section are replaced."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    errors: list[str] = []
    result = _measure_objectstore(runs, errors)
    return _write_only(
        objectstore.splice_objectstore,
        objectstore.objectstore_section,
        objectstore.objectstore_checks(result),
        result,
        errors,
    )


def run_backup_only() -> int:
    """`run.py --only backup`: scenario 11 alone; only its row and section are replaced."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    errors: list[str] = []
    result = _measure_backup(errors)
    return _write_only(
        backup.splice_backup, backup.backup_section, backup.backup_checks(result), result, errors
    )


def run_replication_only(cfg: scenarios.Settings) -> int:
    """`run.py --only replication`: scenario 10 alone; only its row and section are replaced."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    errors: list[str] = []
    result = _measure_replication(cfg, errors)
    return _write_only(
        replication_report.splice_replication,
        replication_report.replication_section,
        replication_report.replication_checks(result),
        result,
        errors,
    )


def run_suite(proxies: Sequence[str], cfg: scenarios.Settings) -> int:
    """Set up, measure, stop everything, write BENCHMARKS.md; exit status 1 on any FAIL or error."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    provision.ensure_tools()
    provision.ensure_bench_venv()
    machine = provision.describe_machine()
    _say("generating the upstream's data")
    ds = build_dataset(WORK / "upstream")
    upstream = Nginx(ds.root, WORK / "nginx")
    targets: list[Target] = [Direct(upstream), *(PROXIES[name](upstream) for name in proxies)]
    with contextlib.ExitStack() as stack:
        stack.callback(upstream.stop)
        for target in targets:
            stack.callback(target.stop)
        upstream.start()
        results = _measure(targets, upstream, ds, cfg)
    real = _measure_realistic(proxies, cfg, lambda: ds.root, results.errors)
    cluster = _measure_replication(cfg, results.errors)
    saved = _measure_backup(results.errors)
    hooked = _measure_hooks(results.errors)
    stored = _measure_objectstore(cfg.runs, results.errors)
    rss = {t.name: t.peak_rss_kib for t in targets if t.is_proxy}
    checks = [
        *report.build_checks(results, rss.get("wheelwell", 0)),
        *security_report.security_checks(results),
        *realistic_report.realistic_checks(real),
        *replication_report.replication_checks(cluster),
        *backup.backup_checks(saved),
        *hooks.hooks_checks(hooked),
        *objectstore.objectstore_checks(stored),
    ]
    sections = [
        security_report.security_section(results),
        realistic_report.realistic_section(real, results.errors),
        replication_report.replication_section(cluster, results.errors),
        backup.backup_section(saved, results.errors),
        hooks.hooks_section(hooked, results.errors),
        objectstore.objectstore_section(stored, results.errors),
    ]
    text = report.render(results, machine, cfg, rss, checks, sections)
    (REPO / "BENCHMARKS.md").write_text(text)
    print(text)
    failed = [c.what for c in checks if not c.passed]
    _say(f"wrote BENCHMARKS.md; {len(failed)} target(s) failed, {len(results.errors)} error(s)")
    return 1 if failed or results.errors else 0
