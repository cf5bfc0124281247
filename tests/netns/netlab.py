"""A small network lab in Linux network namespaces: a client, the appliance and two real servers.

    client ns                 appliance ns ("lb")                       server ns s1, s2
    eth0 10.77.1.10-29  ----  eth0 10.77.1.2 (+VIPs, SNAT from lbctl)
                              eth1 10.77.2.1 (bridge)  ---------------  eth0 10.77.2.11 / .12
                                                                        default via 10.77.2.1

The VIPs and the SNAT address sit in the client subnet, as in the vendor guide (VIP .5/.8, SNAT
.4), and the real servers in their own subnet behind the appliance: a real server sees the SNAT
address as the source only if HAProxy really used it (the appliance's own address on the server
side is 10.77.2.1). The appliance namespace gets the appliance's sysctls (nonlocal bind,
unprivileged ping). Traffic never leaves these namespaces.

Names start with 'lbt-' plus a per-run tag, so parallel runs do not collide. Everything started
here is stopped, and every namespace deleted, by Lab.close() -- call it from a finally.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLIENT_NET = "10.77.1"
SERVER_NET = "10.77.2"
LB_CLIENT_SIDE = f"{CLIENT_NET}.2"
LB_SERVER_SIDE = f"{SERVER_NET}.1"
CLIENT_ADDRESSES = [f"{CLIENT_NET}.{n}" for n in range(10, 30)]
SERVER_ADDRESSES = {"s1": f"{SERVER_NET}.11", "s2": f"{SERVER_NET}.12"}
VIP_DICOM = f"{CLIENT_NET}.5"  # DICOM, DMWL, QRSCP and their secure variants (as the guide)
VIP_DATA = f"{CLIENT_NET}.8"  # SQL, LDAP, LDAP-Secure
SNAT = f"{CLIENT_NET}.4"

REQUIRED_COMMANDS = (
    "ip",
    "haproxy",
    "openssl",
    "slapd",
    "ldapsearch",
    "/usr/bin/storescp",
    "/usr/bin/storescu",
    "/usr/bin/findscu",
    "/usr/bin/echoscu",
    "/usr/bin/wlmscpfs",
    "ping",
)


def missing_prerequisites() -> list[str]:
    problems = [f"command not found: {c}" for c in REQUIRED_COMMANDS if shutil.which(c) is None]
    if os.geteuid() != 0:
        problems.insert(0, "must run as root (network namespaces)")
    return problems


def run(cmd: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
        )
    return result


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Lab:
    workdir: Path
    tag: str = field(default_factory=lambda: f"lbt-{secrets.token_hex(3)}")
    namespaces: list[str] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.tag}-{role}"

    # --- building ---------------------------------------------------------------------------

    def build(self) -> Lab:
        for role in ("cl", "lb", "s1", "s2"):
            run(["ip", "netns", "add", self.ns(role)])
            self.namespaces.append(self.ns(role))
            self.ip(role, "link", "set", "lo", "up")
        cl, lb = self.ns("cl"), self.ns("lb")
        # client <-> appliance eth0
        run(["ip", "link", "add", "eth0", "netns", cl, "type", "veth", "peer", "name", "eth0", "netns", lb])
        # appliance eth1: a bridge with one veth per real server
        self.ip("lb", "link", "add", "eth1", "type", "bridge")
        for server in ("s1", "s2"):
            run(
                [
                    "ip",
                    "link",
                    "add",
                    f"to-{server}",
                    "netns",
                    lb,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    self.ns(server),
                ]
            )
            self.ip("lb", "link", "set", f"to-{server}", "master", "eth1", "up")
            self.ip(server, "addr", "add", f"{SERVER_ADDRESSES[server]}/24", "dev", "eth0")
            self.ip(server, "link", "set", "eth0", "up")
            self.ip(server, "route", "add", "default", "via", LB_SERVER_SIDE)
        for address in CLIENT_ADDRESSES:
            self.ip("cl", "addr", "add", f"{address}/24", "dev", "eth0")
        self.ip("cl", "link", "set", "eth0", "up")
        self.ip("lb", "addr", "add", f"{LB_CLIENT_SIDE}/24", "dev", "eth0")
        self.ip("lb", "addr", "add", f"{LB_SERVER_SIDE}/24", "dev", "eth1")
        self.ip("lb", "link", "set", "eth0", "up")
        self.ip("lb", "link", "set", "eth1", "up")
        # The appliance's sysctls (overlay/usr/lib/sysctl.d/60-lbappliance.conf) that matter here.
        for setting in ("net.ipv4.ip_nonlocal_bind=1", "net.ipv4.ping_group_range=0 2147483647"):
            self.exec("lb", ["sysctl", "-q", "-w", setting])
        # The client may also reach the servers directly through the appliance's kernel (not
        # HAProxy): the bench's 'direct' path.
        self.exec("lb", ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        self.ip("cl", "route", "add", f"{SERVER_NET}.0/24", "via", LB_CLIENT_SIDE)
        # Addresses in the client subnet (the SNAT address) are reached through the appliance.
        return self

    def ip(self, role: str, *args: str) -> subprocess.CompletedProcess:
        return run(["ip", "-n", self.ns(role), *args])

    def exec(self, role: str, cmd: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return run(["ip", "netns", "exec", self.ns(role), *cmd], check=check, **kwargs)

    def spawn(self, role: str, name: str, cmd: list[str], env: dict | None = None, user: str | None = None) -> Proc:
        """Start a long-running process in a namespace, output to <workdir>/logs/<name>.log."""
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        prefix = ["ip", "netns", "exec", self.ns(role)]
        if user:
            prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                prefix + cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def wait_port(self, role: str, address: str, port: int, timeout: float = 10) -> None:
        """Until something listens on address:port in that namespace."""

        def listening() -> bool:
            # The local address column only: every listener's peer column reads '0.0.0.0:*', so
            # matching whole lines took another listener on the port (HAProxy's local peer on
            # 127.0.0.1) for this one.
            out = self.exec(role, ["ss", "-Htln", f"sport = :{port}"], check=False).stdout
            local = [fields[3] for fields in (line.split() for line in out.splitlines()) if len(fields) >= 4]
            hosts = [a.rsplit(":", 1)[0] for a in local]  # 'address' is a host, or host:port
            return address in local or address in hosts or any(h in ("*", "0.0.0.0", "[::]") for h in hosts)

        wait_until(listening, timeout, f"a listener on {address}:{port} in {role}")

    # --- the appliance's addresses ----------------------------------------------------------

    def sync_addresses(self, networkd_dir: Path) -> None:
        """Do what systemd-networkd does with lbctl's drop-ins: put their Address= lines (and no
        others of ours) on the appliance namespace's interfaces."""
        wanted: dict[str, set[str]] = {}
        for dropin in networkd_dir.glob("10-lb-*.network.d/50-lbctl-vips.conf"):
            interface = dropin.parent.name.removeprefix("10-lb-").removesuffix(".network.d")
            wanted[interface] = {
                line.split("=", 1)[1].strip() for line in dropin.read_text().splitlines() if line.startswith("Address=")
            }
        for interface in ("eth0", "eth1"):
            present = {
                line.split()[3]
                for line in self.ip("lb", "-o", "-4", "addr", "show", "dev", interface).stdout.splitlines()
                if line.split()[3].endswith("/32")
            }
            for address in wanted.get(interface, set()) - present:
                self.ip("lb", "addr", "add", address, "dev", interface)
            for address in present - wanted.get(interface, set()):
                self.ip("lb", "addr", "del", address, "dev", interface)

    # --- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        for proc in reversed(self.procs):
            try:
                proc.stop(timeout=3)
            except Exception:
                pass
        for namespace in self.namespaces:
            # Anything still running in the namespace (children of what we started) goes too.
            pids = run(["ip", "netns", "pids", namespace], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run(["ip", "netns", "del", namespace], check=False)
        self.namespaces.clear()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """The first true value `predicate` returns within `timeout` seconds; AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # a predicate that cannot tell yet, e.g. a socket not there
            last_error = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:g} s waiting for {what}" + (f" (last error: {last_error})" if last_error else "")
    )
