"""Two appliance VMs as an HA pair, for tests/image/test_pair.py and bench/ha: the lab, the client.

Set-up: two appliances (lb1, lb2) booted from the KVM artifact, each with eth0 on QEMU user
networking (the SSH of the tests), eth1 on bridge br0 and eth2 on bridge br1 in one network
namespace. The namespace itself is the gateway and ping node (10.210.0.1 on br0), the client, and
the two real servers (dcmtk storescp on ports 11112 and 11113, a process per association, so
that the prober's many short connections do not queue a client's store behind them). Heartbeat
runs over both bridges.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from builder import qemu
from builder.netns import Namespace
from tests.helpers import LOG_DIR, make_dicom_file, provisioned

GATEWAY = "10.210.0.1"  # the namespace on br0: gateway, ping node, client and both real servers
NODE_ADDRESS = {"lb1": "10.210.0.2", "lb2": "10.210.0.3"}
SECOND_PATH = {"lb1": "10.211.0.2", "lb2": "10.211.0.3"}
VIP, SNAT = "10.210.0.10", "10.210.0.11"
PORTS = {"Server1": 11112, "Server2": 11113}

# Heartbeat slower than the product's default (100 ms / 500 ms): two emulated (TCG) guests on
# two shared cores miss half-second deadlines when one of them reloads HAProxy; on a hypervisor
# they do not (bench/ha). The tests check behaviour, not speed.
SITE = f"""\
preset: pacs
snat_address: {SNAT}
interface: eth1
ha: {{keepalive_ms: 250, deadtime_ms: 2500}}
services:
  DICOM:
    vip: {VIP}
    check_interval_seconds: 2
    check_timeout_seconds: 1
    rise: 1
    fall: 2
    servers:
      - {{label: Server1, address: {GATEWAY}, port: {PORTS["Server1"]}}}
      - {{label: Server2, address: {GATEWAY}, port: {PORTS["Server2"]}}}
"""

# Connects to VIP:104 every 50 ms (0.2 s timeout) and logs "<monotonic> ok|fail" lines.
PROBER = """
import socket, sys, time
out = open(sys.argv[1], "a", buffering=1)
while True:
    s = socket.socket(); s.settimeout(0.2)
    try:
        s.connect((sys.argv[2], 104)); out.write(f"{time.monotonic():.3f} ok\\n")
    except OSError:
        out.write(f"{time.monotonic():.3f} fail\\n")
    finally:
        s.close()
    time.sleep(0.05)
"""


def network(name: str) -> str:
    return f"""\
hostname: {name}
interfaces:
  eth0: {{dhcp: true}}
  eth1: {{address: {NODE_ADDRESS[name]}/24, gateway: {GATEWAY}}}
  eth2: {{address: {SECOND_PATH[name]}/24}}
"""


@dataclass
class Pair:
    ns: Namespace
    workdir: Path
    vms: dict[str, qemu.VM] = field(default_factory=dict)
    specs: dict[str, qemu.VMSpec] = field(default_factory=dict)

    def sh(self, name: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.vms[name].ssh(command, check=check)

    def status(self, name: str) -> dict:
        return json.loads(self.sh(name, "lbctl cluster status --json", check=False).stdout or "{}")

    def holds_vip(self, name: str) -> bool:
        return f"inet {VIP}/32" in self.sh(name, "ip -4 -o addr show dev eth1").stdout

    def wait_holder(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.holds_vip(name):
            assert time.monotonic() < deadline, f"{name} did not take the floating IPs within {timeout:.0f} s"
            time.sleep(1)

    def power_off(self, victim: str, survivor: str, timeout: float = 120) -> float | None:
        """Kill `victim`'s QEMU (a power cut: no goodbye from heartbeat) while a client connects to
        the VIP every 50 ms; returns the seconds until the VIP answered again (None: never), once
        `survivor` holds the floating IPs."""
        log = self.workdir / f"probe-{time.monotonic_ns()}.log"
        prober = self.ns.popen([sys.executable, "-c", PROBER, str(log), VIP], start_new_session=True)
        try:
            time.sleep(2)
            killed = time.monotonic()
            self.vms[victim].stop()
            self.wait_holder(survivor, timeout=timeout)
            time.sleep(2)
        finally:
            prober.send_signal(signal.SIGTERM)
            prober.wait(10)
        samples = [line.split() for line in log.read_text().splitlines()]
        answered = [float(t) for t, ok in samples if ok == "ok" and float(t) > killed]
        return round(answered[0] - killed, 2) if answered else None

    def received(self, server: str) -> int:
        return len(list((self.workdir / server).iterdir()))

    def store(self, tmp: Path) -> str:
        """One C-STORE through the VIP; returns the real server that received it."""
        before = {s: self.received(s) for s in PORTS}
        make_dicom_file(tmp / "o.dcm")
        result = self.ns.run(["/usr/bin/storescu", "-aec", "ANY-SCP", VIP, "104", str(tmp / "o.dcm")], timeout=60)
        assert result.returncode == 0, result.stderr
        got = [s for s in PORTS if self.received(s) > before[s]]
        assert len(got) == 1, got
        return got[0]


@contextmanager
def booted_pair(kvm_disk: Path, workdir: Path, ssh_keypair: tuple[Path, str], site: str = SITE) -> Iterator[Pair]:
    """Both VMs booted to READY (lb1 provisioned with `site`, lb2 empty), not yet paired; every
    process stopped and the consoles kept in LOG_DIR afterwards."""
    scps: list[subprocess.Popen] = []
    with Namespace("lbpair") as ns:
        ns.add_bridge("br0", f"{GATEWAY}/24")
        ns.add_bridge("br1", "10.211.0.1/24")
        the_pair = Pair(ns, workdir)
        for server, port in PORTS.items():
            (workdir / server).mkdir(parents=True)
            log = (workdir / f"{server}.log").open("w")
            scps.append(
                ns.popen(
                    ["/usr/bin/storescp", "--fork", "-od", str(workdir / server), str(port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        for group, name in enumerate(("lb1", "lb2"), start=1):
            disk = workdir / f"{name}.qcow2"
            subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(kvm_disk), "-F", "qcow2", str(disk)], check=True
            )
            ns.add_tap(f"{name}-1", bridge="br0")
            ns.add_tap(f"{name}-2", bridge="br1")
            inputs = {"network": network(name)}
            if name == "lb1":
                inputs["site"] = site
            the_pair.specs[name] = qemu.VMSpec(
                disk=disk,
                disk_format="qcow2",
                snapshot=False,
                netns=ns.name,
                mac_group=group,
                nics=[
                    qemu.Nic(ssh=True),
                    qemu.Nic(backend=f"tap:{name}-1"),
                    qemu.Nic(backend=f"tap:{name}-2"),
                    qemu.Nic(),
                ],
                credentials=provisioned(ssh_keypair[1], **inputs),
            )
            vm = qemu.VM(the_pair.specs[name], workdir / name, ssh_key=ssh_keypair[0], name=name)
            the_pair.vms[name] = vm
            vm.start()
        try:
            for vm in the_pair.vms.values():
                vm.wait_ready(timeout=420)
            yield the_pair
        finally:
            for name, vm in the_pair.vms.items():
                vm.stop()
                LOG_DIR.mkdir(parents=True, exist_ok=True)
                if vm.console_log.exists():
                    shutil.copy(vm.console_log, LOG_DIR / f"pair-{name}-console.log")
            for scp in scps:
                scp.send_signal(signal.SIGTERM)
                scp.wait(10)
