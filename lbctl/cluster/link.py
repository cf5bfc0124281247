"""The SSH link between the two nodes: keys, the pinned host key, and one request per connection.

Each node has a cluster key of its own (DATA_DIR/cluster/id_ed25519). The peer admits it in
DATA_DIR/cluster/authorized_keys with a forced command (`lbctl cluster receive`) and `restrict`:
the key runs that one command and nothing else, never a shell, no forwarding (sshd(8),
AUTHORIZED_KEYS FILE FORMAT). The peer's host key is pinned at pairing (known_hosts), and every
connection checks it (StrictHostKeyChecking=yes).

A request is one JSON object on the command's stdin; the answer is one JSON object on stdout.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..appliance import SSH_PORT
from ..fileio import write_atomic
from .state import AUTHORIZED_KEYS, CLUSTER_KEY, KNOWN_HOSTS

CONNECT_TIMEOUT_SECONDS = 5
REQUEST_TIMEOUT_SECONDS = 120  # a replicated apply includes a HAProxy reload on the peer
HOST_KEY_FILES = (Path(os.environ.get("LB_SSH_DIR", "/var/lib/lbappliance/ssh")) / "ssh_host_ed25519_key.pub",)
LBCTL = os.environ.get("LBCTL_REMOTE_COMMAND", "/usr/bin/lbctl")


class LinkError(Exception):
    """The peer could not be reached, refused us, or answered nonsense."""


ED25519_PREFIX = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20"  # RFC 8709 section 4: string, string(32)


def checked_public_key(text: object) -> str:
    """`text` if it is exactly one OpenSSH Ed25519 public key, "ssh-ed25519 <base64>" (RFC 8709),
    with nothing else: no options, no comment, no second line. Every key that reaches
    authorized_keys or known_hosts comes through here (a newline there would add a line without
    the forced command). Raises LinkError."""
    if not isinstance(text, str):
        raise LinkError("the key is not text")
    words = text.split(" ")
    if len(words) != 2 or words[0] != "ssh-ed25519" or not words[1].isascii():
        raise LinkError("the key is not one 'ssh-ed25519 <base64>' public key")
    try:
        blob = base64.b64decode(words[1], validate=True)
    except ValueError:
        raise LinkError("the key is not one 'ssh-ed25519 <base64>' public key") from None
    if len(blob) != len(ED25519_PREFIX) + 32 or not blob.startswith(ED25519_PREFIX):
        raise LinkError("the key is not one 'ssh-ed25519 <base64>' public key")
    return text


def fingerprint(public_key: str) -> bytes:
    """SHA-256 of an OpenSSH public key's blob (what `ssh-keygen -l` shows, unencoded)."""
    blob = base64.b64decode(public_key.split()[1])
    return hashlib.sha256(blob).digest()


def fingerprint_text(public_key: str) -> str:
    return "SHA256:" + base64.b64encode(fingerprint(public_key)).decode().rstrip("=")


def own_host_key() -> str:
    """This node's ed25519 SSH host key ("ssh-ed25519 AAAA...")."""
    for path in HOST_KEY_FILES:
        if path.exists():
            return " ".join(path.read_text().split()[:2])
    raise LinkError(f"this appliance has no SSH host key yet ({HOST_KEY_FILES[0]})")


def make_cluster_key() -> str:
    """This node's cluster key pair (made once); returns the public key line."""
    if not CLUSTER_KEY.exists():
        CLUSTER_KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lbappliance-cluster", "-f", str(CLUSTER_KEY)],
            check=True,
            capture_output=True,
        )
    return " ".join(CLUSTER_KEY.with_suffix(".pub").read_text().split()[:2])


def scan_host_key(address: str) -> str:
    """The peer's ed25519 host key as it presents it now (ssh-keyscan); LinkError if unreachable."""
    try:
        result = subprocess.run(
            ["ssh-keyscan", "-T", str(CONNECT_TIMEOUT_SECONDS), "-p", str(SSH_PORT), "-t", "ed25519", address],
            capture_output=True,
            text=True,
            timeout=CONNECT_TIMEOUT_SECONDS + 10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LinkError(f"cannot reach {address} on SSH: {exc}") from None
    for line in result.stdout.splitlines():
        words = line.split()
        if len(words) >= 3 and words[1] == "ssh-ed25519":
            return f"{words[1]} {words[2]}"
    raise LinkError(f"cannot reach {address} on SSH port {SSH_PORT} (no answer within {CONNECT_TIMEOUT_SECONDS} s)")


def known_hosts_line(address: str, host_key: str) -> str:
    return f"{address} {host_key}\n"


def pin(addresses: tuple[str, ...], host_key: str, path: Path | None = None) -> None:
    host_key = checked_public_key(host_key)
    write_atomic(path or KNOWN_HOSTS, "".join(known_hosts_line(a, host_key) for a in addresses), 0o600)


def authorize(public_key: str, command: str, path: Path | None = None, expiry: str | None = None) -> None:
    """Admit `public_key` to run `command` only (restrict: no shell, pty or forwarding).
    Raises LinkError if the key is not exactly one Ed25519 public key."""
    public_key = checked_public_key(public_key)
    options = f'restrict,command="{LBCTL} cluster {command}"'
    if expiry:
        options += f',expiry-time="{expiry}"'
    write_atomic(path or AUTHORIZED_KEYS, f"{options} {public_key} lbappliance-cluster\n", 0o600)


@dataclass(frozen=True)
class Peer:
    """How to reach the peer: its address, the key to use and the pinned host key file."""

    address: str
    key: Path = CLUSTER_KEY
    known_hosts: Path = KNOWN_HOSTS

    def argv(self) -> list[str]:
        return [
            "ssh",
            "-T",
            "-p",
            str(SSH_PORT),
            "-i",
            str(self.key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"ConnectTimeout={CONNECT_TIMEOUT_SECONDS}",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "LogLevel=ERROR",
            f"root@{self.address}",
            "lbctl-cluster",  # ignored: the key's forced command runs
        ]

    def request(self, payload: dict[str, Any], timeout: float = REQUEST_TIMEOUT_SECONDS) -> dict[str, Any]:
        """Send one request; the peer's JSON answer. LinkError when SSH or the answer fails."""
        try:
            result = subprocess.run(
                self.argv(), input=json.dumps(payload), capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise LinkError(f"{self.address} did not answer within {timeout:.0f} s") from None
        except OSError as exc:
            raise LinkError(f"cannot run ssh: {exc}") from None
        if result.returncode == 255:
            raise LinkError(f"cannot reach {self.address} over SSH: {_ssh_reason(result.stderr)}")
        try:
            answer = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise LinkError(f"{self.address} gave no answer ({detail[-1] if detail else f'exit {result.returncode}'})")
        return answer


def _ssh_reason(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    text = lines[-1] if lines else "ssh failed"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "Host key verification failed" in stderr:
        return "its SSH host key is not the one pinned at pairing (Host key verification failed)"
    if "Permission denied" in text:
        return "it refused this node's key (Permission denied): is it still paired with this node?"
    return text


def temporary_key(private_openssh: bytes) -> Path:
    """A private key written to a private temporary file (the caller removes it)."""
    handle, name = tempfile.mkstemp(prefix="lbctl-pairing-")
    with os.fdopen(handle, "wb") as f:
        f.write(private_openssh)
    return Path(name)
