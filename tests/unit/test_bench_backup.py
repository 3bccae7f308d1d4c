"""Scenario 11's verdict and section, from figures."""

from __future__ import annotations

from bench.backup import BackupResult, Step, backup_checks, backup_section


def test_the_verdict_takes_the_larger_peak_and_says_both_rates() -> None:
    result = BackupResult(1000, 400_000, Step(2.0, 64.0), Step(4.0, 151.0))
    check = backup_checks(result)[0]
    assert not check.passed  # the import's 151 MB is over the 150 MB target
    assert check.measured.startswith("151.0 MB (export 500 releases/s, import 250 releases/s)")
    assert "| import | 4.00 | 250 | 151.0 |" in backup_section(result, [])


def test_no_figures_fail_and_say_why() -> None:
    assert not backup_checks(None)[0].passed
    assert "No figures: boom" in backup_section(None, ["boom"])
