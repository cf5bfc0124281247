"""Pairing two appliances into an HA pair, replicating the configuration, and unpairing.

    secondary$ lbctl cluster token                      a one-time token, valid 10 minutes
    primary$   lbctl cluster pair --peer 10.0.0.3 --token XXXX-XXXX-...

The token carries a 120-bit secret and the first 40 bits of the secondary's SSH host-key
fingerprint. From the secret both sides derive the same Ed25519 key (HKDF-SHA256, RFC 5869): the
secondary admits it for 10 minutes with one forced command (`lbctl cluster accept-pairing`); the
primary checks the host key the peer presents against the token before it sends anything, pins
it, and connects with the derived key. The secondary checks everything (token still valid, not
paired, no services of its own, the primary's site valid here, a shared subnet for heartbeat)
before it changes anything, then commits and answers; only then does the primary commit. A
failure on either side leaves both as they were.

After pairing each node admits the other's cluster key, restricted to `lbctl cluster receive`,
over which the primary replicates every apply (requests are JSON objects, see receive()).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..appliance import Paths, appliance_version
from ..fileio import write_atomic
from ..inputs import InputInvalid
from ..inputs.addresses import IPAddress, IPInterface
from . import floating, heartbeat, link
from .model import CLUSTER_KIND, ClusterConfig, ClusterStateError, HeartbeatPath, Node, load_cluster
from .state import (
    AUTHORIZED_KEYS,
    CLUSTER_DIR,
    CLUSTER_KEY,
    HOLD_FILE,
    KEEP_FLOATING_FILE,
    KNOWN_HOSTS,
    PAIRING_FILE,
    REPLICATION_FILE,
    STATE_FILE,
    paired,
)

TOKEN_SECONDS = 600
SECRET_BYTES = 15
FINGERPRINT_BYTES = 5
KEY_INFO = b"lbappliance pairing key v1"


class ClusterError(Exception):
    """A cluster command cannot be done; the message says why, and what stayed as it was."""


# --- the token --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    secret: bytes
    host_key_fingerprint: bytes  # the first FINGERPRINT_BYTES of the peer's SHA-256 host-key fingerprint

    def text(self) -> str:
        raw = base64.b32encode(self.secret + self.host_key_fingerprint).decode()
        return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))

    @classmethod
    def parse(cls, text: str) -> Token:
        cleaned = "".join(text.split()).replace("-", "").upper()
        try:
            raw = base64.b32decode(cleaned)
        except (ValueError, base64.binascii.Error):  # type: ignore[attr-defined]
            raw = b""
        if len(raw) != SECRET_BYTES + FINGERPRINT_BYTES:
            raise ClusterError(
                "the token is not one 'lbctl cluster token' prints (8 groups of 4 letters and digits); "
                "nothing was changed"
            )
        return cls(raw[:SECRET_BYTES], raw[SECRET_BYTES:])

    def private_key(self) -> Any:
        """The Ed25519 key both sides derive from the secret (cryptography's HKDF, RFC 5869)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_INFO).derive(self.secret)
        return Ed25519PrivateKey.from_private_bytes(seed)

    def public_key(self) -> str:
        return _openssh_public(self.private_key())


def _openssh_public(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _openssh_private(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    data: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    return data


def _new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


# --- what a node knows about itself -----------------------------------------------------------


def hostname() -> str:
    return Path("/proc/sys/kernel/hostname").read_text().strip()


def interface_addresses(paths: Paths) -> dict[str, list[str]]:
    """This node's own static addresses per interface (address/prefix): floating IPs, link-local
    and DHCP addresses (which may change under heartbeat) left out."""
    from ..config import generations

    floating_here = {a for addrs in floating.listed(generations.target_of(paths.current)).values() for a in addrs}
    result: dict[str, list[str]] = {}
    for interface, addresses in floating.present(static_only=True).items():
        if interface == "lo":
            continue
        for text in sorted(addresses):
            address = ipaddress.ip_interface(text)
            if text in floating_here or address.is_link_local or address.ip.is_loopback:
                continue
            result.setdefault(interface, []).append(text)
    return result


def heartbeat_paths(own: dict[str, list[str]], peer: dict[str, list[str]]) -> list[HeartbeatPath]:
    """One path per interface of ours that shares a subnet with an address of the peer."""
    peer_ips = [ipaddress.ip_interface(a).ip for addresses in peer.values() for a in addresses]
    own_ips = {ipaddress.ip_interface(a).ip for addresses in own.values() for a in addresses}
    found: list[HeartbeatPath] = []
    for interface in sorted(own):
        for text in own[interface]:
            network = ipaddress.ip_interface(text).network
            match = next((ip for ip in peer_ips if ip in network and ip not in own_ips), None)
            if match is not None and all(p.interface != interface for p in found):
                found.append(HeartbeatPath(interface, match))
    return found


def gateway(interface: str | None = None) -> IPAddress | None:
    """The ping node: the default gateway on `interface` (the first heartbeat path's, where the
    VIPs live), else any default gateway. A node that loses it gives the floating IPs up."""
    try:
        out = subprocess.run(["ip", "-j", "route", "show", "default"], capture_output=True, text=True, timeout=5)
        routes = [r for r in json.loads(out.stdout or "[]") if r.get("gateway")]
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    preferred = [r for r in routes if r.get("dev") == interface] or routes
    return ipaddress.ip_address(preferred[0]["gateway"]) if preferred else None


def own_address_towards(paths: list[HeartbeatPath], own: dict[str, list[str]]) -> list[IPAddress]:
    """This node's address on each heartbeat path, the first path's first (the peers address)."""
    result: list[IPAddress] = []
    for path in paths:
        for text in own.get(path.interface, []):
            address: IPInterface = ipaddress.ip_interface(text)
            if path.peer in address.network and address.ip not in result:
                result.append(address.ip)
                break
    return result


def running_services(paths: Paths) -> list[str]:
    from ..config.apply import running_services as services

    return services(paths)


def current_site_text(paths: Paths) -> str | None:
    from ..config import generations

    current = generations.target_of(paths.current)
    kept = current / "site.yaml" if current else None
    return kept.read_text() if kept and kept.exists() else None


def site_digest(text: str | None) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest()[:16] if text is not None else None


# --- files of the pair ------------------------------------------------------------------------


def cluster_yaml(cluster: ClusterConfig) -> str:
    data: dict[str, Any] = {
        "role": cluster.role,
        "node": {"name": cluster.node.name, "addresses": [str(a) for a in cluster.node.addresses]},
        "peer": {
            "name": cluster.peer.name,
            "addresses": [str(a) for a in cluster.peer.addresses],
            "host_key": cluster.peer.host_key,
        },
        "paths": [{"interface": p.interface, "peer": str(p.peer)} for p in cluster.paths],
        "heartbeat_key": cluster.heartbeat_key,
    }
    if cluster.ping_node is not None:
        data["ping_node"] = str(cluster.ping_node)
    header = "# This node's part of the HA pair, written by 'lbctl cluster pair'. Local: never replicated.\n"
    return header + yaml.safe_dump(data, sort_keys=False)


def write_cluster(cluster: ClusterConfig, peer_cluster_key: str, private_key: bytes) -> None:
    """Every file of a paired node, checked by the engine first (cluster.yaml must read back)."""
    text = cluster_yaml(cluster)
    CLUSTER_KIND.parse_text(text)
    CLUSTER_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(CLUSTER_KEY, private_key.decode(), 0o600)
    write_atomic(CLUSTER_KEY.with_suffix(".pub"), _public_of(private_key) + "\n", 0o644)
    link.pin(tuple(str(a) for a in cluster.peer.addresses), cluster.peer.host_key)
    link.authorize(peer_cluster_key, "receive")
    write_atomic(STATE_FILE, text, 0o600)


def _public_of(private_key: bytes) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_ssh_private_key(private_key, password=None)
    return _openssh_public(key)


def clear_cluster() -> None:
    """Remove every file of the pair (this node is a single appliance again)."""
    heartbeat.remove()
    for path in (STATE_FILE, AUTHORIZED_KEYS, KNOWN_HOSTS, CLUSTER_KEY, CLUSTER_KEY.with_suffix(".pub")):
        path.unlink(missing_ok=True)
    for path in (PAIRING_FILE, REPLICATION_FILE, HOLD_FILE):
        path.unlink(missing_ok=True)


def install_heartbeat(paths: Paths, cluster: ClusterConfig) -> bool:
    """ha.cf, haresources and authkeys for the pair and the applied site's timing."""
    from ..config import generations
    from ..config.apply import site_of
    from ..site.model import HASettings

    current = generations.target_of(paths.current)
    ha = site_of(current).ha if current else HASettings()
    return heartbeat.install(heartbeat.render_files(cluster, ha, appliance_version(paths.os_release)))


@contextmanager
def floating_kept() -> Iterator[None]:
    """While heartbeat starts or stops, its resource script's stop keeps the floating IPs."""
    KEEP_FLOATING_FILE.parent.mkdir(parents=True, exist_ok=True)
    KEEP_FLOATING_FILE.write_text("pairing\n")
    try:
        yield
    finally:
        KEEP_FLOATING_FILE.unlink(missing_ok=True)


def reapply(paths: Paths) -> str:
    """Render and apply the current site again (the pair's settings changed); returns a note."""
    from ..config.apply import apply_site, init
    from ..site.schema import SITE_KIND

    text = current_site_text(paths)
    if text is None:
        outcome = init(paths)
        if outcome is None:
            from ..config.apply import reset_to_empty

            outcome = reset_to_empty(paths)
        return f"generation {outcome.generation.name}"
    from ..boot.provision import site_context

    outcome = apply_site(paths, SITE_KIND.parse_text(text, site_context(None)), text, allowed_removals=None)
    return f"generation {outcome.generation.name}"


# --- secondary: the token and the answer to pairing -------------------------------------------


def make_token(paths: Paths) -> tuple[Token, float]:
    """On the future secondary: a token valid TOKEN_SECONDS; the key it derives is admitted now."""
    if paired():
        raise ClusterError(f"this appliance is already paired with {load_cluster().peer.name} ('lbctl cluster status')")
    services = running_services(paths)
    if services:
        raise ClusterError(
            f"this appliance already serves {', '.join(services)}: the secondary of a pair takes the primary's "
            "configuration, so pair an appliance without services (a fresh deployment) as the secondary"
        )
    host_key = link.own_host_key()
    token = Token(secrets.token_bytes(SECRET_BYTES), link.fingerprint(host_key)[:FINGERPRINT_BYTES])
    expires = time.time() + TOKEN_SECONDS
    expiry = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(expires))
    CLUSTER_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(PAIRING_FILE, json.dumps({"expires": expires, "key": token.public_key()}) + "\n", 0o600)
    link.authorize(token.public_key(), "accept-pairing", expiry=expiry)
    return token, expires


def accept_pairing(paths: Paths, request: dict[str, Any]) -> dict[str, Any]:
    """On the secondary, run by the derived key's forced command: check, commit, answer."""
    pending = json.loads(PAIRING_FILE.read_text()) if PAIRING_FILE.exists() else None
    if pending is None or pending["expires"] < time.time():
        raise ClusterError("the token has expired or was already used: run 'lbctl cluster token' on the peer again")
    if paired():
        raise ClusterError(f"the peer is already paired with {load_cluster().peer.name}")
    services = running_services(paths)
    if services:
        raise ClusterError(f"the peer already serves {', '.join(services)}: a secondary must have no services")
    site_text: str | None = request.get("site")
    if site_text is not None:
        from ..boot.provision import site_context
        from ..site.schema import SITE_KIND

        try:
            SITE_KIND.parse_text(site_text, site_context(None))
        except InputInvalid as exc:
            raise ClusterError("the peer refuses the primary's site file: " + "; ".join(exc.lines())) from None
    own = interface_addresses(paths)
    primary = request["primary"]
    paths_ = heartbeat_paths(own, primary["interfaces"])
    if not paths_:
        raise ClusterError(
            "the two appliances share no subnet (heartbeat needs one): the peer has "
            + ", ".join(f"{i} {' '.join(a)}" for i, a in sorted(own.items()))
        )
    cluster = ClusterConfig(
        role="secondary",
        node=Node(hostname(), tuple(own_address_towards(paths_, own))),
        # The primary's addresses are those of the paths (heartbeat and the firewall need each).
        peer=Node(primary["name"], tuple(p.peer for p in paths_), primary["host_key"]),
        paths=tuple(paths_),
        heartbeat_key=request["heartbeat_key"],
        ping_node=gateway(paths_[0].interface),
    )
    if cluster.node.name == cluster.peer.name:
        raise ClusterError(f"both appliances are called {cluster.node.name}: give each its own host name first")
    key = _new_key()
    try:
        write_cluster(cluster, request["cluster_key"], _openssh_private(key))
        if site_text is not None:
            from ..boot.provision import site_context
            from ..config.apply import apply_site
            from ..site.schema import SITE_KIND

            apply_site(paths, SITE_KIND.parse_text(site_text, site_context(None)), site_text, allowed_removals=None)
        else:
            reapply(paths)
        # heartbeat starts when the primary asks ("start"), once its own runs: started here, it
        # could declare the primary dead while the primary still reloads (initdead) and take the
        # floating IPs from it.
        install_heartbeat(paths, cluster)
    except Exception as exc:
        undo_pairing(paths)
        raise ClusterError(f"the peer could not take the pair's configuration: {exc}") from None
    PAIRING_FILE.unlink(missing_ok=True)
    return {
        "ok": True,
        "name": cluster.node.name,
        "addresses": [str(a) for a in cluster.node.addresses],
        "interfaces": own,
        "host_key": link.own_host_key(),
        "cluster_key": _openssh_public(key),
        "site_digest": site_digest(current_site_text(paths)),
    }


def undo_pairing(paths: Paths) -> None:
    """Back to a single appliance after a pairing that did not complete."""
    if heartbeat.running():
        heartbeat.stop()
    clear_cluster()
    try:
        reapply(paths)
    except Exception:  # the single appliance's configuration was never changed on disk
        pass


# --- primary: pair ----------------------------------------------------------------------------


def pair(paths: Paths, address: str, token_text: str, say: Any = print) -> ClusterConfig:
    """On the primary: authenticate the peer, let it commit, then commit here. Raises
    ClusterError with the reason; then neither node has changed."""
    token = Token.parse(token_text)
    if paired():
        raise ClusterError(f"this appliance is already paired with {load_cluster().peer.name}; nothing was changed")
    try:
        peer_ip = ipaddress.ip_address(address)
    except ValueError:
        raise ClusterError(f"--peer {address!r} is not an IP address") from None
    own = interface_addresses(paths)
    if any(ipaddress.ip_interface(a).ip == peer_ip for addresses in own.values() for a in addresses):
        raise ClusterError(f"{peer_ip} is this appliance's own address: --peer is the other appliance's")
    if not heartbeat_paths(own, {"any": [f"{peer_ip}/{peer_ip.max_prefixlen}"]}):
        raise ClusterError(
            f"{peer_ip} is on none of this appliance's subnets ({', '.join(a for v in own.values() for a in v)}); "
            "the peer must share a subnet with it for heartbeat; nothing was changed"
        )
    say(f"checking the SSH host key of {peer_ip} against the token")
    try:
        host_key = link.scan_host_key(str(peer_ip))
    except link.LinkError as exc:
        raise ClusterError(f"{exc}; nothing was changed") from None
    if link.fingerprint(host_key)[:FINGERPRINT_BYTES] != token.host_key_fingerprint:
        raise ClusterError(
            f"the SSH host key of {peer_ip} ({link.fingerprint_text(host_key)}) is not the one the token names: "
            "a wrong token, or another machine at that address; nothing was changed"
        )
    say(f"host key {link.fingerprint_text(host_key)} matches the token; pinned")
    key = _new_key()
    heartbeat_key = secrets.token_hex(32)
    request = {
        "op": "pair",
        "primary": {
            "name": hostname(),
            "addresses": [str(a) for a in own_address_towards(heartbeat_paths(own, {"peer": [str(peer_ip)]}), own)],
            "interfaces": own,
            "host_key": link.own_host_key(),
        },
        "cluster_key": _openssh_public(key),
        "heartbeat_key": heartbeat_key,
        "site": current_site_text(paths),
    }
    try:
        with _scratch_peer(str(peer_ip), host_key, token.private_key()) as by_token:
            say(f"sending the pairing request and the configuration to {peer_ip}")
            answer = by_token.request(request)
    except link.LinkError as exc:
        if "Permission denied" in str(exc) or "refused this node's key" in str(exc):
            raise ClusterError(
                f"{peer_ip} refused the token (expired, already used, or from another appliance); nothing was changed"
            ) from None
        # The peer may have committed before the link broke: it then admits our new cluster key.
        raise ClusterError(f"{exc}; {_take_back(str(peer_ip), host_key, key)}") from None
    if not answer.get("ok"):
        raise ClusterError(f"{answer.get('error', 'the peer refused the pairing')}; nothing was changed")
    try:
        paths_ = heartbeat_paths(own, answer["interfaces"])
        cluster = ClusterConfig(
            role="primary",
            node=Node(hostname(), tuple(own_address_towards(paths_, own))),
            # The host key the token vouched for, not the one the answer names.
            peer=Node(str(answer["name"]), tuple(p.peer for p in paths_), host_key),
            paths=tuple(paths_),
            heartbeat_key=heartbeat_key,
            ping_node=gateway(paths_[0].interface) if paths_ else None,
        )
        say(f"{cluster.peer.name} joined as the secondary; configuring this node as the primary")
        write_cluster(cluster, link.checked_public_key(answer["cluster_key"]), _openssh_private(key))
        with floating_kept():
            reapply(paths)
            install_heartbeat(paths, cluster)
            heartbeat.start()
        say(f"heartbeat runs here; starting it on {cluster.peer.name}")
        started = peer_link(cluster).request({"op": "start"}, timeout=60)
        if not started.get("ok"):
            raise ClusterError(f"{cluster.peer.name} could not start heartbeat: {started.get('error')}")
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, (KeyError, TypeError)) else str(exc)
        taken_back = _take_back(str(peer_ip), host_key, key)
        if heartbeat.running():
            heartbeat.stop()
        clear_cluster()
        reapply(paths)
        raise ClusterError(f"this node could not take the pair's configuration ({detail}); {taken_back}") from None
    record_replication(True, f"paired; {cluster.peer.name} applied the site", answer.get("site_digest"))
    return cluster


@contextmanager
def _scratch_peer(address: str, host_key: str, private_key: Any) -> Iterator[link.Peer]:
    """A link to the peer with a key that is not (yet) this node's cluster key."""
    scratch = CLUSTER_DIR / ".pairing"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True, mode=0o700)
    try:
        known = scratch / "known_hosts"
        link.pin((address,), host_key, known)
        write_atomic(scratch / "key", _openssh_private(private_key).decode(), 0o600)
        yield link.Peer(address, scratch / "key", known)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _take_back(address: str, host_key: str, key: Any) -> str:
    """After a pairing failed on this side: if the peer committed (it admits our new cluster key),
    it leaves the pair again. Returns what became of the peer, for the error line."""
    try:
        with _scratch_peer(address, host_key, key) as by_cluster_key:
            answer = by_cluster_key.request({"op": "unpair"}, timeout=90)
    except link.LinkError as exc:
        if "Permission denied" in str(exc) or "refused this node's key" in str(exc):
            return "the peer had not taken the pairing; nothing was changed"
        return (
            f"the peer could not be told ({exc}): run 'lbctl cluster status' there, "
            "and 'lbctl cluster unpair' if it says paired"
        )
    if answer.get("ok"):
        return "the peer had taken the pairing and left it again; both are single appliances as before"
    return f"the peer could not leave the pair ({answer.get('error')}): run 'lbctl cluster unpair' there"


# --- replication and requests between the nodes -----------------------------------------------


def record_replication(ok: bool, message: str, digest: str | None = None) -> None:
    entry = {"time": time.time(), "ok": ok, "message": message, "peer_site_digest": digest}
    write_atomic(REPLICATION_FILE, json.dumps(entry) + "\n", 0o600)


def last_replication() -> dict[str, Any] | None:
    try:
        return dict(json.loads(REPLICATION_FILE.read_text()))
    except (OSError, ValueError):
        return None


def peer_link(cluster: ClusterConfig) -> link.Peer:
    return link.Peer(str(cluster.peer.addresses[0]))


def replicate(paths: Paths, site_text: str) -> str:
    """On the primary, after an apply: the secondary applies the same site. Returns what it said;
    raises ClusterError (recorded) when it could not be reached or refused."""
    cluster = load_cluster()
    try:
        answer = peer_link(cluster).request({"op": "apply", "site": site_text})
    except link.LinkError as exc:
        record_replication(False, str(exc))
        raise ClusterError(f"replication to {cluster.peer.name} failed: {exc}") from None
    if not answer.get("ok"):
        reason = answer.get("error", "refused")
        record_replication(False, reason)
        raise ClusterError(f"{cluster.peer.name} refused the replicated site: {reason}")
    message = f"{cluster.peer.name} applied it ({answer.get('outcome', 'done')})"
    record_replication(True, message, answer.get("site_digest"))
    return message


def receive(paths: Paths, request: dict[str, Any]) -> dict[str, Any]:
    """The peer's request, run by its cluster key's forced command. Ops:

    apply   {"site": text}: validate and apply it here (the secondary only)
    status  this node's role, state and site digest
    start   start heartbeat (the last step of pairing, once the primary's own runs)
    unpair  dissolve the pair on this side (heartbeat stopped; a secondary drops its services)
    """
    op = request.get("op")
    if op == "status":
        return {"ok": True, **node_summary(paths)}
    if op == "apply":
        if not paired() or load_cluster().primary:
            raise ClusterError("this node is not the secondary of the pair; it does not take replicated sites")
        from ..boot.provision import site_context
        from ..config.apply import ApplyError, apply_site
        from ..site.schema import SITE_KIND

        text = request["site"]
        try:
            outcome = apply_site(paths, SITE_KIND.parse_text(text, site_context(None)), text, allowed_removals=None)
        except InputInvalid as exc:
            raise ClusterError("; ".join(exc.lines())) from None
        except ApplyError as exc:
            raise ClusterError(str(exc).replace("\n", " ")) from None
        sync_heartbeat(paths)
        done = f"generation {outcome.generation.name}" if outcome.changed else "unchanged"
        return {"ok": True, "outcome": done, "site_digest": site_digest(text)}
    if op == "start":
        if not paired():
            raise ClusterError("this node is not paired")
        heartbeat.start()
        return {"ok": True}
    if op == "unpair":
        if not paired():
            raise ClusterError("this node is not paired")
        # The primary keeps its services whichever node asked (as unpair() on the primary does).
        dissolve(paths, keep_services=load_cluster().primary)
        return {"ok": True}
    if op == "pair":
        raise ClusterError("this node is already paired")
    raise ClusterError(f"unknown request {op!r}")


def serve(paths: Paths, handler: Any) -> int:
    """Read one JSON request from stdin, answer one JSON line on stdout (forced commands)."""
    try:
        request = json.loads(sys.stdin.read() or "{}")
        answer = handler(paths, request)
    except ClusterError as exc:
        answer = {"ok": False, "error": str(exc)}
    except Exception as exc:  # the primary shows it; a traceback helps no one there
        answer = {"ok": False, "error": f"unexpected {type(exc).__name__}: {exc}"}
    print(json.dumps(answer), flush=True)
    return 0


def sync_heartbeat(paths: Paths) -> None:
    """After an apply on a paired node: new timing in ha.cf reaches heartbeat."""
    if paired() and install_heartbeat(paths, load_cluster()):
        heartbeat.reload()


def node_summary(paths: Paths) -> dict[str, Any]:
    from ..config import generations

    cluster = load_cluster() if paired() else None
    hb = heartbeat.state(cluster.peer.name) if cluster else None
    current = generations.target_of(paths.current)
    return {
        "name": hostname(),
        "role": cluster.role if cluster else None,
        "state": hb.role_state(floating.holds(current)) if hb else None,
        "holds_floating_ips": floating.holds(current),
        "generation": current.name if current else None,
        "site_digest": site_digest(current_site_text(paths)),
    }


# --- split brain ------------------------------------------------------------------------------


def heal(paths: Paths) -> str:
    """After a partition heals, both nodes may hold the floating IPs (heartbeat 3 logs "Both
    machines own our resources!" and leaves it so). Run periodically on a node that holds them
    (lb-garp.service): if the peer answers that it holds them too, the secondary gives them up
    through heartbeat (hb_standby), so that the primary keeps them."""
    from ..config import generations

    if not paired() or not heartbeat.running():
        return "not paired, or heartbeat not running"
    cluster = load_cluster()
    if cluster.primary or not floating.holds(generations.target_of(paths.current)):
        return "nothing to do here"
    try:
        answer = peer_link(cluster).request({"op": "status"}, timeout=20)
    except link.LinkError as exc:
        return f"peer not asked: {exc}"
    if not answer.get("holds_floating_ips"):
        return "only this node holds the floating IPs"
    heartbeat.standby()
    return f"split brain: {cluster.peer.name} holds the floating IPs too; this secondary gave them up"


# --- unpair, hold and join ------------------------------------------------------------------


def dissolve(paths: Paths, keep_services: bool) -> None:
    """This node leaves the pair: heartbeat stopped, cluster files gone. The primary keeps its
    services (and its floating IPs, handed from heartbeat to networkd without a gap); the
    secondary drops them, so that two single appliances never serve the same VIPs."""
    if keep_services:
        with floating_kept():
            heartbeat.stop()
            clear_cluster()
            reapply(paths)
    else:
        heartbeat.stop()
        clear_cluster()
        from ..config.apply import reset_to_empty

        reset_to_empty(paths)


def unpair(paths: Paths) -> str:
    """On either node: dissolve the pair on both. The peer is told first; if it cannot be reached,
    this node leaves anyway and says so (the peer then needs 'lbctl cluster unpair' itself)."""
    if not paired():
        raise ClusterError("this appliance is not paired")
    try:
        cluster = load_cluster()
    except ClusterStateError as exc:
        # Who the peer is cannot be read: leave alone, keeping the services (the safer guess).
        dissolve(paths, keep_services=True)
        return f"{exc}; this node left the pair and kept its services: run 'lbctl cluster unpair' on the peer too"
    note = f"{cluster.peer.name} left the pair and dropped its services"
    try:
        answer = peer_link(cluster).request({"op": "unpair"}, timeout=90)
        if not answer.get("ok"):
            note = (
                f"{cluster.peer.name} could not leave the pair: {answer.get('error')}; run 'lbctl cluster unpair' there"
            )
    except link.LinkError as exc:
        note = f"{cluster.peer.name} was not told ({exc}); run 'lbctl cluster unpair' there"
    dissolve(paths, keep_services=cluster.primary)
    return note


def hold() -> None:
    """Keep heartbeat stopped (a configuration restored from a backup) until join()."""
    CLUSTER_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    HOLD_FILE.write_text("restored from a backup: 'lbctl cluster join' starts heartbeat\n")


def join() -> None:
    if not paired():
        raise ClusterError("this appliance is not paired")
    HOLD_FILE.unlink(missing_ok=True)
    heartbeat.start()
