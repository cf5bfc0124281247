"""network.yaml: the appliance's own network (management addresses, gateway, DNS, NTP, host name).

Read by the input engine (the NETWORK table below, `lbctl validate --kind network`), rendered into
one systemd-networkd file per adapter (templates/network/interface.network.j2). These settings are
local to each node of an HA pair (vendor guide 12.3, "Non-Replicated Settings").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..appliance import INTERFACES
from ..inputs import Cursor, Default, Field, InputKind, ListOf, MapOf, Scope, Table, Type
from ..inputs.addresses import IPAddress, IPInterface, IPNetwork, is_link_local
from ..inputs.types import HOST_NAME, SHORT_HOST_NAME, Address, Boolean, Choice, Integer, InterfaceAddress
from ..templating import render


@dataclass(frozen=True)
class InterfaceConfig:
    dhcp: bool = False
    addresses: tuple[IPInterface, ...] = ()
    gateway: IPAddress | None = None
    mtu: int | None = None


@dataclass(frozen=True)
class NetworkConfig:
    hostname: str | None = None
    interfaces: Mapping[str, InterfaceConfig] = field(default_factory=lambda: {"eth0": InterfaceConfig(dhcp=True)})
    dns: tuple[IPAddress, ...] = ()
    ntp: tuple[str, ...] = ()

    def own_addresses(self) -> set[IPAddress]:
        """The static addresses of the appliance's interfaces."""
        return {a.ip for i in self.interfaces.values() for a in i.addresses}

    def connected_networks(self) -> tuple[IPNetwork, ...] | None:
        """The networks the appliance's interfaces are on, or None when one takes DHCP (unknown)."""
        if any(i.dhcp for i in self.interfaces.values()):
            return None
        return tuple(a.network for i in self.interfaces.values() for a in i.addresses)


class NTPServer(Type[str]):
    """A host name, or an IP address (anything holding ':' is read as an IPv6 address)."""

    kind = "host name or IP address"

    def parse(self, value: object, at: Cursor) -> str:
        if isinstance(value, str) and ":" in value:
            return str(Address(use="an NTP server").parse(value, at))
        return HOST_NAME.parse(value, at)


def _check_interface(scope: Scope, at: Cursor) -> None:
    failed = [key for key in ("dhcp", "address", "addresses") if at.given(key) and key not in scope.values]
    if not failed and not scope.get("dhcp") and "address" not in scope.values and not scope.get("addresses"):
        at.problem("needs 'dhcp: true' or at least one address")


def _build_interface(scope: Scope) -> InterfaceConfig:
    addresses = tuple(([scope["address"]] if "address" in scope.values else []) + list(scope.get("addresses", ())))
    return InterfaceConfig(dhcp=scope["dhcp"], addresses=addresses, gateway=scope.get("gateway"), mtu=scope.get("mtu"))


INTERFACE = Table(
    (
        Field("dhcp", Boolean(), "Take an IPv4 address, gateway and DNS by DHCP.", default=False),
        Field("address", InterfaceAddress(), "The interface's own address with its prefix length."),
        Field("addresses", ListOf(InterfaceAddress()), "More addresses of the interface.", default=()),
        Field(
            "gateway",
            Address(use="a gateway", allow=("a link-local address",)),
            "Default gateway through this interface (an IPv6 gateway may be link-local).",
        ),
        Field("mtu", Integer(576, 9000, "bytes"), "MTU of the interface."),
    ),
    title="Interface (`interfaces.<ethN>`)",
    checks=(_check_interface,),
    build=_build_interface,
    what="dhcp, address, addresses, gateway, mtu",
)

# RFC 8200 section 5: IPv6 needs a link MTU of at least 1280 bytes.
IPV6_MIN_MTU = 1280


def _check_network(scope: Scope, at: Cursor) -> None:
    """Values that must agree across an interface and across interfaces: every gateway reachable on
    its interface, one default gateway per address family, each address once, MTU and IPv6."""
    interfaces: dict[str, InterfaceConfig] = scope.get("interfaces") or {}
    owner: dict[IPAddress, str] = {}
    gateway_of: dict[int, str] = {}
    for name, iface in interfaces.items():
        where = ("interfaces", name)
        for address in iface.addresses:
            if address.ip in owner:
                at.problem(f"{address.ip} is already an address of {owner[address.ip]}", *where)
            owner.setdefault(address.ip, name)
        has_v6 = any(a.version == 6 for a in iface.addresses)
        if iface.mtu is not None and has_v6 and iface.mtu < IPV6_MIN_MTU:
            at.problem(f"{iface.mtu} is below IPv6's minimum MTU of {IPV6_MIN_MTU} (RFC 8200)", *where, "mtu")
        gateway = iface.gateway
        if gateway is None:
            continue
        here = (*where, "gateway")
        family = [a for a in iface.addresses if a.version == gateway.version]
        if gateway.version in gateway_of:
            at.problem(
                f"a second IPv{gateway.version} default gateway ({gateway_of[gateway.version]} has one); "
                "give one default gateway per address family",
                *here,
            )
        gateway_of.setdefault(gateway.version, name)
        if any(gateway == a.ip for a in iface.addresses):
            at.problem(f"{gateway} is {name}'s own address, not a gateway", *here)
        elif gateway.version == 6 and is_link_local(gateway):
            if not has_v6:
                at.problem(f"a link-local IPv6 gateway needs an IPv6 address on {name}", *here)
        elif not family:
            if not (gateway.version == 4 and iface.dhcp):
                at.problem(f"IPv{gateway.version} gateway, but {name} has no IPv{gateway.version} address", *here)
        elif not any(gateway in a.network for a in family):
            subnets = ", ".join(str(a.network) for a in family)
            at.problem(f"{gateway} is outside {name}'s subnet ({subnets}); the kernel would refuse the route", *here)
        else:
            for a in family:
                net = a.network
                if a.version == 4 and net.prefixlen <= 30 and gateway in (net.network_address, net.broadcast_address):
                    which = "network" if gateway == net.network_address else "broadcast"
                    at.problem(f"{gateway} is the {which} address of {net}, not a host", *here)


NETWORK = Table(
    (
        Field("hostname", SHORT_HOST_NAME, "The appliance's host name (also its node name in an HA pair)."),
        Field(
            "interfaces",
            MapOf(
                Choice(INTERFACES, "an interface of the appliance"),
                INTERFACE,
                key_doc="ethN",
                what="adapters (eth0 … eth3) to settings",
            ),
            "Settings per adapter, eth0 … eth3 in the hypervisor's adapter order. Adapters not listed are up "
            "without addresses.",
            default=Default(lambda s: {"eth0": InterfaceConfig(dhcp=True)}, "eth0 by DHCP"),
        ),
        Field("dns", ListOf(Address(use="a DNS server")), "DNS servers.", default=()),
        Field("ntp", ListOf(NTPServer()), "NTP servers (host names or addresses).", default=()),
    ),
    title="network.yaml",
    checks=(_check_network,),
    build=lambda s: NetworkConfig(**s.values),
    what="hostname, interfaces, dns, ntp",
)

NETWORK_KIND: InputKind[NetworkConfig] = InputKind("network", "network.yaml", NETWORK)


def render_network(network: NetworkConfig) -> dict[str, str]:
    """The systemd-networkd file of every adapter: {file name: text}."""
    return {
        f"10-lb-{name}.network": render(
            "network/interface.network.j2",
            name=name,
            settings=network.interfaces.get(name),
            dns=network.dns,
            ntp=network.ntp,
        )
        for name in INTERFACES
    }
