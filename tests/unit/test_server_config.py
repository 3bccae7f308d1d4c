"""server.tls_cert/tls_key and server.trusted_proxies: defaults and the errors they give."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ServerConfig, parse_config
from proxy.errors import ConfigError


def test_defaults_serve_plain_http_and_trust_no_proxy() -> None:
    server = ServerConfig()
    assert (server.tls_cert, server.tls_key, server.trusted_proxies) == ("", "", ())


def test_tls_files_and_proxies_are_read(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    text = (
        f"server:\n  tls_cert: {cert}\n  tls_key: {key}\n"
        "  trusted_proxies: [10.0.0.0/8, '::1', 192.168.1.5]\n"
    )
    server = parse_config(text, "w.yaml").server
    assert (server.tls_cert, server.tls_key) == (str(cert), str(key))
    assert server.trusted_proxies == ("10.0.0.0/8", "::1", "192.168.1.5")


def test_unreadable_cert_names_key_and_file(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("x")
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError) as caught:
        parse_config(f"server:\n  tls_cert: {missing}\n  tls_key: {key}\n", "w.yaml")
    assert "w.yaml:2:" in str(caught.value)
    assert "server.tls_cert" in str(caught.value) and str(missing) in str(caught.value)


def test_cert_without_key_is_an_error(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match=r"server\.tls_key: server\.tls_cert is set"):
        parse_config(f"server:\n  tls_cert: {cert}\n", "w.yaml")


def test_bad_trusted_proxy_names_its_position() -> None:
    with pytest.raises(ConfigError, match=r"server\.trusted_proxies\[1\]: 'nonsense'"):
        parse_config("server:\n  trusted_proxies: [10.0.0.0/8, nonsense]\n", "w.yaml")
