"""The appliance's own gauges, in the Prometheus text exposition format (version 0.0.4,
prometheus.io/docs/instrumenting/exposition_formats). Served at /metrics on the web UI's port.

HAProxy's built-in exporter (`prometheus-exporter` service, frontend `metrics` in haproxy.cfg,
TCP 8405) exports every frontend, backend and server itself; these are what only the appliance
knows: its health, the HA pair, the configuration generation, the running version and slot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..status import Status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str
    samples: tuple[tuple[dict[str, str], float], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(gauges: Iterable[Gauge]) -> str:
    lines: list[str] = []
    for g in gauges:
        lines += [f"# HELP {g.name} {g.help}", f"# TYPE {g.name} gauge"]
        for labels, value in g.samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            number = repr(float(value)) if value != int(value) else str(int(value))
            lines.append(f"{g.name}{{{text}}} {number}" if text else f"{g.name} {number}")
    return "\n".join(lines) + "\n"


def gauges(status: Status, booted_slot: str | None, lockdown: bool | None) -> list[Gauge]:
    """The gauges of one status reading. `booted_slot` A or B (None: unknown, not on an
    appliance disk); `lockdown` None when firewall.yaml cannot be read."""
    out = [
        Gauge(
            "lbappliance_info",
            "The running version and the root slot it booted from (always 1).",
            (({"version": status.version, "slot": booted_slot or "unknown"}, 1),),
        ),
        Gauge(
            "lbappliance_healthy",
            "1 when HAProxy runs every virtual service of the configuration.",
            (({}, 1 if status.healthy else 0),),
        ),
        Gauge(
            "lbappliance_config_generation",
            "The number of the applied configuration generation (0: none).",
            (({}, int(status.generation) if status.generation and status.generation.isdigit() else 0),),
        ),
        Gauge(
            "lbappliance_servers",
            "Real servers by state (UP, DOWN, DRAIN, MAINT).",
            tuple(
                ({"state": state}, sum(1 for s in status.services for r in s.servers if r.state == state))
                for state in ("UP", "DOWN", "DRAIN", "MAINT")
            ),
        ),
    ]
    c = status.cluster
    out.append(Gauge("lbappliance_ha_paired", "1 when this appliance is a node of an HA pair.", (({}, 1 if c else 0),)))
    if c is not None:
        out += [
            Gauge(
                "lbappliance_ha_role",
                "This node's HA state (active holds the floating IPs); the series with value 1 is the current one.",
                tuple(
                    ({"role": c.role, "state": state}, 1 if c.state == state else 0)
                    for state in ("active", "passive", "starting", "stopped", "held")
                ),
            ),
            Gauge(
                "lbappliance_ha_peer_alive",
                "1 when heartbeat hears the peer (its state is up or active).",
                (({"peer": c.peer}, 1 if c.peer_state in ("up", "active") else 0),),
            ),
        ]
        if c.last_heartbeat_seconds is not None:
            out.append(
                Gauge(
                    "lbappliance_ha_last_heartbeat_seconds",
                    "Seconds since the peer's last heartbeat packet arrived.",
                    (({"peer": c.peer}, round(c.last_heartbeat_seconds, 3)),),
                )
            )
    if lockdown is not None:
        out.append(
            Gauge(
                "lbappliance_firewall_lockdown",
                "1 when management (SSH, web UI, metrics) is open from the lockdown networks only.",
                (({}, 1 if lockdown else 0),),
            )
        )
    return out
