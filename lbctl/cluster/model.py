"""cluster.yaml: this node's part of an HA pair, written by pairing (`lbctl cluster pair`) on both
nodes and read by the engine like every other input. Local to the node, never replicated.

    role: primary                  # the node the configuration is applied on (secondary: replica)
    node: {name: lb1, addresses: [192.168.85.2]}
    peer: {name: lb2, addresses: [192.168.85.3], host_key: "ssh-ed25519 AAAA..."}
    paths:                         # heartbeat paths: one per interface both nodes share a subnet on
      - {interface: eth0, peer: 192.168.85.3}
    ping_node: 192.168.85.254      # the gateway: a node that loses it gives up the floating IPs
    heartbeat_key: 3f9c...         # heartbeat's shared HMAC key (authkeys), the same on both nodes
"""

from __future__ import annotations

from dataclasses import dataclass

from ..appliance import INTERFACES
from ..inputs import Field, InputKind, ListOf, Table
from ..inputs.addresses import IPAddress
from ..inputs.types import SHORT_HOST_NAME, Address, Choice, Text


@dataclass(frozen=True)
class Node:
    name: str
    addresses: tuple[IPAddress, ...]
    host_key: str = ""


@dataclass(frozen=True)
class HeartbeatPath:
    interface: str
    peer: IPAddress


@dataclass(frozen=True)
class ClusterConfig:
    role: str
    node: Node
    peer: Node
    paths: tuple[HeartbeatPath, ...]
    heartbeat_key: str
    ping_node: IPAddress | None = None

    @property
    def primary(self) -> bool:
        return self.role == "primary"


NODE_FIELDS = (
    Field("name", SHORT_HOST_NAME, "The node's host name (heartbeat's node name, `uname -n`).", required=True),
    Field(
        "addresses",
        ListOf(Address(use="a node address"), empty="a node has an address", unique=True),
        "The node's own addresses (never a floating IP).",
        required=True,
    ),
)
NODE = Table(NODE_FIELDS, build=lambda s: Node(**s.values), what="name, addresses")
PEER = Table(
    (
        *NODE_FIELDS,
        Field(
            "host_key",
            Text(r"(ssh-ed25519|ecdsa-sha2-nistp256) [A-Za-z0-9+/=]+", "an OpenSSH public host key", 2000),
            "The peer's SSH host key, pinned at pairing.",
            required=True,
        ),
    ),
    build=lambda s: Node(**s.values),
    what="name, addresses, host_key",
)
PATH = Table(
    (
        Field(
            "interface", Choice(INTERFACES, "an interface of the appliance"), "Interface of the path.", required=True
        ),
        Field("peer", Address(use="a heartbeat peer"), "The peer's address on it.", required=True),
    ),
    build=lambda s: HeartbeatPath(**s.values),
    what="interface, peer",
)
CLUSTER = Table(
    (
        Field("role", Choice(("primary", "secondary"), "a role"), "This node's role.", required=True),
        Field("node", NODE, "This node.", required=True),
        Field("peer", PEER, "The other node.", required=True),
        Field("paths", ListOf(PATH, empty="a pair needs a heartbeat path"), "Heartbeat paths.", required=True),
        Field(
            "heartbeat_key",
            Text(r"[0-9a-f]{64}", "64 hexadecimal digits", 64),
            "heartbeat's shared key (authkeys, sha1 HMAC), made at pairing.",
            required=True,
        ),
        Field("ping_node", Address(use="a ping node"), "A node both should reach (the gateway)."),
    ),
    title="cluster.yaml",
    build=lambda s: ClusterConfig(**s.values),
    what="role, node, peer, paths, heartbeat_key",
)
CLUSTER_KIND: InputKind[ClusterConfig] = InputKind("cluster", "cluster.yaml", CLUSTER)


def load_cluster() -> ClusterConfig:
    from .state import STATE_FILE

    return CLUSTER_KIND.read(str(STATE_FILE))
