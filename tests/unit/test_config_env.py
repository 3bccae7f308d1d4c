"""WHEELWELL_<SECTION>_<KEY> environment overrides: precedence and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import load
from proxy.errors import ConfigError

UPSTREAM = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple/"}


def test_environment_beats_the_file(tmp_path: Path) -> None:
    path = tmp_path / "wheelwell.yaml"
    path.write_text("server:\n  port: 4000\nstorage:\n  max_size: 1GB\n")
    env = {
        **UPSTREAM,
        "WHEELWELL_SERVER_PORT": "5000",
        "WHEELWELL_STORAGE_DATA_DIR": "/srv/data",
        "WHEELWELL_UPSTREAM_OFFLINE": "true",
        "WHEELWELL_UPSTREAM_PAGE_TTL": "5m",
        "WHEELWELL_LOGGING_FORMAT": "json",
    }
    cfg = load(path, env)
    assert cfg.server.port == 5000
    assert cfg.storage.max_size == 1_000_000_000  # from the file, untouched
    assert cfg.storage.data_dir == Path("/srv/data")
    assert cfg.upstream.offline is True
    assert cfg.upstream.page_ttl == 300.0
    assert cfg.logging.format.value == "json"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("WHEELWELL_SERVER_PORT", "abc"),
        ("WHEELWELL_UPSTREAM_OFFLINE", "maybe"),
        ("WHEELWELL_STORAGE_MAX_SIZE", "lots"),
        ("WHEELWELL_LOGGING_FORMAT", "xml"),
    ],
)
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, {**UPSTREAM, var: value})
    assert caught.value.problems[0].startswith(f"environment: {var}: ")


def test_root_password_only_through_its_own_variable() -> None:
    cfg = load(None, {**UPSTREAM, "WHEELWELL_ROOT_PASSWORD": "s3cret"})
    assert cfg.auth.root_password == "s3cret"


def test_devpi_password_is_the_fallback_and_named() -> None:
    cfg = load(None, {**UPSTREAM, "DEVPI_PASSWORD": "from-devpi"})
    assert (cfg.auth.root_password, cfg.auth.root_password_from) == ("from-devpi", "DEVPI_PASSWORD")


def test_wheelwell_root_password_wins_over_devpi_password() -> None:
    env = {**UPSTREAM, "WHEELWELL_ROOT_PASSWORD": "ours", "DEVPI_PASSWORD": "theirs"}
    cfg = load(None, env)
    assert (cfg.auth.root_password, cfg.auth.root_password_from) == (
        "ours",
        "WHEELWELL_ROOT_PASSWORD",
    )
