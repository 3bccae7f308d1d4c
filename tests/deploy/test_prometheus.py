"""deploy/prometheus for real: promtool on the shipped files, a real Prometheus on a live daemon.

promtool checks the rules, a prometheus.yml built from scrape.yaml, the daemon's exposition, and
the unit tests in alerts_test.yaml (one or more per alert). Then Debian's Prometheus scrapes a
daemon started from the host: every metric selector an alert expression uses must return series
(so no alert watches a name or label value the daemon never exports), and the rules load and
evaluate without errors.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Daemon, DaemonFactory, free_port, http_get
from tests.deploy.conftest import need
from tests.fakes.index import JSON_TYPE, FakeIndex, ThreadedServer
from tests.polling import wait_until
from tests.test_deploy import ALERTS, FUTURE_METRICS, SCRAPE, alert_rules

HERE = Path(__file__).resolve().parent
#: a metric name with an optional {matchers}, not followed by ( (a function) or a letter
SELECTOR_RE = re.compile(r"\b(up|wheelwell_[a-z0-9_]+)(\{[^}]*\})?(?![\w(])")
PROMETHEUS_TIMEOUT = 60.0


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    need("promtool")
    return subprocess.run(
        ["promtool", *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def prometheus_config(target: str, *, kubernetes: bool) -> dict[str, Any]:
    """prometheus.yml from scrape.yaml: the static job aimed at `target`, 1 s intervals."""
    jobs = yaml.safe_load(SCRAPE.read_text())["scrape_configs"]
    for job in jobs:
        if "static_configs" in job:
            job["static_configs"] = [{"targets": [target]}]
    if not kubernetes:  # a real Prometheus off-cluster would only log discovery errors
        jobs = [job for job in jobs if "kubernetes_sd_configs" not in job]
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": jobs,
    }


def selectors() -> dict[str, list[str]]:
    """Each alert's metric selectors, as written in its expression."""
    found: dict[str, list[str]] = {}
    for rule in alert_rules():
        for name, matchers in SELECTOR_RE.findall(rule["expr"]):
            found.setdefault(rule["alert"], []).append(name + matchers)
    return found


def test_promtool_checks_the_rules() -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout


def test_promtool_unit_tests_every_alert() -> None:
    tests = yaml.safe_load((HERE / "alerts_test.yaml").read_text())["tests"]
    tested = {t["alertname"] for group in tests for t in group["alert_rule_test"]}
    assert tested == {rule["alert"] for rule in alert_rules()}
    result = promtool("test", "rules", str(HERE / "alerts_test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def live(
    daemon_factory: DaemonFactory, fake_index: FakeIndex, fake_index_server: ThreadedServer
) -> Daemon:
    """A daemon that has served pages, failed upstream requests and a stale page: every series
    an alert reads exists."""
    daemon = daemon_factory(fake_index_server.url, {"upstream": {"page_ttl": "1s"}})
    page = f"{daemon.index_url()}alpha/"
    assert http_get(page, {"Accept": JSON_TYPE}).status == 200
    fake_index.fail_status = 500  # revalidation fails from now on: the cached page turns stale
    assert http_get(f"{daemon.index_url()}beta/").status >= 500  # never cached: a client 5xx

    def stale_served() -> bool:
        http_get(page)
        metrics = http_get(f"{daemon.url}/+metrics").body.decode()
        return 'wheelwell_page_cache_total{outcome="stale"}' in metrics

    wait_until(stale_served, timeout=30, interval=0.3, message="a stale page to be served")
    return daemon


def check_config(tmp_path: Path, target: str, *, kubernetes: bool) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(target, kubernetes=kubernetes)))
    checked = promtool("check", "config", str(config))
    if kubernetes and "field kubernetes_sd_configs not found" in checked.stdout + checked.stderr:
        pytest.skip("this promtool is built without Kubernetes discovery (Debian's is)")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_checks_the_config_with_the_kubernetes_job(tmp_path: Path) -> None:
    check_config(tmp_path, "127.0.0.1:3141", kubernetes=True)


def test_promtool_checks_the_config_and_the_exposition(live: Daemon, tmp_path: Path) -> None:
    check_config(tmp_path, urllib.parse.urlsplit(live.url).netloc, kubernetes=False)
    exposition = http_get(f"{live.url}/+metrics").body.decode()
    linted = promtool("check", "metrics", stdin=exposition)
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.fixture
def prometheus(live: Daemon, tmp_path: Path) -> Iterator[str]:
    """Debian's Prometheus on 127.0.0.1, scraping `live` every second; its base URL."""
    need("prometheus")
    config = tmp_path / "prometheus.yml"
    target = urllib.parse.urlsplit(live.url).netloc
    config.write_text(yaml.safe_dump(prometheus_config(target, kubernetes=False)))
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def is_ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited {process.returncode}:\n{log_path.read_text()}")
        try:
            return http_get(f"{url}/-/ready", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_until(is_ready, timeout=PROMETHEUS_TIMEOUT, interval=0.3, message="prometheus ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def api(base: str, path: str, **params: str) -> Any:
    answer = http_get(f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}")
    assert answer.status == 200, answer.body
    body = json.loads(answer.body)
    assert body["status"] == "success", body
    return body["data"]


def series(base: str, selector: str) -> list[dict[str, Any]]:
    """The series an instant query of `selector` returns."""
    result: list[dict[str, Any]] = api(base, "query", query=selector)["result"]
    return result


def test_prometheus_scrapes_the_daemon_and_every_alert_selector_has_series(
    prometheus: str,
) -> None:
    def target_up() -> bool:
        targets = api(prometheus, "targets")["activeTargets"]
        return any(t["labels"]["job"] == "wheelwell" and t["health"] == "up" for t in targets)

    wait_until(target_up, timeout=PROMETHEUS_TIMEOUT, interval=0.5, message="the target up")
    for alert, found in selectors().items():
        for selector in found:
            if selector.split("{")[0] in FUTURE_METRICS:
                assert not series(prometheus, selector), f"{selector} exists: drop the milestone"
                continue
            wait_until(
                functools.partial(series, prometheus, selector),
                timeout=30,
                interval=0.5,
                message=f"series for {selector} (alert {alert})",
            )


def test_prometheus_loads_and_evaluates_every_rule(prometheus: str) -> None:
    def evaluated() -> list[dict[str, Any]]:
        rules = [r for g in api(prometheus, "rules")["groups"] for r in g["rules"]]
        done = len(rules) == len(alert_rules()) and all(r["health"] != "unknown" for r in rules)
        return rules if done else []

    rules = wait_until(evaluated, timeout=30, interval=0.5, message="every rule evaluated")
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not broken
