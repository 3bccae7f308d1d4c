"""deploy/systemd, statically: what the unit sets is used, and the shipped config bounds the store.

`make test-deploy` boots the unit for real (tests/deploy/test_systemd.py).
"""

from __future__ import annotations

import re

from tests.test_deploy import UNIT, systemd_config, unit, unit_value, unit_values

SYSTEMD_YAML = UNIT.with_name("wheelwell.yaml")


def environment(service: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
    """The unit's Environment= assignments merged, as systemd merges them."""
    pairs = (
        item.split("=", 1)
        for value in unit_values(service, "Environment")
        for item in value.split()
    )
    return {key: value for key, value in pairs}


def test_unit_sets_up_no_directory_wheelwell_never_writes() -> None:
    """Mirror and uploaded files share one store under the data dir: no cache directory exists."""
    service = unit()
    assert not unit_values(service, "CacheDirectory")
    assert not unit_values(service, "CacheDirectoryMode")
    assert "XDG_CACHE_HOME" not in environment(service)
    assert "/var/cache" not in UNIT.read_text()
    assert unit_value(service, "StateDirectory") == "wheelwell"


def test_unit_keeps_proc_subset_pid() -> None:
    """Hardening stays: process_* metrics must work without /proc/stat (proved in nspawn)."""
    service = unit()
    assert unit_value(service, "ProcSubset") == "pid"
    assert unit_value(service, "ProtectProc") == "invisible"


def test_unit_environment_is_only_python_settings() -> None:
    assert environment(unit()) == {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def test_systemd_config_bounds_the_store() -> None:
    """An unbounded cache fills the disk: the shipped config sets max_size, with its reason."""
    max_size = systemd_config().storage.max_size
    assert 1_000_000_000 <= max_size <= 1_000_000_000_000
    text = SYSTEMD_YAML.read_text(encoding="utf-8")
    (line,) = [n for n, line in enumerate(text.splitlines()) if re.match(r"\s+max_size:", line)]
    assert text.splitlines()[line - 1].lstrip().startswith("#")  # said why, right above it
