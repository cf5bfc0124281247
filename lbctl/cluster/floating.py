"""The floating IPs: every VIP and the SNAT address, held by the active node of an HA pair.

Each generation lists them in `floating-ips` (an `ip -batch` file, from floating-ips.j2). On a
single appliance networkd holds them through lbctl's drop-ins; on a pair heartbeat's resource
script (/etc/ha.d/resource.d/lbfloat) adds them on the active node. When an apply changes them,
the node that holds them now gets the new set at once, without waiting for heartbeat.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

FLOATING_FILE = "floating-ips"  # in each generation
PASSIVE_FILE = "passive-ips"  # the SNAT address on lo while this node is passive
RESOURCE_SCRIPT = Path(os.environ.get("LBCTL_LBFLOAT", "/etc/ha.d/resource.d/lbfloat"))


def listed(generation: Path | None, name: str = FLOATING_FILE) -> dict[str, set[str]]:
    """A generation's list (floating-ips or passive-ips) as {interface: {address/prefix}}."""
    result: dict[str, set[str]] = {}
    if generation is None or not (generation / name).exists():
        return result
    for line in (generation / name).read_text().splitlines():
        words = line.split()
        if len(words) == 5 and words[:2] == ["address", "replace"] and words[3] == "dev":
            result.setdefault(words[4], set()).add(words[2])
    return result


def present(static_only: bool = False) -> dict[str, set[str]]:
    """The addresses on this node's interfaces now, as {interface: {address/prefix}};
    `static_only` leaves out those with a lease (DHCP: "dynamic" in `ip -j addr`)."""
    try:
        out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=10).stdout
        links = json.loads(out or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}
    return {
        link["ifname"]: {
            f"{a['local']}/{a['prefixlen']}"
            for a in link.get("addr_info", [])
            if "local" in a and not (static_only and a.get("dynamic"))
        }
        for link in links
    }


def holds(generation: Path | None) -> bool:
    """This node holds some floating IP of `generation` on the interface the list names (the
    SNAT address on lo, where a passive node keeps it, does not count): it is the active node."""
    here = present()
    return any(addresses & here.get(interface, set()) for interface, addresses in listed(generation).items())


def remove_stale(old: Path | None, new: Path | None) -> list[str]:
    """Delete addresses the old generation listed and the new one does not; returns them."""
    here = present()
    gone = []
    for name in (FLOATING_FILE, PASSIVE_FILE):
        before, after = listed(old, name), listed(new, name)
        for interface, addresses in before.items():
            for address in sorted(addresses - after.get(interface, set())):
                if address in here.get(interface, set()):
                    subprocess.run(["ip", "addr", "del", address, "dev", interface], capture_output=True, timeout=10)
                    gone.append(address)
    return gone


def take(generation: Path) -> None:
    """Add the generation's floating IPs here and announce them (the resource script's start)."""
    _resource("start", generation)


def release(generation: Path) -> None:
    """This node is passive: no floating IP on its interfaces, the SNAT address on lo (stop)."""
    _resource("stop", generation)


def _resource(action: str, generation: Path) -> None:
    result = subprocess.run(
        [str(RESOURCE_SCRIPT), action],
        env={**os.environ, "LBFLOAT_LIST": str(generation / FLOATING_FILE)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        raise OSError(f"{RESOURCE_SCRIPT} {action}: {(result.stderr or result.stdout).strip()}")
