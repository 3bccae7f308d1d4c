"""deploy/prometheus, statically: the alert expressions watch what the issue says they must.

`make test-deploy` runs promtool (with unit tests for each alert) and a real Prometheus scraping a
live daemon (tests/deploy/test_prometheus.py).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.test_deploy import METRIC_RE, alert_rules

PROBE_ROUTES = (
    "health",
    "ready",
    "metrics",
)  #: aiohttp route names of /+health, /+ready, /+metrics
CLIENT_ROUTES = ("simple", "project", "file", "upload", "root", "status")
SELECTOR_RE = re.compile(r"\b(wheelwell_[a-z0-9_]+)(?:\{([^}]*)\})?")
MATCHER_RE = re.compile(r'\s*([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*(?:,|$)')


def rule(name: str) -> dict[str, Any]:
    (found,) = [r for r in alert_rules() if r["alert"] == name]
    return found


def selectors(expr: str, metric: str) -> list[dict[str, tuple[str, str]]]:
    """Every selector of `metric` in `expr` as {label: (operator, value)}."""
    found = []
    for name, body in SELECTOR_RE.findall(expr):
        if name == metric:
            found.append({m[0]: (m[1], m[2]) for m in MATCHER_RE.findall(body or "")})
    return found


def excludes(matcher: tuple[str, str] | None, value: str) -> bool:
    """Whether a label matcher (operator, pattern) drops series whose label is `value`."""
    if matcher is None:
        return False
    operator, pattern = matcher
    matches = re.fullmatch(pattern, value) is not None if "~" in operator else pattern == value
    return matches if operator.startswith("!") else not matches


def test_down_fires_for_a_target_that_vanished() -> None:
    """`up == 0` needs a series; a target gone from discovery has none, absent() covers it."""
    expr = rule("WheelwellDown")["expr"]
    assert "up{" in expr and "== 0" in expr
    assert re.search(r'\babsent\(\s*up\{job=~"wheelwell\.\*"\}\s*\)', expr), expr


def test_error_ratio_leaves_out_probes_and_scrapes() -> None:
    expr = rule("WheelwellHighErrorRate")["expr"]
    found = selectors(expr, "wheelwell_http_requests_total")
    assert len(found) == 2  # the 5xx numerator and the denominator
    for matchers in found:
        for route in PROBE_ROUTES:
            assert excludes(matchers.get("route"), route), (route, matchers)
        for route in CLIENT_ROUTES:
            assert not excludes(matchers.get("route"), route), (route, matchers)
    assert any(excludes(m.get("status"), "200") for m in found)  # the numerator is 5xx only


@pytest.mark.parametrize(
    ("alert", "metrics"),
    [
        (
            "WheelwellStoreOverMaxSize",
            {"wheelwell_blob_store_bytes", "wheelwell_storage_max_size_bytes"},
        ),
        (
            "WheelwellDataDirLowSpace",
            {"wheelwell_data_dir_free_bytes", "wheelwell_data_dir_capacity_bytes"},
        ),
        (
            "WheelwellDataDirFillingUp",
            {"wheelwell_data_dir_free_bytes", "wheelwell_data_dir_capacity_bytes"},
        ),
        (
            "WheelwellCacheUnbounded",
            {"wheelwell_storage_max_size_bytes", "wheelwell_data_dir_free_bytes"},
        ),
    ],
)
def test_storage_alerts_watch_size_and_free_space(alert: str, metrics: set[str]) -> None:
    found = rule(alert)
    assert metrics <= set(METRIC_RE.findall(found["expr"]))
    assert found["labels"]["severity"] in {"warning", "critical"}
    assert found.get("for"), alert  # a short spike (a big download being written) never pages


def test_store_alert_ignores_an_unbounded_store() -> None:
    """max_size 0 is unbounded: never "over" it (WheelwellCacheUnbounded watches that case)."""
    expr = rule("WheelwellStoreOverMaxSize")["expr"]
    assert re.search(r"wheelwell_storage_max_size_bytes\s*>\s*0", expr)
    assert re.search(
        r"wheelwell_storage_max_size_bytes\s*==\s*0", rule("WheelwellCacheUnbounded")["expr"]
    )


def test_filling_up_predicts_from_the_free_space_trend() -> None:
    assert re.search(
        r"predict_linear\(\s*wheelwell_data_dir_free_bytes\[",
        rule("WheelwellDataDirFillingUp")["expr"],
    )
