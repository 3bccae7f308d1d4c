"""Turn results into BENCHMARKS.md: one table per scenario, then the ratios against the targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench import wheelhouse
from bench.load import WrkResult
from bench.scenarios import FORMATS, PAGES, STAMPEDE_CLIENTS, ColdRow, Results, Settings

TARGET_ORDER = ("nginx", "wheelwell", "proxpi", "devpi")
RSS_LIMIT_MB = 100.0
WHEELHOUSE_LIMIT_S = 3.0
WHEELHOUSE_HEADING = f"## 7. Wheelhouse start-up, {wheelhouse.FILES:,} files"


@dataclass(frozen=True, slots=True)
class Check:
    """One target from the brief, with what was measured."""

    what: str
    measured: str
    goal: str
    passed: bool


def _page(results: Results, target: str, page: str, fmt: str) -> WrkResult | None:
    for row in results.pages:
        if (row.target, row.page, row.fmt) == (target, page, fmt):
            return row.result
    return None


def _ratio_check(what: str, ours: WrkResult | None, theirs: WrkResult | None, goal: float) -> Check:
    """wheelwell / peer >= goal (req/s, or MiB/s for files); no figure or errors fail."""
    if ours is None or theirs is None:
        return Check(what, "no figure", f">= {goal:g}x", False)
    attr = "mib_per_s" if "MiB/s" in what else "requests_per_s"
    ratio = getattr(ours, attr) / max(getattr(theirs, attr), 1e-9)
    measured = f"{ratio:.2f}x"
    if ours.bad_responses:
        measured += f" ({ours.bad_responses} bad responses)"
    return Check(what, measured, f">= {goal:g}x", ratio >= goal and not ours.bad_responses)


def _cold_check(what: str, rows: dict[str, ColdRow], attr: str, goal: float) -> Check:
    """wheelwell / direct <= goal for a cold client figure."""
    ours, direct = rows.get("wheelwell"), rows.get("nginx")
    if ours is None or direct is None:
        return Check(what, "no figure", f"<= {goal:g}x direct", False)
    ratio = getattr(ours, attr) / max(getattr(direct, attr), 1e-9)
    return Check(what, f"{ratio:.2f}x", f"<= {goal:g}x direct", ratio <= goal)


#: (page, peer, minimum ratio of wheelwell's req/s to the peer's)
PAGE_GOALS = (("1 file", "proxpi", 4.0), ("1 file", "devpi", 8.0), ("2,000 files", "proxpi", 10.0))


def _page_checks(results: Results) -> list[Check]:
    checks = []
    for fmt in FORMATS:
        for page, peer, goal in PAGE_GOALS:
            ours, theirs = _page(results, "wheelwell", page, fmt), _page(results, peer, page, fmt)
            name = f"warm {page.replace(' files', '-file').replace(' file', '-file')} page"
            checks.append(_ratio_check(f"{name} {fmt}, req/s vs {peer}", ours, theirs, goal))
    return checks


def _stampede_check(results: Results) -> Check:
    what = f"{STAMPEDE_CLIENTS} cold clients, one file"
    goal = f"1 GET, {STAMPEDE_CLIENTS}/{STAMPEDE_CLIENTS} correct"
    row = results.stampede.get("wheelwell")
    if row is None:
        return Check(what, "no figure", goal, False)
    measured = (
        f"{row.upstream_gets} upstream GET(s), {row.correct_bodies}/{STAMPEDE_CLIENTS} correct"
    )
    ok = row.upstream_gets == 1 and row.correct_bodies == STAMPEDE_CLIENTS
    return Check(what, measured, goal, ok)


def wheelhouse_check(results: Results) -> Check:
    """Every start after the first scan (nothing changed, then 10 files added) within 3 s."""
    what = f"wheelhouse start-up, {wheelhouse.FILES:,} files (after the first scan)"
    goal = f"<= {WHEELHOUSE_LIMIT_S:g} s"
    row = results.wheelhouse
    if row is None:
        return Check(what, "no figure", goal, False)
    measured = (
        f"{row.unchanged_median:.2f} s unchanged (median of {len(row.unchanged)}), "
        f"{row.added.seconds:.2f} s with {wheelhouse.ADDED_FILES} new files"
    )
    ok = all(s.seconds <= WHEELHOUSE_LIMIT_S for s in row.after_first_scan)
    return Check(what, measured, goal, ok)


def build_checks(results: Results, wheelwell_rss_kib: int) -> list[Check]:
    """Every target of the brief, in the order the report lists them."""
    files = results.files
    rss_mb = wheelwell_rss_kib * 1024 / 1e6
    return [
        *_page_checks(results),
        _ratio_check(
            "warm 20 MB file, MiB/s vs nginx", files.get("wheelwell"), files.get("nginx"), 0.9
        ),
        _cold_check("cold uv pip compile, time", results.uv, "seconds", 1.5),
        _cold_check("cold uv pip compile, upstream bytes", results.uv, "upstream_bytes", 2),
        _stampede_check(results),
        Check(
            "wheelwell peak RSS (VmHWM)",
            f"{rss_mb:.1f} MB" if wheelwell_rss_kib else "no figure",
            f"<= {RSS_LIMIT_MB:g} MB",
            0 < rss_mb <= RSS_LIMIT_MB,
        ),
        wheelhouse_check(results),
    ]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return _table(header, rows)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _pages_table(results: Results, names: Sequence[str]) -> str:
    rows = []
    for page in PAGES:
        for fmt in FORMATS:
            cells = [page, fmt]
            for name in names:
                row = next(
                    (r for r in results.pages if (r.target, r.page, r.fmt) == (name, page, fmt)),
                    None,
                )
                if row is None:
                    cells.append("—")
                elif row.result is None:
                    cells.append(row.note or "—")
                else:
                    res = row.result
                    bad = f", {res.bad_responses} bad" if res.bad_responses else ""
                    cells.append(f"{res.requests_per_s:,.0f} /s, p99 {res.p99_ms:.1f} ms{bad}")
            rows.append(cells)
    return _table(["page", "format", *names], rows)


def _files_table(files: dict[str, WrkResult]) -> str:
    base = files.get("nginx")
    rows = []
    for name, res in files.items():
        ratio = f"{res.mib_per_s / base.mib_per_s:.2f}x" if base and base.mib_per_s else "—"
        bad = str(res.bad_responses)
        rows.append([name, f"{res.mib_per_s:,.0f}", f"{res.requests_per_s:.1f}", ratio, bad])
    return _table(["target", "MiB/s", "req/s", "vs nginx", "bad responses"], rows)


def _cold_table(rows_by_name: dict[str, ColdRow]) -> str:
    direct = rows_by_name.get("nginx")
    rows = []
    for row in rows_by_name.values():
        t_ratio = f"{row.seconds / direct.seconds:.2f}x" if direct else "—"
        b_ratio = f"{row.upstream_bytes / direct.upstream_bytes:.2f}x" if direct else "—"
        rows.append(
            [
                row.target if row.target != "nginx" else "direct (nginx)",
                f"{row.seconds:.2f}",
                f"{row.upstream_bytes:,}",
                str(row.upstream_requests),
                t_ratio,
                b_ratio,
                str(row.runs),
            ]
        )
    header = ["via", "seconds", "upstream bytes", "upstream requests", "time", "bytes", "runs"]
    return _table(header, rows)


def _stampede_table(results: Results) -> str:
    rows = []
    for row in results.stampede.values():
        failures = "; ".join(sorted(set(row.failures)))[:300] or "—"
        rows.append(
            [
                row.target,
                str(row.upstream_gets),
                f"{row.correct_bodies}/{STAMPEDE_CLIENTS}",
                f"{row.seconds:.2f}",
                failures,
            ]
        )
    return _table(
        ["target", "upstream GETs of the file", "correct bodies", "seconds", "failures"], rows
    )


def wheelhouse_section(results: Results) -> str:
    """Section 7; it also stands alone, for `bench/run.py --only wheelhouse`."""
    intro = (
        f"{wheelhouse.FILES:,} small real wheels ({wheelhouse.PROJECTS:,} projects x "
        f"{len(wheelhouse.VERSIONS)} versions, `bench/work/wheelhouse/`) in one wheelhouse "
        "directory of a private index (`root/public`, bases `root/pypi`). The daemon loads what "
        "earlier runs learnt from SQLite, scans the directory (hashing only new or changed files) "
        "and only then listens, so each figure is from the process start until `GET /+health` "
        "answers 200 (polled every 10 ms), Python's start and imports included. All starts share "
        "one data dir, which is empty before the first; each start is stopped with SIGTERM before "
        f"the next. After each start the JSON pages of {len(wheelhouse.CHECKED)} projects (and, "
        "after the last, of the added ones) are checked to list exactly their files with the "
        "right sha256. The target applies to every start after the first scan.\n"
    )
    row = results.wheelhouse
    if row is None:
        errors = [e for e in results.errors if e.startswith("wheelhouse")]
        return "\n".join(
            [WHEELHOUSE_HEADING + "\n", intro, "No figure. " + " ".join(errors) + "\n"]
        )
    rows = [
        [
            s.label,
            f"{s.files:,}",
            f"{s.new_files:,}",
            f"{s.seconds:.2f}",
            f"{len(s.checked)} OK",
        ]
        for s in (row.cold, *row.after_first_scan)
    ]
    generated = (
        "reused from an earlier run"
        if row.generate_seconds is None
        else f"generated in {row.generate_seconds:.0f} s"
    )
    return "\n".join(
        [
            WHEELHOUSE_HEADING + "\n",
            intro,
            _table(["start", "files", "new since last start", "seconds", "pages checked"], rows),
            f"wheelwell's peak RSS over these starts: {row.peak_rss_kib * 1024 / 1e6:.1f} MB. "
            f"The wheels were {generated}.\n",
        ]
    )


def _verdict(check: Check) -> str:
    return "PASS" if check.passed else "FAIL"


def splice_wheelhouse(existing: str, results: Results) -> str:
    """BENCHMARKS.md with only the wheelhouse row of Targets and section 7 replaced (or added)."""
    checks = [wheelhouse_check(results)]
    return splice(existing, checks, WHEELHOUSE_HEADING, wheelhouse_section(results))


def _splice_row(lines: list[str], check: Check) -> None:
    row = f"| {check.what} | {check.measured} | {check.goal} | {_verdict(check)} |"
    at = next((i for i, ln in enumerate(lines) if ln.startswith(f"| {check.what} |")), None)
    if at is not None:
        lines[at] = row
    elif "## Targets" in lines:  # after the last row of the Targets table
        at = lines.index("## Targets") + 1
        while at < len(lines) and not lines[at].startswith("|"):
            at += 1
        while at < len(lines) and lines[at].startswith("|"):
            at += 1
        lines.insert(at, row)
    else:
        lines += [
            "",
            "## Targets",
            "",
            "| check | measured | target | result |",
            "|---|---|---|---|",
        ]
        lines.append(row)


def splice(existing: str, checks: Sequence[Check], heading: str, section: str) -> str:
    """BENCHMARKS.md with only these Targets rows and the section under `heading` replaced."""
    lines = existing.rstrip("\n").splitlines()
    for check in checks:
        _splice_row(lines, check)
    # Blocks: the text before the first heading, then one per "## " heading.
    head, *rest = ("\n".join(lines) + "\n").split("\n## ")
    blocks = [head, *("## " + b for b in rest)]
    found = [i for i, b in enumerate(blocks) if b.startswith(heading)]
    if found:
        blocks[found[0]] = section
    else:
        errors = [i for i, b in enumerate(blocks) if b.startswith("## Errors\n")]
        blocks.insert(errors[0] if errors else len(blocks), section)
    return "\n".join(blocks)


def render(
    results: Results,
    machine: dict[str, str],
    cfg: Settings,
    rss_kib: dict[str, int],
    checks: Sequence[Check],
    sections: Sequence[str] = (),
) -> str:
    names = [n for n in TARGET_ORDER if any(r.target == n for r in results.pages)]
    machine_rows = [[key, value] for key, value in machine.items()]
    rss_rows = [[name, f"{kib * 1024 / 1e6:.1f}"] for name, kib in rss_kib.items() if kib]
    check_rows = [[c.what, c.measured, c.goal, _verdict(c)] for c in checks]
    parts = [
        "# Benchmarks\n",
        "Written by `make bench` (`bench/run.py`); every figure is from one run on one machine, "
        "so compare the ratios, not the absolute numbers. All traffic is on 127.0.0.1; the "
        "upstream is nginx serving a static PEP 503/691 index that `bench/dataset.py` generates.\n",
        f"Each figure is the median of {cfg.runs} run(s). Pages: `wrk -t2 -c{cfg.connections} "
        f"-d{cfg.duration:g}s --latency`, no compression, after one warming request. "
        f"File: `wrk -c{cfg.file_connections}` (and, informational, "
        f"`-c{cfg.file_connections_parallel}`) on the ~20 MB wheel. Cold clients start from a "
        "fresh proxy data dir and a fresh client cache; upstream bytes are nginx's "
        "`$body_bytes_sent` summed over the run.\n",
        "## Machine\n",
        _table(["", ""], machine_rows),
        "## Targets\n",
        _table(["check", "measured", "target", "result"], check_rows),
        "## 1. Warm simple pages (req/s, p99 latency)\n",
        _pages_table(results, names),
        "Upstream requests made while wrk ran (0 means the figures are from the cache): "
        + (", ".join(f"{k} {v}" for k, v in results.warm_upstream.items()) or "—")
        + "\n",
        "## 2. Warm ~20 MB file\n",
        f"One client (`wrk -c{cfg.file_connections}`), as one pip or uv download is; this is "
        "the scored figure. `nginx-1w` is a second nginx with one worker process.\n",
        _files_table(results.files),
        f"Informational: {cfg.file_connections_parallel} parallel clients. On 2 cores shared "
        "with wrk, nginx's two worker processes send in parallel while one event loop does all "
        "of wheelwell's sendfile calls; compare with `nginx-1w`.\n",
        _files_table(results.files_parallel),
        "## 3. Cold `pip download` of 20 wheels\n",
        _cold_table(results.pip),
        "## 4. Cold `uv pip compile` of a 100-package graph, 5 levels deep\n",
        _cold_table(results.uv),
        "Why the time ratio stays above the target here: a cold request through any proxy is "
        "two HTTP exchanges instead of one, and on this loopback upstream (well under a "
        "millisecond per request) the proxy's own work per request (two socket round trips "
        "plus parsing and rewriting the page) is the whole difference, with uv, nginx and the "
        "proxy sharing 2 cores. Against a real upstream, tens of milliseconds away, the same "
        "added cost is a few percent. The bytes ratio shows wheelwell never pulls more than "
        "the client needs (metadata, not wheels).\n",
        "### 4b. The same for a 100-level chain (latency-bound; no target)\n",
        "Each level needs a page and a metadata file before the next level is known, so this "
        "shows a proxy's added latency per cold request times ~200.\n",
        _cold_table(results.uv_chain),
        f"## 5. {STAMPEDE_CLIENTS} concurrent cold clients on the ~20 MB wheel\n",
        _stampede_table(results),
        "## 6. Peak RSS (VmHWM, MB) over all runs\n",
        _table(["process", "MB"], rss_rows),
        wheelhouse_section(results),
        *sections,
    ]
    if results.errors:
        parts += ["## Errors\n", "".join(f"- {e}\n" for e in results.errors)]
    return "\n".join(parts)
