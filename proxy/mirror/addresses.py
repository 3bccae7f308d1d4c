"""Which addresses a mirror may connect to: the upstream SSRF policy, enforced at connect time.

Hostnames are checked after resolution by `PolicyResolver` (so DNS rebinding is caught), literal
IP hosts by `address_middleware` on every request and every redirect hop; aiohttp itself refuses
legacy numeric IPv4 forms such as `2130706433`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_middlewares import ClientHandlerType

from proxy.config import IndexConfig, IndexKind, UpstreamConfig
from proxy.errors import InvalidInputError, UpstreamAddressError
from proxy.model import mask_url

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) to networks; ValueError names the bad one."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)


def parse_address(text: str) -> Address | None:
    """An IP literal (brackets and an IPv6 zone allowed), None for a hostname."""
    try:
        return ipaddress.ip_address(text.strip("[]").partition("%")[0])
    except ValueError:
        return None


def _forms(address: Address) -> list[Address]:
    """The address and the IPv4 address it stands for (mapped, 6to4, NAT64 forms)."""
    forms: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            forms.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            forms.append(address.sixtofour)
        if address in _NAT64:
            forms.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return forms


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def scope_of(index: str) -> str:
    """root's mirrors (and callers naming no index) are trusted; every other user's are not."""
    return "root" if not index or index.partition("/")[0] == "root" else "user"


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Deny lists with an allow list that overrides them; `source` names the config keys."""

    deny: tuple[Network, ...] = ()
    allow: tuple[Network, ...] = ()
    source: str = "upstream.deny"

    @classmethod
    def for_mirrors(cls, cfg: UpstreamConfig, *, root: bool) -> AddressPolicy:
        """root's mirrors get `deny`; every other user's get `user_mirror_deny` as well."""
        deny = parse_networks(cfg.deny)
        source = "upstream.deny"
        if not root:
            deny += parse_networks(cfg.user_mirror_deny)
            source = "upstream.deny / upstream.user_mirror_deny"
        return cls(deny, parse_networks(cfg.allow), source)

    def permits(self, address: Address) -> bool:
        forms = _forms(address)
        if any(f in net for f in forms for net in self.allow if f.version == net.version):
            return True
        return not any(f in net for f in forms for net in self.deny if f.version == net.version)

    def check(self, url: str, host: str) -> None:
        """Raise UpstreamAddressError when the literal or resolved `host` is denied."""
        address = parse_address(host)
        if address is not None and not self.permits(address):
            raise UpstreamAddressError(mask_url(url), str(address), self.source)


async def resolve_denied(policy: AddressPolicy, host: str) -> str | None:
    """The first address of `host` the policy denies, None when all are permitted (or none)."""
    address = parse_address(host)
    if address is not None:
        return None if policy.permits(address) else str(address)
    if not policy.deny:
        return None  # nothing to find: spare the lookup
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return None  # unresolvable now: the connect-time check still applies
    for info in infos:
        found = parse_address(str(info[4][0]))
        if found is not None and not policy.permits(found):
            return str(found)
    return None


class PolicyResolver(AbstractResolver):
    """A resolver that drops denied addresses, and refuses a host that has no other."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        permitted = [r for r in results if _permitted(self.policy, r["host"])]
        if results and not permitted:
            raise UpstreamAddressError(host, results[0]["host"], self.policy.source)
        return permitted

    async def close(self) -> None:
        await self.inner.close()


def _permitted(policy: AddressPolicy, host: str) -> bool:
    address = parse_address(host)
    return address is None or policy.permits(address)


def address_middleware(
    policy: AddressPolicy,
) -> Sequence[aiohttp.ClientMiddlewareType]:
    """A client middleware refusing denied literal IP hosts, on each request and redirect."""

    async def check(
        request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        policy.check(str(request.url), request.url.host or "")
        return await handler(request)

    return (check,)


async def check_mirror_url(cfg: UpstreamConfig, index: IndexConfig) -> None:
    """At save time: a clear 400 when the mirror's host is, or resolves to, a denied address."""
    url = index.upstream or cfg.url
    host = urlsplit(url).hostname or ""
    policy = AddressPolicy.for_mirrors(cfg, root=scope_of(index.name) == "root")
    denied = await resolve_denied(policy, host)
    if denied is not None:
        raise InvalidInputError(
            f"'mirror_url' of index '{index.name}': address {denied} is denied by {policy.source}"
        )


async def check_index_urls(cfg: UpstreamConfig, index: IndexConfig) -> None:
    """At save time: a mirror's URL, or a private index's hook URLs, obey the address rules.

    Hooks go out on behalf of the index's owner exactly as a mirror's requests do, so the same
    lists apply (checked again at every delivery, when the connection is made).
    """
    if index.kind is IndexKind.MIRROR:
        await check_mirror_url(cfg, index)
        return
    policy = AddressPolicy.for_mirrors(cfg, root=scope_of(index.name) == "root")
    keyed = [(f"webhooks[{n}].url", h.url) for n, h in enumerate(index.webhooks)]
    if index.uploadtrigger_jenkins:
        keyed.append(("uploadtrigger_jenkins", index.uploadtrigger_jenkins))
    for key, url in keyed:
        denied = await resolve_denied(policy, urlsplit(url).hostname or "")
        if denied is not None:
            raise InvalidInputError(
                f"'{key}' of index '{index.name}': address {denied} is denied by {policy.source}"
            )
