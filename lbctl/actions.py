"""What an operator does to a running appliance, once, for every front end.

`lbctl` (cli.py) and the web UI (webui/) both call these functions in-process, so a drain from the
web page and `lbctl server drain` are the same code, and an apply from an uploaded site file is
`lbctl apply`: the same input engine, the same checks, the same replication to the HA peer.
Every function raises ActionError (or the engine's InputInvalid) with a sentence fit for an
operator, and changes nothing it cannot finish.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from .appliance import Paths
from .config.apply import ApplyError, Outcome
from .site.model import Site


class ActionError(Exception):
    """The action was refused or failed; the message says why and what still runs."""


SERVER_ACTIONS: dict[str, tuple[str, bool, str]] = {
    # action: (HAProxy admin state, also cut existing sessions, what it means)
    "drain": ("drain", False, "no new clients; existing connections and persistent clients continue"),
    "halt": ("maint", True, "out of service now: new clients go elsewhere, its connections are closed"),
    "online": ("ready", False, "back in service"),
}


def server_action(paths: Paths, action: str, service: str, label: str) -> str:
    """Drain, halt or bring back one real server through HAProxy's runtime API (`set server
    ... state`, and `shutdown sessions server` for halt); the state is saved so that it survives
    reloads and reboots. Returns what was done, as one line."""
    from .config import haproxy
    from .config.apply import save_server_state
    from .status import read_services

    if action not in SERVER_ACTIONS:
        raise ActionError(f"{action}: not a server action ({', '.join(SERVER_ACTIONS)})")
    summary = read_services(paths) or {"services": []}
    services = {s["name"]: s for s in summary["services"]}
    if service not in services:
        raise ActionError(f"{service}: no such virtual service (configured: {', '.join(services) or 'none'})")
    labels = [s["label"] for s in services[service]["servers"]]
    if label not in labels:
        raise ActionError(f"{service}.{label}: no such real server (configured: {', '.join(labels)})")
    admin_state, cut, meaning = SERVER_ACTIONS[action]
    try:
        haproxy.set_server_state(paths.admin_socket, service, label, admin_state)
        if cut:
            haproxy.shutdown_sessions(paths.admin_socket, service, label)
    except haproxy.HAProxyAPIError as exc:
        raise ActionError(str(exc)) from None
    save_server_state(paths)  # so that a reboot before the next reload keeps it too
    return f"{service}/{label}: {action}: {meaning}"


def refuse_on_secondary(command: str) -> None:
    """On an HA pair the configuration is changed on the primary only, which replicates it."""
    from .cluster.state import paired

    if not paired():
        return
    from .cluster.model import load_cluster

    cluster = load_cluster()
    if not cluster.primary:
        raise ActionError(
            f"this appliance is the secondary of an HA pair: {command} on the primary ({cluster.peer.name}), "
            "which replicates its configuration here"
        )


def replicate_to_peer(paths: Paths) -> str | None:
    """After a change on the primary: the secondary applies the same site. Returns what it said
    (None when not paired); ActionError when it failed, this node's new configuration applied."""
    from .cluster.state import paired

    if not paired():
        return None
    from .cluster.model import load_cluster
    from .cluster.pairing import ClusterError, current_site_text, replicate, sync_heartbeat

    if not load_cluster().primary:
        return None
    sync_heartbeat(paths)
    text = current_site_text(paths)
    if text is None:
        return None
    try:
        return replicate(paths, text)
    except ClusterError as exc:
        raise ActionError(f"{exc}; this node's configuration stays applied ('lbctl cluster status')") from None


@dataclass
class Change:
    """A configuration change done: the outcome of the apply or rollback, and the replication."""

    outcome: Outcome
    replicated: str | None = None
    replication_error: str | None = None
    notes: list[str] = field(default_factory=list)


def site_context() -> dict[str, object]:
    """What the site's validation needs to know of this appliance (its own addresses, ...)."""
    from .boot.provision import site_context as provisioned

    return provisioned(None)


def parse_site(text: str | bytes) -> Site:
    """The site model of a site file (its text, or its bytes as uploaded: the engine refuses
    what is not UTF-8 at its line); InputInvalid with every problem and its line."""
    from .site.schema import SITE_KIND

    return SITE_KIND.parse_bytes(text.encode("utf-8") if isinstance(text, str) else text, site_context())


def apply_text(paths: Paths, text: str, removals: Collection[str] | None = ()) -> Change:
    """`lbctl apply`: validate, render, check, switch, reload, replicate. InputInvalid when the
    text is not a valid site; ActionError when it was refused (nothing changed)."""
    refuse_on_secondary("apply")
    return apply_parsed(paths, parse_site(text), text, removals)


def apply_parsed(paths: Paths, site: Site, text: str, removals: Collection[str] | None = ()) -> Change:
    """`apply_text` for a site already parsed from `text`."""
    from .config.apply import apply_site

    refuse_on_secondary("apply")
    try:
        outcome = apply_site(paths, site, text, allowed_removals=removals)
    except ApplyError as exc:
        raise ActionError(str(exc)) from None
    return _replicated(paths, outcome)


def rollback(paths: Paths) -> Change:
    """`lbctl rollback`: back to last-good, replicated to the peer."""
    from .config.apply import rollback as do_rollback

    refuse_on_secondary("rollback")
    try:
        outcome = do_rollback(paths)
    except ApplyError as exc:
        raise ActionError(str(exc)) from None
    return _replicated(paths, outcome)


def _replicated(paths: Paths, outcome: Outcome) -> Change:
    change = Change(outcome)
    try:
        change.replicated = replicate_to_peer(paths)
    except ActionError as exc:
        change.replication_error = str(exc)
    return change


def cluster_move(direction: str) -> str:
    """Move the floating IPs: 'takeover' (to this node) or 'standby' (to the peer), as heartbeat's
    hb_takeover / hb_standby do."""
    from .cluster import heartbeat

    moves: dict[str, Any] = {"takeover": heartbeat.takeover, "standby": heartbeat.standby}
    if direction not in moves:
        raise ActionError(f"{direction}: not an HA action (takeover, standby)")
    try:
        moves[direction]()
    except heartbeat.HeartbeatError as exc:
        raise ActionError(str(exc)) from None
    if direction == "takeover":
        return "asked heartbeat to take the floating IPs over to this node"
    return "asked heartbeat to hand the floating IPs to the peer"
