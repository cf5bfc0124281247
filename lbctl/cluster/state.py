"""Where the HA pair keeps its state on each node (the data partition, never replicated), and
whether this appliance is paired. Other parts (the firewall's peer rules, the renderer's peers
section, apply's replication) ask here.

    DATA_DIR/cluster/cluster.yaml         this node's part of the pair (model.py)
    DATA_DIR/cluster/ha.d/                ha.cf, haresources, authkeys (/etc/ha.d links here)
    DATA_DIR/cluster/id_ed25519           this node's cluster key (SSH, to the peer's lbctl only)
    DATA_DIR/cluster/known_hosts          the peer's SSH host key, pinned at pairing
    DATA_DIR/cluster/authorized_keys      the peer's cluster key, restricted to 'lbctl cluster receive'
    DATA_DIR/cluster/pairing.json         a pairing token waiting for the primary (secondary only)
    DATA_DIR/cluster/replication.json     the last replication to the peer and how it ended
    DATA_DIR/cluster/hold                 restored from a backup: heartbeat stays stopped until join
"""

from __future__ import annotations

from ..appliance import DATA_DIR, RUN_DIR
from ..inputs.addresses import IPAddress

CLUSTER_DIR = DATA_DIR / "cluster"
STATE_FILE = CLUSTER_DIR / "cluster.yaml"
HA_DIR = CLUSTER_DIR / "ha.d"
CLUSTER_KEY = CLUSTER_DIR / "id_ed25519"
KNOWN_HOSTS = CLUSTER_DIR / "known_hosts"
AUTHORIZED_KEYS = CLUSTER_DIR / "authorized_keys"
PAIRING_FILE = CLUSTER_DIR / "pairing.json"
REPLICATION_FILE = CLUSTER_DIR / "replication.json"
HOLD_FILE = CLUSTER_DIR / "hold"
# While this exists, the resource script's 'stop' keeps the floating IPs (pairing and unpairing
# hand them between networkd and heartbeat without a gap).
KEEP_FLOATING_FILE = RUN_DIR / "lbfloat-keep"


def paired() -> bool:
    return STATE_FILE.exists()


def peer_addresses() -> tuple[IPAddress, ...]:
    """The peer node's own addresses; none while the appliance is not paired."""
    if not paired():
        return ()
    from .model import load_cluster

    return load_cluster().peer.addresses
