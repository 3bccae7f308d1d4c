"""Run every scenario against every target, with all servers stopped at the end whatever happens."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


def _measure_wheelhouse(
    results: scenarios.Results, cfg: scenarios.Settings, upstream: str | None
) -> None:
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
    _measure_wheelhouse(results, cfg, None)
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
    return _write_only(
        lambda existing: security_report.splice_security(existing, results),
        security_report.security_section(results),
        security_report.security_checks(results),
        results.errors,
    )


@dataclass(frozen=True, slots=True)
class Alone:
    """What a scenario with servers of its own (9 to 13) is run with."""

    proxies: Sequence[str]
    cfg: scenarios.Settings
    source: Callable[[], Path]  #: the loopback dataset's root (realistic's no-metadata variant)
    errors: list[str]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One of scenarios 9 to 13: run after the loopback ones, or alone by `--only NAME`."""

    label: str  #: names it in progress lines and errors
    measure: Callable[[Alone], Any]
    checks: Callable[[Any], list[report.Check]]
    section: Callable[[Any, list[str]], str]
    splice: Callable[[str, Any, list[str]], str]
    fails: tuple[type[Exception], ...] = (BenchError, OSError)  #: recorded, the run goes on
    tools: bool = False  #: alone, it needs nginx and the peers' venv


def _realistic(run: Alone) -> realistic.RealisticResult:
    """Scenario 9; its own nginx and delaying proxy, after the loopback upstream is stopped."""
    _say(f"realistic upstream: {run.cfg.runs} run(s) x {1 + len(run.proxies)} targets")
    return realistic.measure_realistic(run.source, run.proxies, run.cfg.runs, _say, run.errors)


def _replication(run: Alone) -> replication.ReplicationResult:
    """Scenario 10; its own primary and replica, with nothing else running."""
    _say(f"replication: {replication.RELEASES:,} releases, then {run.cfg.runs} run(s) of bursts")
    return replication.measure_replication(run.cfg.runs, _say)


#: by their `--only` names, in the order the suite runs them and BENCHMARKS.md shows them
ALONE = {
    "realistic": Scenario(
        "realistic upstream",
        _realistic,
        realistic_report.realistic_checks,
        realistic_report.realistic_section,
        realistic_report.splice_realistic,
        tools=True,
    ),
    "replication": Scenario(
        "replication",
        _replication,
        replication_report.replication_checks,
        replication_report.replication_section,
        replication_report.splice_replication,
    ),
    # 11: export and import of a filled server
    "backup": Scenario(
        "backup",
        lambda _: backup.measure_backup(_say),
        backup.backup_checks,
        backup.backup_section,
        backup.splice_backup,
    ),
    # 12: upload latency with hung webhooks vs none
    "hooks": Scenario(
        "hooks",
        lambda _: hooks.measure_hooks(_say),
        hooks.hooks_checks,
        hooks.hooks_section,
        hooks.splice_hooks,
    ),
    # 13: a 200 MB file through the s3 backend vs the local one
    "s3": Scenario(
        "s3",
        lambda run: objectstore.measure_objectstore(run.cfg.runs, _say),
        objectstore.objectstore_checks,
        objectstore.objectstore_section,
        objectstore.splice_objectstore,
        fails=(BenchError, OSError, AssertionError),
    ),
}


def _measure_alone(scenario: Scenario, run: Alone) -> Any:
    """The scenario's result, or None with its failure recorded in `run.errors`."""
    started = time.perf_counter()
    try:
        result = scenario.measure(run)
    except scenario.fails as exc:
        _say(f"{scenario.label}: FAILED: {exc}")
        run.errors.append(f"{scenario.label}: {exc}")
        return None
    _say(f"{scenario.label}: done in {time.perf_counter() - started:.1f}s")
    return result


def run_alone(name: str, proxies: Sequence[str], cfg: scenarios.Settings) -> int:
    """`run.py --only NAME` for the scenarios of ALONE: only its rows and section are replaced
    in BENCHMARKS.md (the loopback dataset is generated only when realistic's no-metadata
    variant has to be)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    scenario = ALONE[name]
    if scenario.tools:
        provision.ensure_tools()
        provision.ensure_bench_venv()

    def source() -> Path:
        _say("generating the upstream's data (for the no-metadata variant)")
        return build_dataset(WORK / "upstream").root

    errors: list[str] = []
    result = _measure_alone(scenario, Alone(proxies, cfg, source, errors))
    return _write_only(
        lambda existing: scenario.splice(existing, result, errors),
        scenario.section(result, errors),
        scenario.checks(result),
        errors,
    )


def _write_only(
    splice: Callable[[str], str], section: str, checks: Sequence[report.Check], errors: list[str]
) -> int:
    """An `--only` run's end: its rows and section spliced into BENCHMARKS.md, PASS/FAIL said."""
    path = REPO / "BENCHMARKS.md"
    existing = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(splice(existing))
    print(section)
    for check in checks:
        _say(f"{check.what}: {check.measured} ({check.goal}): {'PASS' if check.passed else 'FAIL'}")
    return 0 if all(c.passed for c in checks) and not errors else 1


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
    run = Alone(proxies, cfg, lambda: ds.root, results.errors)
    alone = [(scenario, _measure_alone(scenario, run)) for scenario in ALONE.values()]
    rss = {t.name: t.peak_rss_kib for t in targets if t.is_proxy}
    checks = [
        *report.build_checks(results, rss.get("wheelwell", 0)),
        *security_report.security_checks(results),
        *(check for scenario, result in alone for check in scenario.checks(result)),
    ]
    sections = [
        security_report.security_section(results),
        *(scenario.section(result, results.errors) for scenario, result in alone),
    ]
    text = report.render(results, machine, cfg, rss, checks, sections)
    (REPO / "BENCHMARKS.md").write_text(text)
    print(text)
    failed = [c.what for c in checks if not c.passed]
    _say(f"wrote BENCHMARKS.md; {len(failed)} target(s) failed, {len(results.errors)} error(s)")
    return 1 if failed or results.errors else 0
