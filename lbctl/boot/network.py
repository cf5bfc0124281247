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
from ..inputs.addresses import IPAddress, IPInterface
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


class NTPServer(Type[str]):
    """A host name, or an IP address (anything holding ':' is read as an IPv6 address)."""

    kind = "host name or IP address"

    def parse(self, value: object, at: Cursor) -> str:
        if isinstance(value, str) and ":" in value:
            return str(Address(use="an NTP server").parse(value, at))
        return HOST_NAME.parse(value, at)


def _check_interface(scope: Scope, at: Cursor) -> None:
    if not scope.get("dhcp") and not scope.get("addresses") and "address" not in scope.values:
        at.problem("needs 'dhcp: true' or at least one address")


def _build_interface(scope: Scope) -> InterfaceConfig:
    addresses = tuple(([scope["address"]] if "address" in scope.values else []) + list(scope.get("addresses", ())))
    return InterfaceConfig(dhcp=scope["dhcp"], addresses=addresses, gateway=scope.get("gateway"),
                           mtu=scope.get("mtu"))


INTERFACE = Table((
    Field("dhcp", Boolean(), "Take an IPv4 address, gateway and DNS by DHCP.", default=False),
    Field("address", InterfaceAddress(), "The interface's own address with its prefix length."),
    Field("addresses", ListOf(InterfaceAddress()), "More addresses of the interface.", default=()),
    Field("gateway", Address(use="a gateway", allow=("a link-local address",)),
          "Default gateway through this interface (an IPv6 gateway may be link-local)."),
    Field("mtu", Integer(576, 9000, "bytes"), "MTU of the interface."),
), title="Interface (`interfaces.<ethN>`)", checks=(_check_interface,), build=_build_interface,
    what="dhcp, address, addresses, gateway, mtu")

NETWORK = Table((
    Field("hostname", SHORT_HOST_NAME, "The appliance's host name (also its node name in an HA pair)."),
    Field("interfaces", MapOf(Choice(INTERFACES, "an interface of the appliance"), INTERFACE, key_doc="ethN",
                              what="adapters (eth0 … eth3) to settings"),
          "Settings per adapter, eth0 … eth3 in the hypervisor's adapter order. Adapters not listed are up "
          "without addresses.",
          default=Default(lambda s: {"eth0": InterfaceConfig(dhcp=True)}, "eth0 by DHCP")),
    Field("dns", ListOf(Address(use="a DNS server")), "DNS servers.", default=()),
    Field("ntp", ListOf(NTPServer()), "NTP servers (host names or addresses).", default=()),
), title="network.yaml", build=lambda s: NetworkConfig(**s.values), what="hostname, interfaces, dns, ntp")

NETWORK_KIND: InputKind[NetworkConfig] = InputKind("network", "network.yaml", NETWORK)


def render_network(network: NetworkConfig) -> dict[str, str]:
    """The systemd-networkd file of every adapter: {file name: text}."""
    return {f"10-lb-{name}.network": render("network/interface.network.j2", name=name,
                                            settings=network.interfaces.get(name),
                                            dns=network.dns, ntp=network.ntp)
            for name in INTERFACES}
