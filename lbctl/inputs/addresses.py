"""What kind of IP address a value is: our own rule, the same on every Python.

Python's ``ipaddress`` answers ``is_multicast``, ``is_loopback``, ``is_global`` ... differently
across versions for IPv4-mapped IPv6 addresses (3.13 looks through ``::ffff:a.b.c.d`` to the IPv4
address, 3.11 does not), so the build host and the appliance would disagree. Classification here
is membership in the networks below (IANA special-purpose registries, RFC 6890; IPv6 addressing
architecture, RFC 4291), which every Python computes the same way.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# (network, what it is): an address in one of these is not an ordinary unicast address.
SPECIAL: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(net), what)
    for net, what in (
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),
        ("224.0.0.0/4", "a multicast address"),
        ("255.255.255.255/32", "the broadcast address"),
        ("240.0.0.0/4", "a reserved (class E) address"),
        ("::/128", "the unspecified address"),
        ("::1/128", "the loopback address"),
        ("::ffff:0:0/96", "an IPv4-mapped IPv6 address (write the IPv4 address itself)"),
        ("::/96", "an IPv4-compatible IPv6 address (deprecated, RFC 4291)"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address (deprecated, RFC 3879)"),
        ("ff00::/8", "a multicast address"),
    )
)


def special(address: IPAddress) -> str | None:
    """What makes `address` other than ordinary unicast ("a loopback address"), or None."""
    for network, what in SPECIAL:
        if address.version == network.version and address in network:
            return what
    return None


def is_loopback(address: IPAddress) -> bool:
    return (special(address) or "").endswith("loopback address")


def is_link_local(address: IPAddress) -> bool:
    return special(address) == "a link-local address"


def is_multicast(address: IPAddress) -> bool:
    return special(address) == "a multicast address"


def endpoint_text(address: IPAddress, port: int) -> str:
    """address:port, with an IPv6 address in brackets."""
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
