"""Scenario 8 in BENCHMARKS.md: its two Targets rows and its section, also spliced in alone."""

from __future__ import annotations

from bench import security
from bench.report import Check, splice, table
from bench.scenarios import Results
from bench.security import Latency, SecurityResult

HEADING = "## 8. Login flood and random names"


def _mb(kib: int) -> float:
    return kib * 1024 / 1e6


def security_checks(results: Results) -> list[Check]:
    """(a) cached-file p99 under the flood within 2x of quiet; (b) RSS after the names."""
    flood_what = "cached-file p99 during a flood of wrong passwords, vs quiet"
    flood_goal = f"<= {security.P99_RATIO_LIMIT:g}x"
    rss_what = f"wheelwell RSS after {security.NAMES:,} random project names"
    rss_goal = f"<= {security.RSS_LIMIT_MB:g} MB"
    row = results.security
    if row is None:
        return [
            Check(flood_what, "no figure", flood_goal, False),
            Check(rss_what, "no figure", rss_goal, False),
        ]
    flood_ok = row.p99_ratio <= security.P99_RATIO_LIMIT and not (
        row.flood.errors or row.quiet.errors
    )
    measured = f"{row.p99_ratio:.2f}x ({row.flood.p99_ms:.1f} ms vs {row.quiet.p99_ms:.1f} ms)"
    rss_mb = _mb(row.rss_after_kib)
    return [
        Check(flood_what, measured, flood_goal, flood_ok),
        Check(rss_what, f"{rss_mb:.1f} MB", rss_goal, 0 < rss_mb <= security.RSS_LIMIT_MB),
    ]


def _answers(answers: dict[str, int]) -> str:
    return ", ".join(f"{count:,} x {status}" for status, count in sorted(answers.items()))


def _latency_row(label: str, latency: Latency, answers: dict[str, int] | None) -> list[str]:
    return [
        label,
        f"{latency.requests:,}",
        f"{latency.p50_ms:.2f}",
        f"{latency.p99_ms:.2f}",
        str(latency.errors),
        _answers(answers) if answers is not None else "—",
    ]


def security_section(results: Results) -> str:
    """Section 8; it also stands alone, for `bench/run.py --only security`."""
    intro = (
        f"(a) One client fetches a small cached mirror file over and over (keep-alive, one request "
        f"at a time, {security.SAMPLE_SECONDS:g} s per row). Then `bench/hammer.py`, a process of "
        f"its own, keeps {security.FLOOD_CONNECTIONS} connections busy with wrong passwords for "
        f"{security.FLOOD_USERS} existing users from {security.FLOOD_ADDRESSES} loopback source "
        "addresses, so password hashing runs the whole time (each address and user has its own "
        "budget) and most answers are 429. The daemon answers refused logins late (the tarpit: "
        "a 429 after about 1 s, a 401 no sooner than 0.5 s), so each connection, although it "
        "retries at once, gets one or two answers a second. The control row floods unknown user "
        "names instead "
        "(nothing is hashed): the difference between the two rows is what hashing costs serving; "
        "the rest is the request volume itself on this machine's cores. The paced row sends the "
        "same wrong passwords with each client pausing between attempts, a load the event loop "
        "can absorb, so it isolates hashing's effect on serving. Only the back-to-back flood is "
        "scored. "
        f"(b) {security.NAMES:,} random project names are then asked of `root/public` (a private "
        f"index over the mirror; the upstream answers 404) by {security.NAMES_CONNECTIONS} "
        "connections, and the daemon's VmRSS is read.\n"
    )
    row: SecurityResult | None = results.security
    if row is None:
        errors = [e for e in results.errors if e.startswith("login flood")]
        return "\n".join([HEADING + "\n", intro, "No figure. " + " ".join(errors) + "\n"])
    rows = [
        _latency_row("quiet", row.quiet, None),
        _latency_row("flood of wrong passwords", row.flood, row.flood_answers),
        _latency_row("control: flood of unknown users", row.control, row.control_answers),
        _latency_row(
            f"paced: wrong passwords, each client once per {security.PACED_PAUSE:g} s",
            row.paced,
            row.paced_answers,
        ),
    ]
    header = ["cached file", "requests", "p50 ms", "p99 ms", "errors", "flood answers"]
    memory = (
        f"{row.names:,} random names in {row.names_seconds:.0f} s ({_answers(row.names_answers)}): "
        f"VmRSS {_mb(row.rss_before_kib):.1f} MB before, {_mb(row.rss_after_kib):.1f} MB after; "
        f"VmHWM {_mb(row.hwm_kib):.1f} MB.\n"
    )
    return "\n".join([HEADING + "\n", intro, table(header, rows), memory])


def splice_security(existing: str, results: Results) -> str:
    """BENCHMARKS.md with only scenario 8's Targets rows and section replaced (or added)."""
    return splice(existing, security_checks(results), HEADING, security_section(results))
