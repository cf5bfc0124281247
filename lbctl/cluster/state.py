"""Whether this appliance is paired, and with whom: DATA_DIR/cluster/cluster.yaml, written by
pairing. Other parts (the firewall's peer rules, the renderer's peers section) ask here."""

from __future__ import annotations

from ..appliance import DATA_DIR
from ..inputs.addresses import IPAddress

CLUSTER_DIR = DATA_DIR / "cluster"
STATE_FILE = CLUSTER_DIR / "cluster.yaml"


def peer_addresses() -> tuple[IPAddress, ...]:
    """The peer node's own addresses; none while the appliance is not paired."""
    if not STATE_FILE.exists():
        return ()
    from .model import load_cluster

    return load_cluster().peer.addresses
