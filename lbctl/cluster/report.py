"""What `lbctl cluster status` and `lbctl status` say about the HA pair (lbctl.status.ClusterStatus).

Heartbeat's own view (cl_status: who holds the floating IPs, is the peer alive), the age of the
peer's last heartbeat packet (the firewall's heartbeat_seen set), this node's applied site
against the peer's (asked over the cluster link), and the last replication.
"""

from __future__ import annotations

from ..appliance import Paths
from ..status import ClusterStatus
from . import heartbeat, link
from .model import load_cluster
from .pairing import current_site_text, hostname, last_replication, peer_link, site_digest
from .state import HOLD_FILE


def collect_cluster(paths: Paths, ask_peer: bool) -> ClusterStatus:
    from ..firewall.ruleset import heartbeat_age

    cluster = load_cluster()
    hb = heartbeat.state(cluster.peer.name)
    from ..config import generations
    from .floating import holds

    state = "held" if HOLD_FILE.exists() else hb.role_state(holds(generations.target_of(paths.current)))
    problems: list[str] = []
    if state == "held":
        problems.append("restored from a backup: heartbeat stays stopped until 'lbctl cluster join'")
    elif state == "stopped" and heartbeat.managed():
        problems.append("heartbeat is not running (systemctl status heartbeat)")
    ages = [a for a in (heartbeat_age(p) for p in cluster.peer.addresses) if a is not None]
    ours = site_digest(current_site_text(paths))
    theirs: str | None = None
    same: bool | None = None
    if ask_peer:
        try:
            answer = peer_link(cluster).request({"op": "status"}, timeout=15)
            if answer.get("ok"):
                theirs = answer.get("site_digest")
                same = theirs == ours
                if not same:
                    problems.append(
                        f"{cluster.peer.name} runs another site than this node ('lbctl apply' on the primary "
                        "replicates it again)"
                    )
        except link.LinkError as exc:
            problems.append(f"cannot ask {cluster.peer.name}: {exc}")
    replication = last_replication()
    if replication and not replication.get("ok"):
        problems.append(f"the last replication failed: {replication.get('message')}")
    return ClusterStatus(
        node=hostname(),
        role=cluster.role,
        state=state,
        peer=cluster.peer.name,
        peer_addresses=tuple(str(a) for a in cluster.peer.addresses),
        peer_state=hb.peer,
        last_heartbeat_seconds=min(ages) if ages else None,
        heartbeat_paths=tuple(f"{p.interface} -> {p.peer}" for p in cluster.paths),
        site_digest=ours,
        peer_site_digest=theirs,
        same_configuration=same,
        last_replication=replication,
        problems=tuple(problems),
    )
