"""The upstream address policy: defaults for users' mirrors, allow overrides, IPv6 and mapped v4."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from proxy.config import IndexConfig, IndexKind, UpstreamConfig, parse_config
from proxy.errors import ConfigError, InvalidInputError, UpstreamAddressError
from proxy.mirror.addresses import (
    AddressPolicy,
    PolicyResolver,
    check_mirror_url,
    parse_address,
    resolve_denied,
    scope_of,
)

USER = AddressPolicy.for_mirrors(UpstreamConfig(), root=False)
ROOT = AddressPolicy.for_mirrors(UpstreamConfig(), root=True)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "0.0.0.0",
        "::1",
        "::",
        "169.254.169.254",
        "fe80::1",
        "fe80::1%eth0",
        "[::1]",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "fc00::1",
        "fd12:3456::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    ],
)
def test_users_mirrors_may_not_reach_internal_addresses(address: str) -> None:
    parsed = parse_address(address)
    assert parsed is not None
    assert not USER.permits(parsed)
    assert ROOT.permits(parsed)  # root's mirrors: only `deny`, empty by default


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "2606:4700::1", "172.32.0.1", "100.128.0.1", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_permitted(address: str) -> None:
    parsed = parse_address(address)
    assert parsed is not None and USER.permits(parsed)


def test_allow_overrides_both_deny_lists() -> None:
    cfg = UpstreamConfig(deny=("203.0.113.0/24",), allow=("127.0.0.1/32", "203.0.113.7"))
    user = AddressPolicy.for_mirrors(cfg, root=False)
    root = AddressPolicy.for_mirrors(cfg, root=True)
    for policy in (user, root):
        assert policy.permits(ipaddress.ip_address("127.0.0.1"))
        assert policy.permits(ipaddress.ip_address("::ffff:127.0.0.1"))  # the mapped form too
        assert policy.permits(ipaddress.ip_address("203.0.113.7"))
        assert not policy.permits(ipaddress.ip_address("203.0.113.8"))
    assert not user.permits(ipaddress.ip_address("127.0.0.2"))
    assert root.permits(ipaddress.ip_address("127.0.0.2"))


def test_hostnames_are_not_addresses() -> None:
    assert parse_address("localhost") is None
    assert parse_address("index.example") is None


def test_literal_check_raises_the_typed_error() -> None:
    with pytest.raises(UpstreamAddressError) as caught:
        USER.check("http://user:secret@127.0.0.1:9/simple/", "127.0.0.1")
    assert caught.value.address == "127.0.0.1"
    assert "secret" not in str(caught.value)
    USER.check("http://localhost/", "localhost")  # a hostname: the resolver's job


def test_scope_is_root_only_for_roots_namespace() -> None:
    assert scope_of("root/pypi") == "root"
    assert scope_of("") == "root"
    assert scope_of("alice/m") == "user"
    assert scope_of("rooty/m") == "user"


async def test_localhost_resolves_to_a_denied_address() -> None:
    assert await resolve_denied(USER, "localhost") in {"127.0.0.1", "::1"}
    assert await resolve_denied(ROOT, "localhost") is None


async def test_the_resolver_refuses_a_host_with_only_denied_addresses() -> None:
    resolver = PolicyResolver(USER)
    try:
        with pytest.raises(UpstreamAddressError):
            await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
        allowed = PolicyResolver(
            AddressPolicy.for_mirrors(UpstreamConfig(allow=("127.0.0.0/8", "::1")), root=False)
        )
        results = await allowed.resolve("localhost", 80, socket.AF_UNSPEC)
        assert results and all(r["host"] in {"127.0.0.1", "::1"} for r in results)
        await allowed.close()
    finally:
        await resolver.close()


async def test_saving_a_users_mirror_at_an_internal_address_is_refused() -> None:
    cfg = UpstreamConfig(url="http://127.0.0.1:9/simple/")
    for url in ("http://127.0.0.1:9/simple/", "http://localhost:9/", "http://[::1]:9/"):
        index = IndexConfig(name="alice/m", kind=IndexKind.MIRROR, upstream=url)
        with pytest.raises(InvalidInputError, match="denied by"):
            await check_mirror_url(cfg, index)
    await check_mirror_url(cfg, IndexConfig(name="root/m", kind=IndexKind.MIRROR))


def test_a_bad_cidr_is_a_config_error_naming_the_key() -> None:
    text = "upstream:\n  allow: [127.0.0.1/33]\n  deny: [nonsense]\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "w.yaml")
    message = str(caught.value)
    assert "upstream.allow[0]" in message and "upstream.deny[0]" in message
    assert "w.yaml" in message
