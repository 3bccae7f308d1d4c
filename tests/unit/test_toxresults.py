"""Summaries of tox reports: tox 4's and tox 3's shapes, failures, skips and refusals."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.errors import InvalidInputError
from proxy.hosted.toxresults import LOG_TAIL_LINES, MAX_ENVS, parse_report


def _command(
    code: int, output: str | list[str] = "", err: str = "", elapsed: float = 0.5
) -> dict[str, Any]:
    return {"command": ["python", "-m", "pytest"], "retcode": code, "output": output,
            "err": err, "elapsed": elapsed}  # fmt: skip


def _tox4(**envs: dict[str, Any]) -> dict[str, Any]:
    return {"reportversion": "1", "toxversion": "4.20", "platform": "linux", "host": "ci-1",
            "testenvs": envs}  # fmt: skip


def test_tox4_passing_and_failing_envs() -> None:
    py = {
        "python": {"version": "3.12.1 (main, Jan 1 2024) [GCC]"},
        "result": {"success": True, "exit_code": 0, "duration": 4.25, "skipped": False},
        "setup": [_command(0)],
        "test": [_command(0, "5 passed")],
    }
    lint = {
        "result": {"success": False, "exit_code": 1, "duration": 1.0},
        "setup": [_command(0)],
        "test": [_command(0, "first ok"), _command(1, "E501 line too long\n", "stderr too")],
    }
    pkg = {"result": {"success": True}, "setup": [_command(0)]}
    report = parse_report(_tox4(py=py, lint=lint, **{".pkg": pkg}))
    assert (report.host, report.platform, report.toxversion) == ("ci-1", "linux", "4.20")
    assert [e.name for e in report.envs] == ["lint", "py"]  # the packaging env is no test
    failed, passed = report.envs
    assert passed.status == "passed" and passed.python == "3.12.1" and passed.duration == 4.25
    assert passed.failed_command is None and passed.log_tail == "5 passed"
    assert failed.status == "failed" and failed.failed_command == "python -m pytest"
    assert failed.log_tail == "E501 line too long\nstderr too"


def test_tox3_shape_setup_failure_skip_and_log_tail() -> None:
    long_output = "\n".join(f"line {i}" for i in range(200))
    envs = {
        "py27": {"setup": [_command(1, ["cannot", "install"])], "test": []},
        "docs": {"result": {"skipped": True}},
        "py": {"test": [_command(0, long_output, elapsed=2.0)], "setup": [_command(0)]},
    }
    report = parse_report({"testenvs": envs})
    by_name = {e.name: e for e in report.envs}
    assert by_name["py27"].status == "failed" and by_name["py27"].log_tail == "cannot\ninstall"
    assert by_name["docs"].status == "skipped"
    assert by_name["py"].duration == 2.5  # no result: the commands' elapsed times
    assert by_name["py"].log_tail.splitlines() == [f"line {i}" for i in range(170, 200)]
    assert len(by_name["py"].log_tail.splitlines()) == LOG_TAIL_LINES


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"testenvs": []},
        {"no": "testenvs"},
        {"testenvs": {"py": "passed"}},
        {"testenvs": {"py": {"test": "ran"}}},
        {"testenvs": {f"e{i}": {} for i in range(MAX_ENVS + 1)}},
    ],
)
def test_what_is_not_a_tox_report_is_refused(data: Any) -> None:
    with pytest.raises(InvalidInputError):
        parse_report(data)
