"""Where a shared link points: URL normalization, numeric hosts, the address policy, the resolver.

A link in a chat message is untrusted input. Before the fetcher opens a connection it must know
the exact IP addresses it will talk to, and every one of them must pass the `AddressPolicy`.
Everything here is pure (no sockets) except `system_resolver`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# `(host, port) -> ["93.184.216.34", "2606:2800::1", ...]`. Raising OSError (or returning an
# empty list) means "no such host". Injected so tests never touch outside DNS.
Resolver = Callable[[str, int], list[str]]

_DEFAULT_PORTS = {"http": 80, "https": 443}

# A host name we are willing to look up: LDH labels (underscores too, some real sub-domains use
# them). Anything else -- `%`, spaces, backslashes -- is a parser-differential trick, not a name.
_NAME = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*$")
# One part of an inet_aton-style number: hex (`0x7f`, also bare `0x`), octal (`0177`), decimal.
_NUMBER_PART = re.compile(r"^(?:0x[0-9a-f]*|0[0-7]*|[1-9][0-9]*)$")
# WHATWG's "ends in a number": a last label like this makes the host an IPv4 attempt or garbage.
_ENDS_IN_NUMBER = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")


class InvalidHost(ValueError):
    """The host looks numeric but is no address, or is no valid name: status `invalid_url`."""


def parse_ipv4_loose(host: str) -> ipaddress.IPv4Address | None:
    """Read `host` the way inet_aton/getaddrinfo would: `2130706433`, `0x7f.1`, `017700000001`,
    `127.1` are all 127.0.0.1. None if `host` is a name; InvalidHost if it is a broken number.

    We do this ourselves so the address check never depends on what a resolver makes of it."""
    labels = host.split(".")
    if not _ENDS_IN_NUMBER.match(labels[-1]):
        return None
    if len(labels) > 4 or not all(_NUMBER_PART.match(label) for label in labels):
        raise InvalidHost(f"not an IPv4 address: {host!r}")
    numbers = []
    for label in labels:
        if label.startswith("0x"):
            numbers.append(int(label[2:] or "0", 16))
        elif label.startswith("0") and len(label) > 1:
            numbers.append(int(label, 8))
        else:
            numbers.append(int(label))
    # a.b.c.d; a.b.c (c is 16 bits); a.b (b is 24 bits); a (32 bits) -- inet_aton's rules.
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        raise InvalidHost(f"IPv4 part out of range: {host!r}")
    value = last
    for i, n in enumerate(leading):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


class Target(NamedTuple):
    """A normalized http(s) URL taken apart; `ip` is set when the host is an address literal."""

    url: str
    scheme: str
    host: str  # lower-case, IDNA (ASCII) for names, canonical text for addresses, no brackets
    port: int
    path_query: str  # always starts with "/"
    ip: IPAddress | None

    @property
    def host_header(self) -> str:
        """What goes in `Host:` -- the URL's own authority, never the address we pinned."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if _DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def parse_url(url: str) -> Target | None:
    """Normalize and take apart `url`; None for anything we refuse to fetch (`invalid_url`)."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    # Control characters, spaces and backslashes: urlsplit silently drops tabs/newlines and
    # browsers read `\` as `/`, so such URLs mean different things to different parsers.
    if not url or any(c <= " " or c == "\x7f" or c == "\\" for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on junk or out-of-range ports
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or "@" in parts.netloc:
        return None  # file:, ftp:, data:, javascript:, ...; userinfo (`http://a.com@10.0.0.1/`)
    if port == 0:
        return None
    port = port or _DEFAULT_PORTS[scheme]
    raw_host = parts.hostname  # lower-cased, brackets removed
    if not raw_host:
        return None
    ip: IPAddress | None
    try:
        if parts.netloc.startswith("["):
            if "%" in raw_host:
                return None  # IPv6 zone ids name a local interface: never from a chat link
            ip = ipaddress.IPv6Address(raw_host)
            host = ip.compressed
        else:
            host = _idna(raw_host.rstrip(".")) if raw_host != "." else ""
            if not host or not _NAME.match(host):
                return None
            ip = parse_ipv4_loose(host)
            if ip is not None:
                host = str(ip)  # `0x7f.1` -> `127.0.0.1`: one spelling for logs and Host headers
    except (InvalidHost, ValueError):
        return None
    path_query = parts.path or "/"
    if not path_query.startswith("/"):
        return None
    if parts.query:
        path_query += "?" + parts.query
    netloc = f"[{host}]" if ip is not None and ip.version == 6 else host
    if port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return Target(f"{scheme}://{netloc}{path_query}", scheme, host, port, path_query, ip)


def normalize_url(url: str) -> str | None:
    """Scheme and host lower-cased, fragment and default port dropped; None if not fetchable."""
    target = parse_url(url)
    return None if target is None else target.url


def _idna(host: str) -> str:
    if host.isascii():
        return host
    return host.encode("idna").decode("ascii")  # UnicodeError is a ValueError: invalid_url


def domain_matches(host: str, domains: Iterable[str]) -> bool:
    """True if `host` is one of `domains` or a sub-domain of one (`a.example.com` ~ `example.com`)."""
    for domain in domains:
        domain = _idna(domain.strip().lower().rstrip("."))
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


# Ranges the stdlib flags don't cover (or, on Python 3.11, get wrong): refused whatever
# `is_global` says.
_EXTRA_REFUSED = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32",
        "64:ff9b:1::/48", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "fec0::/10",
        "ff00::/8",
    )
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    if ip.version == 4:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:  # `::` and `::1` are judged as themselves
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def refusal_reason(ip: IPAddress) -> str | None:
    """Why the default policy refuses `ip` ("loopback", "private", ...), or None if it is public."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        reason = refusal_reason(inner)
        return None if reason is None else f"embeds {inner} ({reason})"
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("shared (CGNAT)", ip in ipaddress.ip_network("100.64.0.0/10")),
        ("unique-local", ip.version == 6 and ip in ipaddress.ip_network("fc00::/7")),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved or any(ip in net for net in _EXTRA_REFUSED)),
        ("not global", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


@dataclass(frozen=True)
class AddressPolicy:
    """Which IP addresses the fetcher may connect to. The default refuses everything that is not
    a public unicast address. `allow_private_addresses=True` admits them all (local testing);
    `allowing(...)` admits exactly the listed addresses on top of the default (tests: allow
    127.0.0.1 and 127.0.0.2 stays refused)."""

    allow_private_addresses: bool = False
    allowed: frozenset[IPAddress] = frozenset()

    @classmethod
    def allowing(cls, *addresses: str) -> AddressPolicy:
        return cls(allowed=frozenset(ipaddress.ip_address(a) for a in addresses))

    def refuses(self, ip: IPAddress) -> str | None:
        """None if the fetcher may connect to `ip`, else a short reason for logs."""
        if self.allow_private_addresses or ip in self.allowed:
            return None
        reason = refusal_reason(ip)
        return None if reason is None else f"{ip} is {reason}"


DEFAULT_POLICY = AddressPolicy()


def system_resolver(host: str, port: int) -> list[str]:
    """The real resolver: every address getaddrinfo gives for a TCP connection, in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)
