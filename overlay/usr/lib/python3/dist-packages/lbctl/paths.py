"""Where lbctl finds and keeps things. One place, so the appliance layout is written down once.

Every path can be moved with an environment variable, which is how the host tests run lbctl
against a HAProxy of their own instead of the appliance's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The package sits in <prefix>/lib/python3/dist-packages/lbctl, both on the appliance (prefix /usr)
# and in the source tree (prefix overlay/usr); health-check scripts sit in <prefix>/lib/lbctl/checks.
CHECKS_DIR = PACKAGE_DIR.parents[2] / "lbctl" / "checks"
TEMPLATES_DIR = PACKAGE_DIR / "templates"
# The persistent data partition; everything that must survive a root-slot swap lives below it.
DATA_DIR = Path(os.environ.get("LB_DATA_DIR", "/var/lib/lbappliance"))
PRESETS_DIR = PACKAGE_DIR / "presets"


@dataclass(frozen=True)
class Paths:
    state_dir: Path        # generations of rendered configs, the 'current' and 'last-good' links
    admin_socket: Path     # HAProxy runtime API (stats socket, level admin)
    master_socket: Path    # HAProxy master CLI, used for seamless reloads
    os_release: Path

    @property
    def current(self) -> Path:
        return self.state_dir / "current"

    @property
    def last_good(self) -> Path:
        return self.state_dir / "last-good"

    @property
    def server_state_file(self) -> Path:
        # 'show servers state' as dumped before a reload; the new process loads it, so that
        # DRAIN/MAINT set by 'lbctl server' and DOWN from checks survive reloads and reboots.
        return self.state_dir / "server-state"

    @classmethod
    def from_env(cls) -> "Paths":
        env = os.environ.get
        return cls(
            state_dir=Path(env("LBCTL_STATE_DIR", str(DATA_DIR / "lbctl"))),
            admin_socket=Path(env("LBCTL_ADMIN_SOCKET", "/run/haproxy/admin.sock")),
            master_socket=Path(env("LBCTL_MASTER_SOCKET", "/run/haproxy-master.sock")),
            os_release=Path(env("LBCTL_OS_RELEASE", "/etc/os-release")),
        )
