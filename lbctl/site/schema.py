"""The site file, as a table of the input engine: one row per key, at three levels (site, service,
real server), and the checks that compare values across them.

The same rows drive `lbctl validate`, the model the renderer gets, and the key reference in
docs/lbctl.md (`lbctl schema` prints it), so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..appliance import INTERFACES, OWN_PORTS
from ..inputs import INVALID, Cursor, Default, Field, InputKind, Invalid, ListOf, MapOf, Scope, Table, Type, describe
from ..inputs.addresses import IPAddress, endpoint_text
from ..inputs.types import LABEL, Address, AETitle, Boolean, Choice, Integer
from .fields import SERVICE_SETTINGS
from .healthchecks import CHECKS, PING_DEADLINE_SECONDS
from .model import HASettings, OutboundSNAT, Server, Service, Site
from .preset import Preset, PresetError, ServiceDefaults, available_presets, load_preset

DEFAULT_CALLING_AE_TITLE = "LBAPPLIANCE"


class PresetName(Type[Preset]):
    kind = "name"

    def parse(self, value: object, at: Cursor) -> Preset:
        if not isinstance(value, str) or value not in available_presets():
            raise Invalid(f"{describe(value)} is not a known preset (known: {', '.join(available_presets())})")
        try:
            return load_preset(value)
        except PresetError as exc:
            raise Invalid(f"the preset itself is broken (an appliance defect): {exc}") from None


class ServiceName(Type[str]):
    """A service of the site's preset."""

    kind = "a service of the preset"

    def parse(self, value: object, at: Cursor) -> str:
        preset: Preset | None = at.scope.get("preset") if at.scope else None
        if preset is None:
            return INVALID  # the preset is wrong, and reported
        if not isinstance(value, str) or preset.service(value) is None:
            raise Invalid(f"unknown service (the {preset.name} preset has {', '.join(preset.service_names)})")
        return value


def given(at: Cursor, *below: str | int) -> bool:
    return at.given(*below)


def _preset_service(scope: Scope) -> ServiceDefaults:
    service = scope.root["preset"].service(scope.key)
    assert service is not None
    return service


def _from_preset(key: str) -> Default:
    return Default(lambda scope: getattr(_preset_service(scope), key), "preset")


# --- real server --------------------------------------------------------------------------------


def _check_server_address(scope: Scope, at: Cursor) -> None:
    address: IPAddress | None = scope.get("address")
    service, site = scope.outer, scope.root
    if address is None or service is None:
        return
    snat = site.get("snat_address")
    if snat is not None and address.version != snat.version:
        at.problem(
            f"IPv{address.version} real server, but snat_address {snat} is IPv{snat.version}; "
            "connections to it leave from the SNAT address",
            "address",
        )


SERVER = Table(
    (
        Field(
            "label",
            LABEL,
            "Name of the real server, unique in the service (e.g. Server1); `lbctl server` and `lbctl status` use it.",
            required=True,
        ),
        Field("address", Address(use="a real server"), "Address of the real server.", required=True),
        Field(
            "port",
            Integer(1, 65535),
            "Port of the real server.",
            default=Default(lambda s: s.parent["port"], "the service's port"),
        ),
        Field(
            "weight", Integer(0, 256), "Share of new clients relative to the other servers; 0 takes none.", default=100
        ),
        Field(
            "id",
            Integer(1, 2**31 - 1),
            "HAProxy server id, kept in persistence tables. Set it when reordering "
            "servers must not move persistent clients.",
            default=Default(lambda s: s.index + 1, "position in the list (1, 2, …)"),
        ),
    ),
    title="Real server (`services.<NAME>.servers[N]`)",
    checks=(_check_server_address,),
    build=lambda s: Server(**s.values),
    what="label, address, port, ...",
)


def _check_servers(servers: list[Any], at: Cursor) -> None:
    """Labels, ids and address:port are unique within a service."""
    seen: dict[str, dict[Any, int]] = {"label": {}, "id": {}, "endpoint": {}}
    for index, server in enumerate(servers):
        if server is INVALID:
            continue
        for what, value in (
            ("label", server.label),
            ("id", server.id),
            ("endpoint", (server.address, server.port)),
        ):
            first = seen[what].setdefault(value, index)
            if first == index:
                continue
            if what == "label":
                at.problem(f"{server.label!r} is already the label of servers[{first}]", index, "label")
            elif what == "id":
                hint = "" if given(at, index, "id") else "; give this server an explicit id"
                at.problem(f"{server.id} is already the id of servers[{first}]{hint}", index, "id")
            else:
                at.problem(f"{endpoint_text(*value)} is already servers[{first}]", index, "address")


# --- virtual service ----------------------------------------------------------------------------


def _check_service(scope: Scope, at: Cursor) -> None:
    preset_service = _preset_service(scope)
    check = scope.get("check")
    if check is None:
        return
    spec = CHECKS[check]
    if spec.applies_to is not None and preset_service.protocol not in spec.applies_to:
        usable = [c.name for c in CHECKS.values() if c.applies_to is None or preset_service.protocol in c.applies_to]
        at.problem(
            f"{check} does not apply to a {preset_service.protocol.upper()} service (choose {', '.join(usable)})",
            "check",
        )
    interval, timeout = scope.get("check_interval_seconds"), scope.get("check_timeout_seconds")
    if interval is not None and timeout is not None and timeout >= interval:
        key = "check_timeout_seconds" if given(at, "check_timeout_seconds") else "check_interval_seconds"
        at.problem(f"the check timeout ({timeout} s) must be shorter than the check interval ({interval} s)", key)
    if check == "ping" and interval is not None and interval <= PING_DEADLINE_SECONDS:
        # HAProxy kills an external check after 'inter'; the ping script may take its deadline.
        at.problem(
            f"the ping check needs an interval above its {PING_DEADLINE_SECONDS} s deadline "
            f"(at least {PING_DEADLINE_SECONDS + 1})",
            "check_interval_seconds",
        )
    if check == "dicom-echo":
        if not given(at, "called_ae_title"):
            at.problem(
                "missing: the dicom-echo check associates with the real servers' AE title, which only the site knows",
                "called_ae_title",
            )
    else:
        for key in ("called_ae_title", "calling_ae_title"):
            if given(at, key):
                at.problem(f"only used by the dicom-echo check, but this service's check is {check}", key)


def _build_service(scope: Scope) -> Service:
    preset_service = _preset_service(scope)
    return Service(
        name=str(scope.key),
        summary=preset_service.summary,
        protocol=preset_service.protocol,
        tls=preset_service.tls,
        balance=preset_service.balance,
        called_ae_title=scope.get("called_ae_title"),
        **{k: v for k, v in scope.values.items() if k != "called_ae_title"},
    )


SERVICE = Table(
    (
        Field("vip", Address(use="a VIP"), "Virtual service address the clients connect to.", required=True),
        *(dataclasses.replace(f, default=_from_preset(f.key)) for f in SERVICE_SETTINGS[:1]),
        Field(
            "interface",
            Choice(INTERFACES, "an interface of the appliance"),
            "Network interface that carries the VIP.",
            default=Default(lambda s: s.parent["interface"], "site `interface`"),
        ),
        *(dataclasses.replace(f, default=_from_preset(f.key)) for f in SERVICE_SETTINGS[1:]),
        Field("called_ae_title", AETitle(), "`dicom-echo` only, and required there: the real servers' AE title."),
        Field(
            "calling_ae_title",
            AETitle(),
            "`dicom-echo` only: the AE title the check associates as.",
            default=DEFAULT_CALLING_AE_TITLE,
        ),
        Field(
            "transparent",
            Boolean(),
            "Source IP transparency (TPROXY, vendor guide 12.2): the real servers see the client's address "
            "instead of the SNAT address. They must route their replies back through the appliance.",
            default=False,
        ),
        Field(
            "servers",
            ListOf(
                SERVER,
                empty="a service needs at least one real server",
                item_kind="real servers",
                items_check=_check_servers,
            ),
            "The real servers (at least one).",
            required=True,
        ),
    ),
    title="Service (`services.<NAME>`)",
    checks=(_check_service,),
    build=_build_service,
    what="vip, servers, ...",
)


# --- site ---------------------------------------------------------------------------------------


def _check_addresses(scope: Scope, at: Cursor) -> None:
    """Across services: one VIP:port per service, one interface per address."""
    services: dict[str, Service] = scope.get("services") or {}
    taken: dict[tuple[IPAddress, int], str] = {}
    interface_of: dict[IPAddress, tuple[str, str]] = {}
    snat = scope.get("snat_address")
    if snat is not None and "interface" in scope.values:
        interface_of[snat] = (scope["interface"], "snat_address")
    for service in services.values():
        endpoint = (service.vip, service.port)
        if endpoint in taken:
            key = "port" if given(at, "services", service.name, "port") else "vip"
            at.problem(
                f"{endpoint_text(*endpoint)} is already the address of services.{taken[endpoint]}; "
                "each virtual service needs its own VIP:port",
                "services",
                service.name,
                key,
            )
        taken.setdefault(endpoint, service.name)
        if service.vip in interface_of and interface_of[service.vip][0] != service.interface:
            other_iface, other = interface_of[service.vip]
            at.problem(
                f"{service.vip} is on {other_iface} for {other}; one address can be on one interface only",
                "services",
                service.name,
                "interface",
            )
        interface_of.setdefault(service.vip, (service.interface, f"services.{service.name}.vip"))


def own_addresses(at: Cursor) -> set[IPAddress]:
    """The appliance's own interface addresses, when the caller knows them (network.yaml)."""
    return set(at.context.get("own_addresses", ()))


def _check_self_loops(scope: Scope, at: Cursor) -> None:
    """The appliance as its own real server, VIPs on its own ports or addresses (issue: one client
    connection to a VIP that is also a real server loops until every connection slot is taken)."""
    services: dict[str, Service] = scope.get("services") or {}
    snat: IPAddress | None = scope.get("snat_address")
    vips = {s.vip: s.name for s in services.values()}
    own = own_addresses(at)
    if snat is not None and snat in own:
        at.problem(
            f"{snat} is the appliance's own interface address (network.yaml); the SNAT address is an extra "
            "address the appliance adds (on an HA pair a floating IP)",
            "snat_address",
        )
    for service in services.values():
        where = ("services", service.name)
        if service.port in OWN_PORTS:
            key = "port" if given(at, *where, "port") else "vip"
            at.problem(
                f"port {service.port} is the appliance's own ({OWN_PORTS[service.port]}); a virtual service "
                "needs another port",
                *where,
                key,
            )
        if service.vip in own:
            at.problem(
                f"{service.vip} is the appliance's own interface address (network.yaml); a VIP is an extra "
                "address the appliance adds",
                *where,
                "vip",
            )
        for index, server in enumerate(service.servers):
            here = (*where, "servers", index, "address")
            if server.address in vips:
                at.problem(
                    f"{server.address} is the VIP of services.{vips[server.address]}: the appliance would "
                    "connect to itself",
                    *here,
                )
            elif server.address == snat:
                at.problem(f"{server.address} is the SNAT address: the appliance would connect to itself", *here)
            elif server.address in own and server.port in OWN_PORTS:
                at.problem(
                    f"{endpoint_text(server.address, server.port)} is the appliance's own "
                    f"{OWN_PORTS[server.port]} port, not a real server",
                    *here,
                )


def _check_transparent_topology(scope: Scope, at: Cursor) -> None:
    """TPROXY (vendor guide 12.2): the real servers answer the client's own address, so their
    replies must come back through the appliance, as their gateway. That needs them on a network
    of the appliance's own interfaces; checked when network.yaml says which (no DHCP)."""
    connected = at.context.get("connected_networks")
    if connected is None:
        return
    for service in (scope.get("services") or {}).values():
        if not service.transparent:
            continue
        for index, server in enumerate(service.servers):
            if not any(server.address in network for network in connected):
                at.problem(
                    f"{server.address} is on none of the appliance's networks (network.yaml); a transparent "
                    "service's real servers must route their replies back through the appliance, so they "
                    "must be on one of its networks",
                    "services",
                    service.name,
                    "servers",
                    index,
                    "address",
                )


def _build_site(scope: Scope) -> Site:
    preset: Preset = scope["preset"]
    order = {name: n for n, name in enumerate(preset.service_names)}
    services = sorted(scope["services"].values(), key=lambda s: order[s.name])
    return Site(
        preset=preset,
        snat_address=scope["snat_address"],
        interface=scope["interface"],
        services=tuple(services),
        outbound_snat=scope["outbound_snat"],
        ha=scope["ha"],
    )


def _check_outbound_snat(scope: Scope, at: Cursor) -> None:
    """An outbound rule leaves from an address of the appliance: the SNAT address or a VIP."""
    rules: tuple[OutboundSNAT, ...] = scope.get("outbound_snat") or ()
    snat = scope.get("snat_address")
    services: dict[str, Service] = scope.get("services") or {}
    ours = {snat} | {s.vip for s in services.values()}
    for index, rule in enumerate(rules):
        if snat is not None and rule.to not in ours:
            at.problem(
                f"{rule.to} is not an address of this site (the SNAT address or a VIP); outbound connections must "
                "leave from an address the appliance holds",
                "outbound_snat",
                index,
                "to",
            )
        for n, source in enumerate(rule.sources):
            if source in ours:
                at.problem(
                    f"{source} is an address of the appliance, not a real server", "outbound_snat", index, "sources", n
                )
            elif rule.to.version != source.version:
                at.problem(
                    f"IPv{source.version} source, but it leaves from IPv{rule.to.version} {rule.to}",
                    "outbound_snat",
                    index,
                    "sources",
                    n,
                )


OUTBOUND_SNAT = Table(
    (
        Field(
            "sources",
            ListOf(
                Address(use="a real server that sends out"), empty="list the real servers that send out", unique=True
            ),
            "Real servers whose outgoing connections leave through the appliance (iExport, iQuery). They must use "
            "the appliance (on a pair, a floating IP) as their default gateway.",
            required=True,
        ),
        Field(
            "ports",
            ListOf(Integer(1, 65535), empty="list the destination ports", unique=True),
            "Destination TCP ports the rule applies to.",
            default=(104, 11112),
        ),
        Field(
            "to",
            Address(use="an outbound source address"),
            "The address those connections leave from.",
            default=Default(lambda s: s.root["snat_address"], "the site's `snat_address`"),
        ),
    ),
    title="Outbound SNAT (`outbound_snat[N]`)",
    build=lambda s: OutboundSNAT(**s.values),
    what="sources, ports, to",
)


def _check_heartbeat_timing(scope: Scope, at: Cursor) -> None:
    """heartbeat refuses to start when deadtime <= 2 x keepalive (heartbeat/config.c)."""
    keepalive, deadtime = scope.get("keepalive_ms"), scope.get("deadtime_ms")
    if keepalive is not None and deadtime is not None and deadtime <= 2 * keepalive:
        at.problem(
            f"must be more than twice keepalive_ms ({keepalive} ms): a peer is declared dead only after missing "
            "at least two heartbeats",
            "deadtime_ms",
        )


HA = Table(
    (
        Field(
            "keepalive_ms",
            Integer(50, 5000, "ms"),
            "How often each node sends a heartbeat on each path.",
            default=HASettings.keepalive_ms,
        ),
        Field(
            "deadtime_ms",
            Integer(200, 60000, "ms"),
            "How long without a heartbeat before the passive node takes over. The outage is about this plus "
            "0.1-0.5 s; shorter risks a takeover when a hypervisor pauses the active node (snapshot, vMotion).",
            default=HASettings.deadtime_ms,
        ),
        Field(
            "failback",
            Boolean(),
            "The primary takes the floating IPs back when it returns (heartbeat's auto_failback). Off: the "
            "node that holds them keeps them, which avoids a second outage.",
            default=HASettings.failback,
        ),
    ),
    title="HA pair (`ha`)",
    checks=(_check_heartbeat_timing,),
    build=lambda s: HASettings(**s.values),
    what="keepalive_ms, deadtime_ms, failback",
)


SITE = Table(
    (
        Field(
            "preset",
            PresetName(),
            "The service preset the site uses: which services exist and their defaults.",
            required=True,
        ),
        Field(
            "snat_address",
            Address(use="the SNAT address"),
            '"Set Source Address": connections and health checks to the real servers leave from this '
            "address. The appliance adds it to `interface` (a floating IP on an HA pair).",
            required=True,
        ),
        Field(
            "interface",
            Choice(INTERFACES, "an interface of the appliance"),
            "Network interface that carries `snat_address` and, unless a service says otherwise, the VIPs.",
            default="eth0",
        ),
        Field(
            "services",
            MapOf(ServiceName(), SERVICE, empty="a site uses at least one service", what="service names to settings"),
            "The virtual services the site uses, by preset name (see below). A site lists only the services it "
            "uses, at least one.",
            required=True,
        ),
        Field(
            "outbound_snat",
            ListOf(OUTBOUND_SNAT, item_kind="outbound SNAT rules"),
            "Outbound SNAT for real servers that send DICOM out (vendor guide 12.1): their connections to the "
            "listed ports leave from an appliance address. Forwarding is enabled only for them.",
            default=(),
        ),
        Field(
            "ha",
            HA,
            "Heartbeat timing of an HA pair (used once the appliance is paired: `lbctl cluster pair`).",
            default=HASettings(),
        ),
    ),
    title="Site",
    checks=(_check_addresses, _check_self_loops, _check_outbound_snat, _check_transparent_topology),
    build=_build_site,
    what="site keys (preset, snat_address, services, ...)",
)

SITE_KIND: InputKind[Site] = InputKind("site", "a site file", SITE)
