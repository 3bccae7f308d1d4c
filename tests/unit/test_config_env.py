"""WHEELWELL_<SECTION>_[<SUB>_]<KEY> overrides: precedence, validation, errors name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import env_settings, load
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
        ("WHEELWELL_STORAGE_S3_REDIRECT", "maybe"),
        ("WHEELWELL_STORAGE_S3_PART_SIZE", "lots"),
        ("WHEELWELL_STORAGE_S3_ADDRESSING", "sideways"),
    ],
)
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, {**UPSTREAM, var: value})
    assert caught.value.problems[0].startswith(f"environment: {var}: ")


def test_nested_sections_come_from_the_environment_too(tmp_path: Path) -> None:
    path = tmp_path / "wheelwell.yaml"
    path.write_text("storage:\n  s3:\n    bucket: from-file\n    prefix: team/\n")
    env = {
        **UPSTREAM,
        "WHEELWELL_STORAGE_BACKEND": "s3",
        "WHEELWELL_STORAGE_S3_BUCKET": "from-env",
        "WHEELWELL_STORAGE_S3_ENDPOINT": "http://127.0.0.1:9000",
        "WHEELWELL_STORAGE_S3_ADDRESSING": "path",
        "WHEELWELL_STORAGE_S3_REDIRECT": "true",
        "WHEELWELL_STORAGE_S3_REDIRECT_TTL": "10m",
        "WHEELWELL_STORAGE_S3_PART_SIZE": "8MiB",
    }
    s3 = load(path, env).storage.s3
    assert (s3.bucket, s3.prefix, s3.endpoint) == ("from-env", "team/", "http://127.0.0.1:9000")
    assert (s3.addressing.value, s3.redirect, s3.redirect_ttl) == ("path", True, 600.0)
    assert s3.part_size == 8 * 1024**2


@pytest.mark.parametrize(
    ("var", "value", "key"),
    [
        ("WHEELWELL_STORAGE_S3_BUCKET", "Not_A_Bucket", "storage.s3.bucket"),
        ("WHEELWELL_STORAGE_S3_ENDPOINT", "ftp://127.0.0.1", "storage.s3.endpoint"),
        ("WHEELWELL_STORAGE_S3_PART_SIZE", "1MiB", "storage.s3.part_size"),
        ("WHEELWELL_STORAGE_S3_REDIRECT_TTL", "0", "storage.s3.redirect_ttl"),
        ("WHEELWELL_SERVER_PORT", "70000", "server.port"),
        ("WHEELWELL_HOOKS_MAX_ATTEMPTS", "0", "hooks.max_attempts"),
    ],
)
def test_the_environment_is_validated_as_a_file_is(var: str, value: str, key: str) -> None:
    env = {**UPSTREAM, "WHEELWELL_STORAGE_BACKEND": "s3", "WHEELWELL_STORAGE_S3_BUCKET": "wheels"}
    with pytest.raises(ConfigError) as caught:
        load(None, {**env, var: value})
    assert [p.split(": ")[:3] for p in caught.value.problems] == [["environment", var, key]]


def test_every_setting_has_its_own_variable() -> None:
    names = [var for var, _, _ in env_settings()]
    assert len(names) == len(set(names))
    assert {"WHEELWELL_STORAGE_S3_BUCKET", "WHEELWELL_STORAGE_DATA_DIR"} <= set(names)


def test_root_password_is_not_a_section_setting() -> None:
    cfg = load(None, {**UPSTREAM, "WHEELWELL_AUTH_ROOT_PASSWORD": "s3cret"})
    assert cfg.auth.root_password == ""


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
