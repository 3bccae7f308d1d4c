"""bench/replication.py's pure helpers: lags from the watcher's samples, quantiles, the form."""

from __future__ import annotations

import email.parser
import email.policy
from pathlib import Path

import pytest

from bench.replication import (
    Burst,
    CatchUp,
    ReplicationResult,
    Upload,
    cpu_seconds,
    encode_upload,
    lag_stats,
    lags,
    quantile,
)
from bench.replication_report import HEADING, replication_checks, splice_replication
from tests.fakes.dists import build_wheel


def test_lag_is_from_the_200_until_the_serial_is_first_seen() -> None:
    seen = [(10.0, 5), (10.004, 6), (10.030, 8)]
    uploads = [Upload(10.001, 6, 0.01), Upload(10.002, 7, 0.01), Upload(10.010, 8, 0.01)]
    assert [round(x or -1, 3) for x in lags(uploads, seen)] == [3.0, 28.0, 20.0]


def test_a_serial_already_applied_at_the_200_counts_zero_and_one_never_seen_none() -> None:
    seen = [(10.0, 5), (10.5, 6)]
    assert lags([Upload(10.2, 5, 0.1), Upload(10.6, 7, 0.1)], seen) == [0.0, None]


def test_quantile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert quantile(samples, 0.5) == 50.0
    assert quantile(samples, 0.99) == 99.0
    assert quantile(samples, 1.0) == 100.0
    assert quantile([7.0], 0.99) == 7.0
    assert quantile([], 0.5) == 0.0
    stats = lag_stats([3.0, 1.0, 2.0])
    assert (stats.uploads, stats.p50_ms, stats.p99_ms, stats.max_ms) == (3, 2.0, 3.0, 3.0)


def test_cpu_seconds_reads_utime_and_stime_after_the_command_name() -> None:
    # a command name with spaces and a parenthesis must not shift the fields
    fields = ["S", *["0"] * 10, "250", "50", *["0"] * 30]
    line = "4242 (python (x) y) " + " ".join(fields)
    assert cpu_seconds(line, 100) == pytest.approx(3.0)


def test_the_upload_form_is_what_twine_posts(tmp_path: Path) -> None:
    built = build_wheel(tmp_path, "formcheck", "1.2")
    body, content_type = encode_upload(built)
    assert content_type.startswith("multipart/form-data; boundary=")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
    assert parts[":action"].get_content().strip() == "file_upload"
    assert parts["name"].get_content().strip() == "formcheck"
    assert parts["version"].get_content().strip() == "1.2"
    assert parts["sha256_digest"].get_content().strip() == built.sha256
    content = parts["content"]
    assert content.get_filename() == built.filename
    assert content.get_payload(decode=True) == built.path.read_bytes()


def _result(lags_ms: tuple[float, ...]) -> ReplicationResult:
    catch_up = CatchUp(1003, 1000, 2000, 1.0, 0, 3.0, 5.0)
    bursts = (
        Burst(0, 1, 100, 1.0, 0.7, 0.0, False, (), 0),
        Burst(1, 1, 100, 2.0, 0.9, 0.5, False, (), 0),
        Burst(1, 1, 100, 4.0, 1.0, 0.6, True, lags_ms, 400),
    )
    return ReplicationResult(catch_up, 10.0, bursts, 1, 1.0)


def test_the_figures_of_a_result() -> None:
    result = _result(tuple(float(n) for n in range(100)))
    assert result.rate(0, 1) == 100.0 and result.rate(1, 1) == 50.0
    assert result.cpu_ms(0, 1) == pytest.approx(7.0)  # the watched burst is left out
    assert result.cpu_ms(1, 1) == pytest.approx(9.0)
    assert result.replica_cpu_ms(1) == pytest.approx(5.0)
    assert result.catch_up.entries_per_s == pytest.approx(501.5)
    assert result.catch_up.files_per_s == pytest.approx(500.0)
    assert result.lag().p99_ms == 98.0


def test_the_target_is_a_p99_under_a_second() -> None:
    assert replication_checks(_result(tuple([5.0] * 99 + [2000.0])))[0].passed is True
    assert replication_checks(_result(tuple([1200.0] * 100)))[0].passed is False
    assert replication_checks(None)[0].passed is False


def test_splicing_replaces_only_its_row_and_section() -> None:
    existing = (
        "# Benchmarks\n\n## Targets\n\n| check | measured | target | result |\n|---|---|---|---|\n"
        "| other | 1 | 2 | PASS |\n\n## 9. Other\n\nkept\n"
    )
    once = splice_replication(existing, _result((5.0,)), [])
    twice = splice_replication(once, _result((6.0,)), [])
    assert "| other | 1 | 2 | PASS |" in twice and "## 9. Other\n\nkept\n" in twice
    assert twice.count(HEADING) == 1
    assert twice.count("| replication lag p99") == 1
    assert "6.0 ms" in twice and "5.0 ms (p50" not in twice
