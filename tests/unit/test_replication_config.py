"""replication: the role follows from a primary URL, the secret is required and never shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from proxy.config import Role, load, settle_replication
from proxy.errors import ConfigError
from tests.conftest import clean_env

SECRET = "a-replication-secret-long-enough"


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wheelwell.yaml"
    path.write_text(text)
    return path


def test_a_primary_url_makes_a_replica_with_the_secret_from_the_environment(
    tmp_path: Path,
) -> None:
    path = _config(tmp_path, "replication:\n  primary_url: http://primary.internal:3141\n")
    cfg = settle_replication(load(path, env={"WHEELWELL_REPLICATION_SECRET": SECRET}))
    assert cfg.replication.role is Role.REPLICA
    assert cfg.replication.secret == SECRET
    assert cfg.replication.replica_id  # the host name when not given


def test_the_secret_file_is_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    path = _config(tmp_path, f"replication:\n  role: primary\n  secret_file: {secret}\n")
    assert settle_replication(load(path, env={})).replication.secret == SECRET


@pytest.mark.parametrize(
    ("yaml_text", "env", "wanted"),
    [
        ("replication:\n  role: primary\n", {}, "replication.secret: a primary needs"),
        (
            "replication:\n  role: primary\n",
            {"WHEELWELL_REPLICATION_SECRET": "short"},
            "16 characters or more",
        ),
        (
            "replication:\n  role: replica\n",
            {"WHEELWELL_REPLICATION_SECRET": SECRET},
            "replication.role: a replica needs replication.primary_url",
        ),
        (
            "replication:\n  role: primary\n  secret_file: /nonexistent/secret\n",
            {},
            "replication.secret_file: cannot read '/nonexistent/secret'",
        ),
        (
            "replication:\n  primary_url: ftp://primary\n",
            {"WHEELWELL_REPLICATION_SECRET": SECRET},
            "replication.primary_url: 'ftp://primary' is not an http(s) URL",
        ),
    ],
)
def test_problems_name_the_key_and_the_file(
    tmp_path: Path, yaml_text: str, env: dict[str, str], wanted: str
) -> None:
    path = _config(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as caught:
        settle_replication(load(path, env=env))
    assert wanted in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_standalone_server_needs_no_secret() -> None:
    cfg = settle_replication(load(None, env={}))
    assert cfg.replication.role is Role.STANDALONE


def test_config_show_masks_the_secret(tmp_path: Path) -> None:
    path = _config(tmp_path, "replication:\n  role: primary\n")
    shown = subprocess.run(
        [sys.executable, "-m", "proxy", "config", "show", "--config", str(path)],
        capture_output=True,
        text=True,
        env=clean_env(WHEELWELL_REPLICATION_SECRET=SECRET),
        check=True,
        timeout=60,
    )
    assert SECRET not in shown.stdout + shown.stderr
    assert '"secret": "***"' in shown.stdout


def test_config_check_reports_a_missing_secret(tmp_path: Path) -> None:
    path = _config(tmp_path, "replication:\n  role: primary\n")
    checked = subprocess.run(
        [sys.executable, "-m", "proxy", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
        timeout=60,
    )
    assert checked.returncode == 2
    assert f"{path}: replication.secret: a primary needs" in checked.stderr
