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
from ..inputs import Cursor, Field, InputInvalid, InputKind, ListOf, Scope, Table
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
            Text(r"ssh-ed25519 [A-Za-z0-9+/=]+", "an OpenSSH Ed25519 public host key", 200),
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


def _check_pair(scope: Scope, at: Cursor) -> None:
    """The two nodes are two, and the paths lead to the peer: a cluster.yaml that says otherwise
    (restored from another node's backup, edited by hand) would give HAProxy a peers section it
    refuses, or heartbeat a path to nowhere."""
    from .link import LinkError, checked_public_key

    node, peer, paths = scope.get("node"), scope.get("peer"), scope.get("paths")
    if node is None or peer is None:
        return
    if node.name == peer.name:
        at.problem(f"is {peer.name!r}, the name of this node too: the two nodes need their own names", "peer")
    shared = sorted(str(a) for a in set(node.addresses) & set(peer.addresses))
    if shared:
        at.problem(f"{', '.join(shared)} is an address of both nodes", "peer")
    try:
        checked_public_key(peer.host_key)
    except LinkError as exc:
        at.problem(f"host_key: {exc}", "peer")
    for path in paths or ():
        if path.peer not in peer.addresses:
            at.problem(f"{path.interface} -> {path.peer}: not one of the peer's addresses", "paths")
    interfaces = [p.interface for p in paths or ()]
    for twice in sorted({i for i in interfaces if interfaces.count(i) > 1}):
        at.problem(f"{twice} has more than one path (one ucast line per interface)", "paths")


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
    checks=(_check_pair,),
    build=lambda s: ClusterConfig(**s.values),
    what="role, node, peer, paths, heartbeat_key",
)
CLUSTER_KIND: InputKind[ClusterConfig] = InputKind("cluster", "cluster.yaml", CLUSTER)


def load_cluster() -> ClusterConfig:
    """This node's cluster.yaml. A damaged one raises ClusterStateError naming the file and every
    problem (the commands print it as one error, and 'lbctl cluster unpair' still works)."""
    from .state import STATE_FILE

    try:
        return CLUSTER_KIND.read(str(STATE_FILE))
    except InputInvalid as exc:
        raise ClusterStateError(f"{STATE_FILE} is damaged: " + "; ".join(exc.lines())) from None


class ClusterStateError(Exception):
    """This node's cluster.yaml cannot be read."""
