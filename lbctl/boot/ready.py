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


def inactive_units() -> list[str]:
    """The units of UNITS that are not active yet (systemctl is-active prints one state per unit)."""
    result = subprocess.run(["systemctl", "is-active", *UNITS], capture_output=True, text=True)
    states = result.stdout.split()
    return [unit for unit, state in zip(UNITS, states, strict=False) if state != "active"] if states else list(UNITS)


def main() -> int:
    paths = Paths.from_env()
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        waiting = inactive_units()
        status = collect_status(paths)
        if status.healthy and not waiting:
            console.ready(status.version)
            return 0
        if time.monotonic() > deadline:
            reasons = list(status.problems) + [f"{unit} is not active" for unit in waiting]
            console.failed(f"not ready after {TIMEOUT_SECONDS} s: " + ("; ".join(reasons) or "unknown"))
            return 1
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
