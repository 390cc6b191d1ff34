"""IP addresses that are not what they look like: the IANA special-purpose registries, and IPv6
forms that carry an IPv4 address (failure case H9, docs/failure-cases.md).

**Globally reachable.** :func:`is_globally_reachable` reads the "Globally Reachable" column of
the IANA special-purpose address registries, the most specific block holding the address
deciding (RFC 8190 section 2.1), and ``ipaddress``'s ``is_global`` for an address in no block:

* IPv4: https://www.iana.org/assignments/iana-ipv4-special-registry/ (RFC 6890, RFC 8190);
* IPv6: https://www.iana.org/assignments/iana-ipv6-special-registry/ (RFC 6890, RFC 8190).

The standard library follows the same registries only from Python 3.12.4 / 3.11.10 (gh-113171),
so on an older 3.11 ``ip_address("192.0.0.192").is_global`` is ``True``; the tables below are
the registries' blocks, so the answer does not depend on the interpreter's patch level. A block
marked "N/A" in the registry (6to4, Teredo, the deprecated ORCHID) is listed as not globally
reachable; 6to4 and Teredo addresses are judged by the IPv4 address they embed (below).

**Embedded IPv4.** :func:`embedded_ipv4` returns the IPv4 address(es) an IPv6 address stands
for, so a check of the IPv6 address is a check of where the packets go:

* IPv4-mapped ``::ffff:a.b.c.d`` (RFC 4291 section 2.5.5.2) and the deprecated IPv4-compatible
  ``::a.b.c.d`` (section 2.5.5.1);
* 6to4 ``2002:AABB:CCDD::/48`` (RFC 3056);
* NAT64 with the well-known prefix ``64:ff9b::/96`` (RFC 6052 section 2.1; the last 32 bits);
* Teredo ``2001:0::/32`` (RFC 4380 section 4): the server and the (obfuscated) client address.

A NAT64 *local-use* prefix (``64:ff9b:1::/48``, RFC 8215) or a network-specific prefix cannot be
decoded without knowing the network's prefix length; the local-use block is not globally
reachable in the registry, so it is classified as such.
"""

from __future__ import annotations

import ipaddress

__all__ = ["NON_GLOBAL_BLOCKS", "embedded_ipv4", "is_globally_reachable"]

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_Ip = ipaddress.IPv4Address | ipaddress.IPv6Address

#: (block, globally reachable) from the IANA IPv4 and IPv6 Special-Purpose Address Registries.
_REGISTRY: tuple[tuple[_Net, bool], ...] = tuple((ipaddress.ip_network(n), g) for n, g in (
    # IPv4 (iana-ipv4-special-registry)
    ("0.0.0.0/8", False), ("0.0.0.0/32", False), ("10.0.0.0/8", False), ("100.64.0.0/10", False),
    ("127.0.0.0/8", False), ("169.254.0.0/16", False), ("172.16.0.0/12", False),
    ("192.0.0.0/24", False), ("192.0.0.0/29", False), ("192.0.0.8/32", False),
    ("192.0.0.9/32", True), ("192.0.0.10/32", True), ("192.0.0.170/32", False),
    ("192.0.0.171/32", False), ("192.0.2.0/24", False), ("192.31.196.0/24", True),
    ("192.52.193.0/24", True), ("192.88.99.0/24", False), ("192.168.0.0/16", False),
    ("192.175.48.0/24", True), ("198.18.0.0/15", False), ("198.51.100.0/24", False),
    ("203.0.113.0/24", False), ("240.0.0.0/4", False), ("255.255.255.255/32", False),
    # IPv6 (iana-ipv6-special-registry)
    ("::1/128", False), ("::/128", False), ("::ffff:0:0/96", False), ("64:ff9b::/96", True),
    ("64:ff9b:1::/48", False), ("100::/64", False), ("100:0:0:1::/64", False), ("2001::/23", False),
    ("2001::/32", False), ("2001:1::1/128", True), ("2001:1::2/128", True), ("2001:1::3/128", True),
    ("2001:2::/48", False), ("2001:3::/32", True), ("2001:4:112::/48", True), ("2001:10::/28", False),
    ("2001:20::/28", True), ("2001:30::/28", True), ("2001:db8::/32", False), ("2002::/16", False),
    ("2620:4f:8000::/48", True), ("3fff::/20", False), ("5f00::/16", False), ("fc00::/7", False),
    ("fe80::/10", False),
))

#: the registry blocks that are not globally reachable
NON_GLOBAL_BLOCKS: tuple[_Net, ...] = tuple(n for n, g in _REGISTRY if not g)

_NAT64_WKP = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def is_globally_reachable(ip: _Ip) -> bool:
    """The "Globally Reachable" value of the most specific IANA special-purpose block holding
    ``ip`` (False for "N/A"); for an address in no such block, ``ipaddress``'s ``is_global``."""
    best: tuple[int, bool] | None = None
    for net, reachable in _REGISTRY:
        if net.version == ip.version and ip in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, reachable)
    return ip.is_global if best is None else best[1]


def embedded_ipv4(ip: _Ip) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 address(es) ``ip`` carries (module docstring for the forms); ``()`` for an IPv4
    address or an IPv6 address of no such form. ``::`` and ``::1`` carry none."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ()
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo
    if ip in _NAT64_WKP or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    return ()
