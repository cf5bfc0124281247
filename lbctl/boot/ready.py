"""lb-ready: announce on the serial console that the appliance is ready (or why it is not).

Runs once per boot, right after provisioning, beside HAProxy, systemd-networkd and sshd. Ready
means: those units are active (an admin can log in over SSH, the addresses are handed to
networkd), and HAProxy runs the configuration lbctl applied with `lbctl status` healthy (every
virtual service's frontend open). Real servers being DOWN does not make the appliance unready;
lbctl status reports them.
"""

from __future__ import annotations

import subprocess
import sys
import time

from ..appliance import Paths
from ..status import collect_status
from . import console

TIMEOUT_SECONDS = 90
POLL_SECONDS = 0.25
# Units that must be active before READY (HAProxy's health is read from HAProxy itself).
UNITS = ("systemd-networkd.service", "ssh.service")


def required_units() -> tuple[str, ...]:
    """UNITS, and heartbeat on a paired node (READY gates the blessing of an update)."""
    from ..cluster.state import HOLD_FILE, paired

    # A node restored from a backup holds heartbeat stopped until 'lbctl cluster join'.
    return (*UNITS, "heartbeat.service") if paired() and not HOLD_FILE.exists() else UNITS


def inactive_units(units: tuple[str, ...]) -> list[str]:
    """The units that are not active yet (systemctl is-active prints one state per unit)."""
    result = subprocess.run(["systemctl", "is-active", *units], capture_output=True, text=True)
    states = result.stdout.split()
    return [unit for unit, state in zip(units, states, strict=False) if state != "active"] if states else list(units)


def failed_units(units: tuple[str, ...]) -> list[str]:
    """Units that gave up (systemd stopped restarting them): waiting longer cannot help."""
    result = subprocess.run(["systemctl", "is-failed", *units], capture_output=True, text=True)
    return [unit for unit, state in zip(units, result.stdout.split(), strict=False) if state == "failed"]


def main() -> int:
    paths = Paths.from_env()
    deadline = time.monotonic() + TIMEOUT_SECONDS
    units = required_units()
    while True:
        waiting = inactive_units(units)
        status = collect_status(paths)
        if status.healthy and not waiting:
            console.ready(status.version)
            return 0
        failed = failed_units(("haproxy.service", *units))
        if failed:
            console.failed(f"{', '.join(failed)} failed (journalctl -u {failed[0]}); " + "; ".join(status.problems))
            return 1
        if time.monotonic() > deadline:
            reasons = list(status.problems) + [f"{unit} is not active" for unit in waiting]
            console.failed(f"not ready after {TIMEOUT_SECONDS} s: " + ("; ".join(reasons) or "unknown"))
            return 1
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
