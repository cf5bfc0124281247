"""heartbeat, the HA pair's membership layer: its configuration files and its state.

The one module that knows heartbeat (3.0.6, Debian's `heartbeat` package). It writes ha.cf,
haresources and authkeys into DATA_DIR/cluster/ha.d (the image links /etc/ha.d/* there), starts
and stops the unit, and asks `cl_status` who holds the floating IPs. Swapping heartbeat for
keepalived would replace this module and the resource script, nothing else.

heartbeat's rules and paths are from ha.cf(5), authkeys(5), cl_status(1) and heartbeat/config.c.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..appliance import HEARTBEAT_PORT
from ..fileio import write_atomic
from ..site.model import HASettings
from ..templating import render
from .model import ClusterConfig
from .state import HA_DIR, HOLD_FILE

UNIT = "heartbeat.service"
HB_SHARE = Path("/usr/share/heartbeat")  # hb_takeover, hb_standby
# At boot, how long heartbeat waits for the peer before taking the floating IPs alone. heartbeat
# warns below 10 s, and a node that boots beside a running peer must hear it first.
INITDEAD_SECONDS = 10
FILES = {"ha.cf": 0o644, "haresources": 0o644, "authkeys": 0o600}


class HeartbeatError(Exception):
    pass


def render_files(cluster: ClusterConfig, ha: HASettings, version: str) -> dict[str, str]:
    """ha.cf, haresources and authkeys for this node, by file name."""
    primary = cluster.node.name if cluster.primary else cluster.peer.name
    return {
        "ha.cf": render(
            "cluster/ha.cf.j2",
            version=version,
            node=cluster.node,
            peer=cluster.peer,
            role=cluster.role,
            paths=cluster.paths,
            ping_node=cluster.ping_node,
            ha=ha,
            heartbeat_port=HEARTBEAT_PORT,
            initdead_s=max(INITDEAD_SECONDS, -(-2 * ha.deadtime_ms // 1000)),
        ),
        "haresources": render("cluster/haresources.j2", version=version, primary=primary),
        "authkeys": render("cluster/authkeys.j2", secret=cluster.heartbeat_key),
    }


def install(files: dict[str, str], directory: Path | None = None) -> bool:
    """Write the files that differ; True if any did."""
    directory = directory or HA_DIR
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    changed = False
    for name, text in files.items():
        target = directory / name
        if target.exists() and target.read_text() == text:
            continue
        write_atomic(target, text, FILES[name])
        changed = True
    return changed


def remove(directory: Path | None = None) -> None:
    for name in FILES:
        ((directory or HA_DIR) / name).unlink(missing_ok=True)


def managed() -> bool:
    """heartbeat is run here (the appliance); LBCTL_HEARTBEAT=off leaves it alone (host tests)."""
    setting = os.environ.get("LBCTL_HEARTBEAT", "")
    if setting in ("on", "off"):
        return setting == "on"
    return Path("/run/systemd/system").exists() and Path("/usr/libexec/heartbeat/heartbeat").exists()


def _systemctl(*args: str) -> None:
    result = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise HeartbeatError(f"systemctl {' '.join(args)}: {(result.stderr or result.stdout).strip()}")


def start() -> None:
    """Start heartbeat (and the periodic re-announcement), unless held after a restore."""
    if not managed() or HOLD_FILE.exists():
        return
    _systemctl("reset-failed", UNIT)
    _systemctl("start", UNIT, "lb-garp.timer")


def stop() -> None:
    """Stop heartbeat: it gives up the floating IPs it holds, and the peer takes them over."""
    if managed():
        _systemctl("stop", UNIT, "lb-garp.timer")


def reload() -> None:
    """heartbeat re-reads ha.cf on SIGHUP (new timing) without giving up what it holds."""
    if managed() and running():
        _systemctl("kill", "--kill-whom=main", "--signal=HUP", UNIT)


def running() -> bool:
    if not managed():
        return False
    return subprocess.run(["systemctl", "is-active", "--quiet", UNIT]).returncode == 0


def _cl_status(*args: str) -> str | None:
    try:
        result = subprocess.run(["cl_status", *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@dataclass(frozen=True)
class HeartbeatState:
    """What heartbeat says (cl_status(1)); None where it does not answer."""

    running: bool
    # Which resource groups this node holds, in heartbeat's words: "local" (those haresources
    # gives this node first), "foreign" (the peer's), "all", "none" or "transition".
    resources: str | None
    peer: str | None  # the peer's node status: active, up, dead, ...

    def role_state(self, holds_floating_ips: bool) -> str:
        """active, passive, starting or stopped, from this node's point of view."""
        if not self.running:
            return "stopped"
        if self.resources == "transition":
            return "starting"
        return "active" if holds_floating_ips else "passive"


def state(peer_name: str) -> HeartbeatState:
    if not running():
        return HeartbeatState(False, None, None)
    return HeartbeatState(True, _cl_status("rscstatus"), _cl_status("nodestatus", peer_name))


def takeover() -> None:
    """Take the floating IPs from the peer (hb_takeover all)."""
    _hb_tool("hb_takeover")


def standby() -> None:
    """Hand the floating IPs to the peer (hb_standby all)."""
    _hb_tool("hb_standby")


def _hb_tool(name: str) -> None:
    if not running():
        raise HeartbeatError("heartbeat is not running on this node ('lbctl cluster status')")
    result = subprocess.run([str(HB_SHARE / name), "all"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise HeartbeatError(f"{name}: {(result.stderr or result.stdout).strip()}")
