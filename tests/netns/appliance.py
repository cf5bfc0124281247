"""The appliance under test: lbctl (the real CLI, in a subprocess) and HAProxy in the lab's
appliance namespace, with lbctl's paths moved into a private directory by its environment
variables, the way the appliance's own paths are set by default."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lbctl.config import haproxy as runtime
from tests.helpers import appliance_binary
from tests.netns.netlab import Lab, Proc, wait_until

TESTS = Path(__file__).resolve().parents[1]


# The HAProxy the suite runs (and lbctl checks with): LBCTL_TEST_HAPROXY_BIN if set, else the
# appliance's own (3.0) once an image build has filled the package cache, else the host's (2.6
# on Debian 12). `make test` builds the image first, so the suite runs what the appliance runs.
HAPROXY = os.environ.get("LBCTL_TEST_HAPROXY_BIN") or appliance_binary("haproxy") or "haproxy"
HAPROXY_VERSION = (
    subprocess.run([HAPROXY, "-v"], capture_output=True, text=True).stdout.split("version ")[-1].split()[0]
)


def _state_root() -> Path:
    # Traversable by HAProxy's user (it runs the generation's check-ping wrapper), as
    # /var/lib/lbappliance/lbctl is on the appliance.
    root = Path(tempfile.mkdtemp(prefix="lbt-", dir="/tmp"))
    root.chmod(0o755)
    return root


NFT = os.environ.get("LBCTL_TEST_NFT_BIN") or appliance_binary("nft") or "nft"


@dataclass
class Appliance:
    """`firewall=True`: lbctl runs inside the appliance namespace and loads its firewall there
    (LBCTL_FIREWALL=on), with its data directory (firewall.yaml, cluster.yaml) below root."""

    lab: Lab
    root: Path = field(default_factory=lambda: _state_root())
    haproxy: Proc | None = None
    sites_written: int = 0
    firewall: bool = False

    # A short root: the master and admin sockets must fit in sun_path (108 bytes).
    @property
    def admin_socket(self) -> Path:
        return self.root / "admin.sock"

    @property
    def master_socket(self) -> Path:
        return self.root / "master.sock"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def networkd_dir(self) -> Path:
        return self.root / "networkd"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LBCTL_HAPROXY": HAPROXY,
            "LBCTL_STATE_DIR": str(self.state_dir),
            "LBCTL_ADMIN_SOCKET": str(self.admin_socket),
            "LBCTL_MASTER_SOCKET": str(self.master_socket),
            "LB_NETWORKD_DIR": str(self.networkd_dir),
            "LBCTL_OS_RELEASE": "/nonexistent",
            "LB_DATA_DIR": str(self.data_dir),
            "LBCTL_NFT": NFT,
            "LBCTL_FIREWALL": "on" if self.firewall else "off",
        }

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def lbctl(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        inside = ["ip", "netns", "exec", self.lab.ns("lb")] if self.firewall else []
        result = subprocess.run(
            [*inside, sys.executable, "-m", "lbctl", *args],
            capture_output=True,
            text=True,
            env={**self.env(), **(env or {})},
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"lbctl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result

    def write_site(self, site: dict | str) -> Path:
        self.sites_written += 1
        path = self.root / f"site-{self.sites_written}.yaml"
        path.write_text(site if isinstance(site, str) else yaml.safe_dump(site, sort_keys=False))
        return path

    def apply(self, site: dict | str, check: bool = True, remove: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        flags = [arg for name in remove for arg in ("--remove", name)]
        result = self.lbctl("apply", *flags, str(self.write_site(site)), check=check)
        self.lab.sync_addresses(self.networkd_dir)  # what networkd does on the appliance
        return result

    def start(self) -> None:
        """Start HAProxy as the appliance's unit does (haproxy -Ws ... -S master socket)."""
        config = self.state_dir / "current" / "haproxy.cfg"
        self.haproxy = self.lab.spawn(
            "lb",
            f"haproxy-{self.root.name}",
            [HAPROXY, "-Ws", "-f", str(config), "-p", str(self.root / "haproxy.pid"), "-S", str(self.master_socket)],
        )
        wait_until(lambda: runtime.show_info(self.admin_socket), 10, "HAProxy's runtime API")

    def stop(self) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
            self.haproxy = None

    def close(self) -> None:
        self.stop()
        if self.firewall:
            # What the appliance's firewall left in the lab's namespace goes, and the lab routes again.
            self.lab.exec("lb", [NFT, "delete", "table", "inet", "lbappliance"], check=False)
            for family in ("-4", "-6"):
                self.lab.exec("lb", ["ip", family, "rule", "del", "fwmark", "0x1", "lookup", "100"], check=False)
                self.lab.exec("lb", ["ip", family, "route", "flush", "table", "100"], check=False)
            self.lab.exec("lb", ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        shutil.rmtree(self.root, ignore_errors=True)

    # --- observation ------------------------------------------------------------------------

    def status(self) -> dict:
        result = self.lbctl("status", "--json", check=False)
        assert result.returncode in (0, 1), result.stderr
        return json.loads(result.stdout)

    def server(self, service: str, label: str) -> dict:
        for svc in self.status()["services"]:
            if svc["name"] == service:
                for srv in svc["servers"]:
                    if srv["label"] == label:
                        return srv
        raise AssertionError(f"{service}/{label} not in lbctl status")

    def wait_server_state(self, service: str, label: str, state: str, timeout: float = 15) -> dict:
        return wait_until(
            lambda: (s := self.server(service, label))["state"] == state and s,
            timeout,
            f"{service}/{label} to be {state}",
        )

    def wait_check(self, service: str, label: str, state: str, check_status: str, timeout: float = 15) -> dict:
        """Until the server is in `state` and its last check result starts with `check_status`."""

        def reached() -> dict | None:
            server = self.server(service, label)
            ok = server["state"] == state and server["last_check"]["status"].startswith(check_status)
            return server if ok else None

        return wait_until(reached, timeout, f"{service}/{label} {state} after a {check_status} check")

    def table(self, service: str) -> dict[str, str]:
        """The persistence table of a service: client address -> server label."""
        return {e["key"]: e.get("server_key") or e["server_id"] for e in runtime.show_table(self.admin_socket, service)}
