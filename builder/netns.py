"""Network namespaces for VMs on TAP devices: an isolated L2 segment shared by a guest NIC and
processes on the host side (real servers, clients), so that tests send traffic only to addresses
inside namespaces they made."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Sequence


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


class Namespace:
    """`with Namespace() as ns:` makes a namespace with loopback up, deletes it on exit."""

    def __init__(self, prefix: str = "lbvm"):
        self.name = f"{prefix}-{secrets.token_hex(3)}"

    def __enter__(self) -> Namespace:
        ip("netns", "add", self.name)
        ip("-n", self.name, "link", "set", "lo", "up")
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def add_tap(self, ifname: str, address: str | None = None, bridge: str | None = None) -> str:
        """A TAP device for a QEMU NIC (QEMU must run in this namespace), optionally with the
        host-side address of the segment, e.g. '10.201.0.1/24', or as a port of `bridge`."""
        ip("-n", self.name, "tuntap", "add", "dev", ifname, "mode", "tap")
        if address:
            ip("-n", self.name, "addr", "add", address, "dev", ifname)
        if bridge:
            ip("-n", self.name, "link", "set", ifname, "master", bridge)
        ip("-n", self.name, "link", "set", ifname, "up")
        return ifname

    def add_bridge(self, ifname: str, *addresses: str) -> str:
        """A bridge (one L2 segment for several VMs) with the namespace's own addresses on it."""
        ip("-n", self.name, "link", "add", ifname, "type", "bridge")
        for address in addresses:
            ip("-n", self.name, "addr", "add", address, "dev", ifname)
        ip("-n", self.name, "link", "set", ifname, "up")
        return ifname

    def argv(self, command: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, command: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.argv(command), **kwargs)

    def popen(self, command: Sequence[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.argv(command), **kwargs)
