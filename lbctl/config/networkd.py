"""The VIP and SNAT addresses on the appliance's interfaces, through systemd-networkd drop-ins.

Each generation holds networkd/10-lb-<iface>.network.d/50-lbctl-vips.conf (one per interface
that carries addresses of the site). install_networkd_dropins() mirrors that tree into the live
networkd directory, next to provisioning's 10-lb-<iface>.network files: lbctl apply calls it, and
so does provisioning at every boot (/run is empty after a reboot).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from ..appliance import NETWORKD_DIR, REAL_NETWORKD_DIR
from ..fileio import write_atomic

NETWORKD_DROPIN_NAME = "50-lbctl-vips.conf"  # in 10-lb-<iface>.network.d/, from networkd-vips.conf.j2

DROPIN_DIR = re.compile(r"10-lb-[A-Za-z0-9_.-]+\.network\.d")


class NetworkError(Exception):
    pass


def _dropins(root: Path) -> dict[str, str]:
    """{'10-lb-eth0.network.d/50-lbctl-vips.conf': text} of lbctl's drop-ins below root."""
    found: dict[str, str] = {}
    if not root.is_dir():
        return found
    for directory in sorted(root.iterdir()):
        path = directory / NETWORKD_DROPIN_NAME
        if DROPIN_DIR.fullmatch(directory.name) and path.is_file():
            found[f"{directory.name}/{NETWORKD_DROPIN_NAME}"] = path.read_text()
    return found


def install_networkd_dropins(generation_dir: Path, networkd_dir: Path | None = None) -> bool:
    """Make networkd_dir hold exactly the generation's lbctl drop-ins; True if anything changed.

    Only files named 50-lbctl-vips.conf in 10-lb-*.network.d directories are touched: drop-ins of
    others stay, and a directory is removed only when lbctl's file was its last entry.
    """
    networkd_dir = networkd_dir if networkd_dir is not None else NETWORKD_DIR
    wanted = _dropins(Path(generation_dir) / "networkd")
    present = _dropins(networkd_dir)
    changed = False
    for relative, text in wanted.items():
        if present.get(relative) == text:
            continue
        write_atomic(networkd_dir / relative, text, 0o644)
        changed = True
    for relative in present.keys() - wanted.keys():
        target = networkd_dir / relative
        target.unlink()
        try:
            target.parent.rmdir()
        except OSError:
            pass  # other drop-ins live there too
        changed = True
    return changed


def networkd_is_live(networkd_dir: Path) -> bool:
    """True when the drop-ins went to the running system's networkd (not a test directory)."""
    return Path("/run/systemd/system").exists() and networkd_dir.resolve() == REAL_NETWORKD_DIR.resolve()


def reload_networkd() -> str | None:
    """Ask a running networkd to re-read its files; it reconfigures the interfaces whose files
    changed. Returns a note when networkd is not running (it reads the files when it starts)."""
    active = subprocess.run(["systemctl", "is-active", "--quiet", "systemd-networkd.service"])
    if active.returncode != 0:
        return "systemd-networkd is not running; it takes the addresses when it starts"
    result = subprocess.run(["networkctl", "reload"], capture_output=True, text=True)
    if result.returncode != 0:
        raise NetworkError(f"networkctl reload failed: {(result.stderr or result.stdout).strip()}")
    wait_configured()
    return None


def wait_configured(timeout: float = 10.0) -> None:
    """Return once networkd has finished reconfiguring every link (none 'pending', 'initialized'
    or 'configuring'; networkctl(1), list --json), or after `timeout` seconds. networkd adds and
    drops addresses after 'networkctl reload' has returned: on an HA pair, the floating IPs must
    be placed after that, or networkd removes them again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            out = subprocess.run(
                ["networkctl", "list", "--json=short"], capture_output=True, text=True, timeout=10
            ).stdout
            links = json.loads(out or "{}").get("Interfaces", [])
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return
        if not any(link.get("AdministrativeState") in ("pending", "initialized", "configuring") for link in links):
            return
        time.sleep(0.2)
