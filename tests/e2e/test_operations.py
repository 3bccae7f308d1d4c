"""Operations on the running daemon: SIGHUP reloads indexes, metrics scrape with the real parser."""

from __future__ import annotations

import signal

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Daemon, http_get
from tests.polling import wait_until

pytestmark = pytest.mark.e2e


def test_sighup_adds_an_index_from_the_file(daemon: Daemon) -> None:
    assert http_get(f"{daemon.url}/team/dev").status == 404
    config = yaml.safe_load(daemon.config_path.read_text())
    config["indexes"].append({"name": "team/dev", "kind": "private", "bases": ["root/public"]})
    daemon.config_path.write_text(yaml.safe_dump(config))
    daemon.process.send_signal(signal.SIGHUP)
    wait_until(
        lambda: http_get(f"{daemon.url}/team/dev").status == 200,
        timeout=10,
        interval=0.1,
        message=lambda: f"team/dev after SIGHUP:\n{daemon.log()}",
    )
    assert http_get(f"{daemon.url}/team/dev/+simple/alpha/").status == 200  # inherits the mirror
    assert daemon.process.poll() is None


def test_a_broken_file_on_sighup_changes_nothing(daemon: Daemon) -> None:
    daemon.config_path.write_text("indexes:\n  - {name: team/dev, bases: [nowhere/x]}\n")
    daemon.process.send_signal(signal.SIGHUP)
    wait_until(
        lambda: "reload of" in daemon.log(),
        timeout=10,
        interval=0.1,
        message=lambda: f"'reload of' in the log after SIGHUP:\n{daemon.log()}",
    )
    assert "nowhere/x" in daemon.log()
    assert http_get(f"{daemon.url}/team/dev").status == 404
    assert http_get(f"{daemon.url}/+health").status == 200


def test_metrics_parse_and_count_requests(daemon: Daemon) -> None:
    assert http_get(daemon.index_url() + "alpha/").status == 200
    body = http_get(f"{daemon.url}/+metrics").body.decode()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    requests = families["wheelwell_http_requests"]
    pages = [
        s.value
        for s in requests.samples
        if s.labels.get("route") == "simple-project" and s.labels.get("status") == "200"
    ]
    assert pages == [1.0]
    for name in ("wheelwell_page_cache", "wheelwell_upstream_requests", "process_cpu_seconds"):
        assert name in families, name
