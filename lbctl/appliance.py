"""What the appliance is and where it keeps things: each fact written down once.

The image id, the network adapters, the ports the appliance itself listens on, and every path
lbctl reads or writes. Paths can be moved with environment variables, which is how the host tests
run lbctl against a HAProxy of their own instead of the appliance's; the defaults are the
appliance's own layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_ID = "lbappliance"  # mkosi ImageId=, os-release IMAGE_ID, the artifacts' file names

# The network adapters, named eth0..eth3 in the hypervisor's adapter order (net.ifnames=0).
INTERFACES = ("eth0", "eth1", "eth2", "eth3")

# Ports the appliance serves itself (vendor guide 7.5). No virtual service may take one, and no
# real server may be one of them on an address of the appliance.
SSH_PORT = 22
SNMP_PORT = 161
HEARTBEAT_PORT = 6694  # UDP, between the two nodes of an HA pair
PEERS_PORT = 7778  # TCP, HAProxy persistence-table replication
METRICS_PORT = 8405  # TCP, HAProxy's Prometheus exporter (HAProxy's documented example port)
WEB_UI_PORT = 9443  # TCP, HTTPS management, and the appliance's own gauges at /metrics
OWN_PORTS: dict[int, str] = {
    SSH_PORT: "SSH",
    SNMP_PORT: "SNMP",
    HEARTBEAT_PORT: "heartbeat (HA pair)",
    PEERS_PORT: "persistence-table replication (HAProxy peers)",
    METRICS_PORT: "HAProxy's Prometheus metrics",
    WEB_UI_PORT: "the web UI",
}


def _env_path(name: str, default: str) -> Path:
    return Path(os.environ.get(name) or default)


# The data partition: everything that must survive a root-slot swap lives below it.
DATA_DIR = _env_path("LB_DATA_DIR", "/var/lib/lbappliance")
RUN_DIR = _env_path("LB_RUN_DIR", "/run/lbappliance")
# systemd-networkd's runtime directory: provisioning's .network files and lbctl's VIP drop-ins.
NETWORKD_DIR = _env_path("LB_NETWORKD_DIR", "/run/systemd/network")
REAL_NETWORKD_DIR = Path("/run/systemd/network")
# HAProxy's external check scripts (placed by the image's overlay, as they are).
CHECK_SCRIPTS_DIR = _env_path("LBCTL_CHECK_SCRIPTS_DIR", "/usr/lib/lbctl/check-scripts")
SERIAL_CONSOLE = os.environ.get("LB_SERIAL_CONSOLE", "/dev/ttyS0")

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
PRESETS_DIR = PACKAGE_DIR / "site" / "presets"


@dataclass(frozen=True)
class Paths:
    """Where the configuration lives; one instance per command, from the environment."""

    state_dir: Path  # generations of rendered configs, the 'current' and 'last-good' links
    admin_socket: Path  # HAProxy runtime API (stats socket, level admin)
    master_socket: Path  # HAProxy master CLI, used for seamless reloads
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
    def from_env(cls) -> Paths:
        env = os.environ.get
        return cls(
            state_dir=Path(env("LBCTL_STATE_DIR") or str(DATA_DIR / "lbctl")),
            admin_socket=Path(env("LBCTL_ADMIN_SOCKET") or "/run/haproxy/admin.sock"),
            master_socket=Path(env("LBCTL_MASTER_SOCKET") or "/run/haproxy-master.sock"),
            os_release=Path(env("LBCTL_OS_RELEASE") or "/etc/os-release"),
        )


def read_os_release(path: Path) -> dict[str, str]:
    """os-release(5) as a dict (quotes removed); empty when the file cannot be read."""
    fields: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


def appliance_version(os_release: Path) -> str:
    """IMAGE_VERSION in os-release on the appliance; the package version on a build host."""
    fields = read_os_release(os_release)
    if fields.get("IMAGE_ID") == IMAGE_ID and fields.get("IMAGE_VERSION"):
        return fields["IMAGE_VERSION"]
    try:
        from importlib.metadata import version

        return version("lbappliance")
    except Exception:  # not installed as a distribution: a source checkout without the venv
        return "unknown"
