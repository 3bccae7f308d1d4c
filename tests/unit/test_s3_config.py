"""storage.backend and storage.s3: defaults, what is read, and errors naming key and file."""

from __future__ import annotations

import pytest

from proxy.config import S3Addressing, StorageBackend, StorageConfig, parse_config
from proxy.errors import ConfigError


def test_default_is_the_local_disk() -> None:
    storage = StorageConfig()
    assert storage.backend is StorageBackend.LOCAL and storage.s3.bucket == ""


def test_s3_settings_are_read() -> None:
    text = (
        "storage:\n  backend: s3\n  s3:\n    endpoint: http://127.0.0.1:8333\n"
        "    bucket: team-wheels\n    prefix: ww/\n    addressing: path\n    redirect: true\n"
        "    redirect_ttl: 10m\n    part_size: 16MiB\n"
    )
    storage = parse_config(text, "w.yaml").storage
    assert storage.backend is StorageBackend.S3
    s3 = storage.s3
    assert (s3.endpoint, s3.bucket, s3.prefix) == ("http://127.0.0.1:8333", "team-wheels", "ww/")
    assert s3.addressing is S3Addressing.PATH and s3.redirect and s3.redirect_ttl == 600
    assert s3.part_size == 16 * 1024**2


@pytest.mark.parametrize(
    ("s3", "key", "words"),
    [
        ("{}", "storage.s3.bucket", "name the bucket"),
        ("{bucket: No_Such}", "storage.s3.bucket", "not an S3 bucket name"),
        ("{bucket: ok-name, endpoint: 'ftp://x'}", "storage.s3.endpoint", "http(s)"),
        ("{bucket: ok-name, endpoint: 'http://k:s@x'}", "storage.s3.endpoint", "AWS chain"),
        ("{bucket: ok-name, part_size: 1MiB}", "storage.s3.part_size", "5242880"),
        ("{bucket: ok-name, redirect_ttl: 30d}", "storage.s3.redirect_ttl", "7 days"),
        ("{bucket: ok-name, addressing: sideways}", "storage.s3.addressing", "path"),
        ("{bucket: ok-name, secret_key: x}", "storage.s3.secret_key", "unknown key"),
    ],
)
def test_bad_s3_settings_name_the_key_and_file(s3: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"storage:\n  backend: s3\n  s3: {s3}\n", "w.yaml")
    message = str(caught.value)
    assert "w.yaml" in message and key in message and words in message


def test_s3_settings_are_not_checked_for_the_local_backend() -> None:
    assert parse_config("storage:\n  s3: {}\n", "w.yaml").storage.backend is StorageBackend.LOCAL
