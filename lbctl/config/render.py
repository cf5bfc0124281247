"""The renderer: one site model in, every generated file out, each from its own template.

    haproxy.cfg                                           templates/haproxy.cfg.j2
    networkd/10-lb-<iface>.network.d/50-lbctl-vips.conf   templates/networkd-vips.conf.j2 (single node)
    floating-ips                                          templates/floating-ips.j2
    passive-ips                                           templates/passive-ips.j2
    services.json                                         templates/services.json.j2
    check-ping                                            templates/check-ping.j2 (a ping check)

On an HA pair (cluster.yaml) the VIPs and the SNAT address float: heartbeat's resource script
adds them from floating-ips on the active node, so no networkd drop-in holds them, and the
peers section lists both nodes by their own addresses.

Rendering is a pure function of the site, the preset and the settings below: the same inputs give
byte-identical files (services in preset order, servers in site order, no timestamps).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..appliance import CHECK_SCRIPTS_DIR, METRICS_PORT, PEERS_PORT, Paths
from ..cluster.floating import FLOATING_FILE, PASSIVE_FILE
from ..fileio import write_atomic
from ..inputs.addresses import IPAddress
from ..quoting import endpoint
from ..site.healthchecks import CHECKS, CheckContext
from ..site.model import Service, Site
from ..templating import render as render_template
from .networkd import NETWORKD_DROPIN_NAME

PEERS_SECTION = "lbpeers"
# The vendor appliance replicates persistence tables on TCP 7778 (PEERS_PORT). On a single
# appliance only the local peer exists: on a reload the old process hands its tables to the new
# one through it. An HA pair adds the partner as a second peer with each node's OWN address.
STICK_TABLE_SIZE = "100k"  # entries per service; about 50 bytes each
# Global connections beyond the services' own limits: the runtime API, the master CLI, peers.
CONNECTION_MARGIN = 100


@dataclass(frozen=True)
class Peer:
    name: str
    address: str


@dataclass(frozen=True)
class RenderSettings:
    """What the rendered files need besides the site: where this appliance keeps things."""

    version: str
    admin_socket: Path
    server_state_file: Path
    # Where the applied generation is reachable once it is current ('current' link): files of the
    # configuration that HAProxy runs (the ping wrapper) are named by this path.
    current_dir: Path = Path("/var/lib/lbappliance/lbctl/current")
    local_peer: str = "local"
    peers: tuple[Peer, ...] = (Peer("local", f"127.0.0.1:{PEERS_PORT}"),)
    clustered: bool = False  # an HA pair: the floating IPs are heartbeat's, not networkd's
    metrics_port: int = METRICS_PORT  # HAProxy's Prometheus exporter (frontend metrics)

    @classmethod
    def for_paths(cls, paths: Paths, version: str) -> RenderSettings:
        """The appliance's settings; on a paired node with both nodes as peers."""
        from ..cluster.state import paired

        settings = cls(
            version=version,
            admin_socket=paths.admin_socket,
            server_state_file=paths.server_state_file,
            current_dir=paths.current,
        )
        if not paired():
            return settings
        from ..cluster.model import load_cluster

        cluster = load_cluster()
        return replace(
            settings,
            clustered=True,
            local_peer=cluster.node.name,
            peers=tuple(
                Peer(node.name, endpoint(node.addresses[0], PEERS_PORT)) for node in (cluster.node, cluster.peer)
            ),
        )


PING_WRAPPER = "check-ping"  # in the generation; runs CHECK_SCRIPTS_DIR/ping from the SNAT address
EXECUTABLES = frozenset({PING_WRAPPER})


def check_context(service: Service, settings: RenderSettings) -> CheckContext:
    return CheckContext(
        tls=service.tls,
        called_ae_title=service.called_ae_title or "",
        calling_ae_title=service.calling_ae_title,
        ping_command=str(settings.current_dir / PING_WRAPPER),
    )


def service_view(service: Service, settings: RenderSettings) -> dict[str, Any]:
    check = CHECKS[service.check]
    ctx = check_context(service, settings)
    return {
        "s": service,
        "check": check,
        "check_directives": check.directives(ctx),
        "server_options": check.server_options(ctx),
        "table_type": "ipv6" if service.vip.version == 6 else "ip",
    }


def interface_addresses(site: Site) -> dict[str, list[tuple[str, str]]]:
    """Per interface: (address/prefix, what uses it), in a stable order, each address once."""
    uses: dict[tuple[str, IPAddress], list[str]] = {}
    if site.snat_address is not None:
        uses.setdefault((site.interface, site.snat_address), []).append(
            "SNAT address (source of connections to real servers)"
        )
    for service in site.services:
        uses.setdefault((service.interface, service.vip), []).append(f"VIP of {service.name} (port {service.port})")
    result: dict[str, list[tuple[str, str]]] = {}
    for (interface, address), reasons in sorted(uses.items(), key=lambda kv: (kv[0][0], kv[0][1].version, kv[0][1])):
        prefix = address.max_prefixlen  # a host address: no subnet route, the interface's own address has it
        result.setdefault(interface, []).append((f"{address}/{prefix}", "; ".join(reasons)))
    return result


def services_summary(site: Site) -> dict[str, Any]:
    """What lbctl status and lbctl server need to know about the applied site (services.json)."""
    return {
        "preset": site.preset.name,
        "snat_address": str(site.snat_address) if site.snat_address else None,
        "services": [
            {
                "name": s.name,
                "summary": s.summary,
                "vip": str(s.vip),
                "port": s.port,
                "interface": s.interface,
                "max_connections": s.max_connections,
                "check": s.check,
                "persistence_minutes": s.persistence_minutes,
                "servers": [
                    {"label": r.label, "address": str(r.address), "port": r.port, "id": r.id} for r in s.servers
                ],
            }
            for s in site.services
        ],
    }


def render(site: Site, settings: RenderSettings) -> dict[str, str]:
    """Every generated file, by path relative to the output directory."""
    services = [service_view(s, settings) for s in site.services]
    files = {
        "haproxy.cfg": render_template(
            "haproxy.cfg.j2",
            site=site,
            settings=settings,
            services=services,
            peers_section=PEERS_SECTION,
            peers_port=PEERS_PORT,
            stick_table_size=STICK_TABLE_SIZE,
            external_checks=any(v["check"].external for v in services),
            connection_margin=CONNECTION_MARGIN,
            global_maxconn=sum(s.max_connections for s in site.services) + CONNECTION_MARGIN,
        ),
        "services.json": render_template("services.json.j2", summary=services_summary(site)),
    }
    floating = interface_addresses(site)
    files[FLOATING_FILE] = render_template("floating-ips.j2", settings=settings, floating=floating)
    files[PASSIVE_FILE] = render_template("passive-ips.j2", settings=settings, site=site)
    for interface, addresses in floating.items() if not settings.clustered else ():
        files[f"networkd/10-lb-{interface}.network.d/{NETWORKD_DROPIN_NAME}"] = render_template(
            "networkd-vips.conf.j2", settings=settings, interface=interface, addresses=addresses
        )
    if any(v["check"].external for v in services):
        files[PING_WRAPPER] = render_template(
            "check-ping.j2", settings=settings, site=site, script=CHECK_SCRIPTS_DIR / "ping"
        )
    return files


def write_files(files: dict[str, str], out_dir: Path) -> None:
    for relative, text in sorted(files.items()):
        write_atomic(out_dir / relative, text, 0o755 if relative in EXECUTABLES else 0o644)
