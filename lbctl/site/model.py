"""The site model: what a valid site file means, as the renderer and the status read it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..inputs.addresses import IPAddress
from .preset import Preset, load_preset


@dataclass(frozen=True)
class Server:
    """A real server of a virtual service."""

    label: str
    address: IPAddress
    port: int
    weight: int
    id: int


@dataclass(frozen=True)
class Service:
    """A virtual service: the preset's defaults with the site's values over them."""

    name: str
    summary: str
    protocol: str
    tls: bool
    balance: str
    vip: IPAddress
    port: int
    interface: str
    persistence_minutes: int
    check: str
    check_interval_seconds: int
    check_timeout_seconds: int
    rise: int
    fall: int
    max_connections: int
    idle_timeout_minutes: int
    called_ae_title: str | None
    calling_ae_title: str
    transparent: bool
    servers: tuple[Server, ...]


@dataclass(frozen=True)
class OutboundSNAT:
    """Connections the listed real servers open to the listed ports leave from `to` (vendor guide
    appendix 12.1: iExport and iQuery send DICOM out through the appliance)."""

    sources: tuple[IPAddress, ...]
    ports: tuple[int, ...]
    to: IPAddress


@dataclass(frozen=True)
class HASettings:
    """How the HA pair's heartbeat watches the peer (replicated with the site, so both nodes agree).

    The outage at a failover is about `deadtime_ms` plus the takeover itself (moving the floating
    IPs, some 0.1-0.5 s): see docs/cluster.md for the trade-off against false failovers."""

    keepalive_ms: int = 100
    deadtime_ms: int = 500
    failback: bool = False

    @property
    def warntime_ms(self) -> int:
        """heartbeat logs a late heartbeat after this (half the deadtime, heartbeat's own default)."""
        return self.deadtime_ms // 2


@dataclass(frozen=True)
class Site:
    preset: Preset
    snat_address: IPAddress | None  # None only for the empty site of 'lbctl init'
    interface: str
    services: tuple[Service, ...] = field(default=())
    outbound_snat: tuple[OutboundSNAT, ...] = field(default=())
    ha: HASettings = field(default=HASettings())

    @property
    def transparent(self) -> bool:
        """Some service keeps the client's address (TPROXY)."""
        return any(s.transparent for s in self.services)


def empty_site(preset_name: str = "pacs") -> Site:
    """A site without services: what the appliance runs before any site file was applied."""
    return Site(preset=load_preset(preset_name), snat_address=None, interface="eth0", services=())
