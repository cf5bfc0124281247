"""The boot's health gate: bless a new version only when it is READY, else mark it bad and reboot.

systemd-boot decrements a counted UKI's tries at every boot ("+3" -> "+2-1"). On such a boot,
systemd-bless-boot-generator pulls in systemd-bless-boot.service, which needs boot-complete.target;
the image's drop-in makes that target require lb-boot-check.service, which runs this after
lb-ready. READY: the entry is blessed (renamed without its counter) by systemd-bless-boot. Not
READY (HAProxy down, provisioning failed, heartbeat down while paired): the entry is marked bad
now (`systemd-bless-boot bad`, its tries set to 0), the reason is recorded on the data partition
and the appliance reboots, into the previous version. A boot that hangs is rebooted by
boot-complete.target's job timeout and costs one try. Blessed boots never run this.

Sources: systemd-bless-boot.service(8), systemd.special(7) "boot-complete.target", the Boot Loader
Specification's "Boot counting".
"""

from __future__ import annotations

import subprocess
import sys

from ..appliance import RUN_DIR
from ..boot import console
from . import state
from .apply import running_version

BLESS = "/usr/lib/systemd/systemd-bless-boot"
READY_UNIT = "lb-ready.service"


def ready() -> bool:
    return subprocess.run(["systemctl", "is-active", "--quiet", READY_UNIT]).returncode == 0


def failure_reason() -> str:
    try:
        return (RUN_DIR / "failed").read_text().strip() or "lb-ready did not finish"
    except OSError:
        result = subprocess.run(["systemctl", "show", "-P", "Result", READY_UNIT], capture_output=True, text=True)
        return f"lb-ready did not succeed ({result.stdout.strip() or 'unknown'})"


def main() -> int:
    version = running_version()
    last = state.last() or {}
    came_from = str(last.get("from", "")) if last.get("version") == version else ""
    if ready():
        state.record(version, came_from, "installed", f"{version} became READY and was blessed")
        return 0
    reason = failure_reason()
    state.record(version, came_from, "rolled back", f"{version} was not READY: {reason}")
    console.emit("UPDATE", f"{version} is not READY ({reason}): marked bad, rebooting into the previous version")
    subprocess.run([BLESS, "bad"], check=False)
    subprocess.run(["systemctl", "--no-block", "reboot"], check=False)
    return 1


if __name__ == "__main__":
    sys.exit(main())
