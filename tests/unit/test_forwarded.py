"""Which address is the client's, given the peer, X-Forwarded-For and the trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest

from proxy.web.forwarded import client_address

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("10.0.0.1", "203.0.113.7", "203.0.113.7"),  # one proxy
        ("10.0.0.1", "203.0.113.7, 10.0.0.2", "203.0.113.7"),  # two trusted proxies
        # the client wrote its own X-Forwarded-For: the proxy appended the real address
        ("10.0.0.1", "198.51.100.1, 203.0.113.7", "203.0.113.7"),
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),  # all trusted: the leftmost
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # untrusted peer: its word is not taken
        ("::1", "2001:db8::5", "2001:db8::5"),
        ("::ffff:10.0.0.1", "203.0.113.7", "203.0.113.7"),  # IPv4-mapped peer
        ("10.0.0.1", " , ", "10.0.0.1"),
    ],
)
def test_client_address(peer: str, forwarded_for: str, expected: str) -> None:
    assert client_address(peer, forwarded_for, TRUSTED) == expected
