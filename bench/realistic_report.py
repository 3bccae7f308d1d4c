"""Scenario 9 in BENCHMARKS.md: its Targets rows and its section, also spliced in alone."""

from __future__ import annotations

from bench.realistic import (
    PAGE_INTERVAL,
    WARM_ROOT_FETCHES,
    ClientRow,
    Phase,
    RealisticResult,
    RootListRow,
)
from bench.realistic_upstream import DELAY, ROOT_NAMES
from bench.report import Check, splice, table

HEADING = (
    f"## 9. Realistic upstream: {DELAY * 1000:.0f} ms away, no PEP 658 metadata, "
    f"{ROOT_NAMES:,}-name root list"
)
ORDER = ("nginx", "nginx-near", "wheelwell", "proxpi", "devpi")
WARM_RATIO = 0.1
COLD_RATIO = 1.0
RSS_LIMIT_MB = 100.0
PAGE_P99_MS = 50.0
WARM_ROOT_MS = 50.0


def _mb(kib: int) -> float:
    return kib * 1024 / 1e6


def _ratio(rows: dict[str, ClientRow], name: str) -> float | None:
    ours, direct = rows.get(name), rows.get("nginx")
    if ours is None or direct is None:
        return None
    return ours.seconds / max(direct.seconds, 1e-9)


def realistic_checks(result: RealisticResult | None) -> list[Check]:
    """The issue's targets for wheelwell, ratios against direct within the same run."""
    warm_what = "realistic upstream: warm uv pip compile, time and upstream requests"
    warm_goal = f"<= {WARM_RATIO:g}x direct, 0 requests"
    cold_what = "realistic upstream: cold uv pip compile, time"
    cold_goal = f"<= {COLD_RATIO:g}x direct"
    rss_what = f"realistic upstream: wheelwell peak RSS through the {ROOT_NAMES:,}-name root list"
    rss_goal = f"<= {RSS_LIMIT_MB:g} MB"
    p99_what = "realistic upstream: warm 1-file page p99 during a cold root-list fetch"
    p99_goal = f"<= {PAGE_P99_MS:g} ms"
    root_what = "realistic upstream: warm root list"
    root_goal = f"<= {WARM_ROOT_MS:g} ms"
    uv = result.uv if result else {}
    warm_rows, cold_rows = uv.get(Phase.WARM, {}), uv.get(Phase.COLD, {})
    checks = []
    warm = _ratio(warm_rows, "wheelwell")
    if warm is None:
        checks.append(Check(warm_what, "no figure", warm_goal, False))
    else:
        requests = warm_rows["wheelwell"].traffic.requests
        ok = warm <= WARM_RATIO and requests == 0
        checks.append(Check(warm_what, f"{warm:.2f}x, {requests:,} requests", warm_goal, ok))
    cold = _ratio(cold_rows, "wheelwell")
    if cold is None:
        checks.append(Check(cold_what, "no figure", cold_goal, False))
    else:
        checks.append(Check(cold_what, f"{cold:.2f}x", cold_goal, cold <= COLD_RATIO))
    root = result.root.get("wheelwell") if result else None
    if root is None:
        checks += [
            Check(rss_what, "no figure", rss_goal, False),
            Check(p99_what, "no figure", p99_goal, False),
            Check(root_what, "no figure", root_goal, False),
        ]
        return checks
    rss = _mb(root.peak_rss_kib)
    p99_measured = f"{root.page_p99_ms:.1f} ms ({root.page_samples:,} requests)"
    p99_ok = root.page_samples > 0 and root.page_p99_ms <= PAGE_P99_MS and not root.page_errors
    if root.page_errors:
        p99_measured += f", {root.page_errors} errors"
    checks += [
        Check(rss_what, f"{rss:.1f} MB", rss_goal, 0 < rss <= RSS_LIMIT_MB),
        Check(p99_what, p99_measured, p99_goal, p99_ok),
        Check(root_what, f"{root.warm_ms:.1f} ms", root_goal, root.warm_ms <= WARM_ROOT_MS),
    ]
    return checks


def _label(name: str) -> str:
    labels = {"nginx": "direct (nginx)", "nginx-near": "direct, no delay (client floor)"}
    return labels.get(name, name)


def _client_table(rows: dict[Phase, dict[str, ClientRow]]) -> str:
    out = []
    for name in ORDER:
        for phase in Phase:
            row = rows.get(phase, {}).get(name)
            if row is None:
                continue
            ratio = _ratio(rows[phase], name)
            t = row.traffic
            out.append(
                [
                    _label(name),
                    str(phase),
                    f"{row.seconds:.2f}",
                    f"{ratio:.2f}x" if ratio is not None else "—",
                    f"{t.requests:,}",
                    f"{t.heads:,}",
                    f"{t.ranges:,}",
                    f"{t.body_bytes:,}",
                    str(row.runs),
                ]
            )
    header = ["via", "run", "seconds", "vs direct", "upstream requests", "HEAD", "Range"]
    return table([*header, "upstream bytes", "runs"], out)


def _root_table(rows: dict[str, RootListRow]) -> str:
    out = []
    for name in ORDER:
        row = rows.get(name)
        if row is None:
            continue
        errors = f", {row.page_errors} errors" if row.page_errors else ""
        out.append(
            [
                _label(name),
                f"{row.cold_seconds:.2f}",
                f"{row.root_bytes:,}",
                f"{row.page_samples:,}{errors}",
                f"{row.page_p50_ms:.1f}",
                f"{row.page_p99_ms:.1f}",
                f"{row.page_max_ms:.1f}",
                f"{row.warm_ms:.1f}",
                f"{_mb(row.peak_rss_kib):.1f}" if row.peak_rss_kib else "—",
                f"{row.upstream.requests:,}",
                str(row.runs),
            ]
        )
    header = ["via", "cold fetch s", "bytes", "page requests due during it", "page p50 ms"]
    header += [
        "page p99 ms",
        "page max ms",
        "warm root ms",
        "peak RSS MB",
        "upstream requests",
        "runs",
    ]
    return table(header, out)


def realistic_section(result: RealisticResult | None, errors: list[str]) -> str:
    """Section 9; it also stands alone, for `bench/run.py --only realistic`."""
    intro = (
        "The same wheels as above, served by a second nginx over a variant of the dataset with "
        "no `.metadata` files and no `data-core-metadata`/`core-metadata` attributes (the shape "
        f"of Nexus, Artifactory or an older devpi) and a root list of {ROOT_NAMES:,} made-up "
        "names around the real projects (HTML and PEP 691 JSON), reached only through "
        f"`bench/delay.py`: a TCP proxy that delays every chunk a client sends by "
        f"{DELAY * 1000:.0f} ms and every new connection by as much again (answers come back "
        "unthrottled; this container's kernel has no netem). Direct means uv or pip straight at "
        'the delaying proxy; each proxy has it as its upstream. "Direct, no delay" is the '
        "client straight at that nginx with no delay: its own CPU and its no-metadata fallback "
        "at loopback speed, the least a warm proxy can take (it shows where the 0.1x target "
        "lies against the client's own floor). Upstream figures are from the "
        "second nginx's access log: every request, its HEADs, its Range requests and the body "
        "bytes sent.\n"
    )
    clients = (
        "Cold: a fresh target data dir; warm: the same target process again right after. "
        "Client caches are off both times (a fresh uv cache dir; pip with `--no-cache-dir`).\n"
    )
    root_intro = (
        "On a fresh target the 1-file page is requested twice, then the root list "
        "(`/root/pypi/+simple/`, proxpi `/index/`) is fetched cold by curl in its own process "
        "while one keep-alive client requests the 1-file page, one request due every "
        f"{PAGE_INTERVAL * 1000:.0f} ms; each latency counts from when its request was due, so a "
        "stall of the server counts for every request it held up (as wrk2 does). Then "
        f"the root list is fetched warm {WARM_ROOT_FETCHES} times (median), and the server's "
        "VmHWM (all its processes) is read. Direct's row is "
        "nginx through the delaying proxy, for reference (each of its page requests costs the "
        "30 ms round trip, so its page figures show only the delay).\n"
    )
    parts = [HEADING + "\n", intro]
    if result is None:
        own = [e for e in errors if e.startswith("realistic")]
        return "\n".join([*parts, "No figure. " + " ".join(own) + "\n"])
    generated = (
        "reused from an earlier run"
        if result.generate_seconds is None
        else f"generated in {result.generate_seconds:.0f} s"
    )
    parts.append(
        f"The variant (`bench/work/realistic/upstream/`, root list "
        f"{result.root_list_bytes / 1e6:.0f} MB of HTML) was {generated}. Each figure is the "
        f"median of {result.runs} run(s).\n"
    )
    parts += [
        "### 9a. `uv pip compile` of the 100-package graph\n",
        clients,
        _client_table(result.uv),
        "### 9b. `pip install --target DIR --no-cache-dir` of 20 wheels\n",
        _client_table(result.pip),
        f"### 9c. The {ROOT_NAMES:,}-name root list\n",
        root_intro,
        _root_table(result.root),
    ]
    own = [e for e in errors if e.startswith("realistic")]
    if own:
        parts.append("Errors in this scenario: " + "; ".join(own)[:2000] + "\n")
    return "\n".join(parts)


def splice_realistic(existing: str, result: RealisticResult | None, errors: list[str]) -> str:
    """BENCHMARKS.md with only scenario 9's Targets rows and section replaced (or added)."""
    return splice(existing, realistic_checks(result), HEADING, realistic_section(result, errors))
