"""The firewall ruleset: rendered from the site, the firewall settings and the site's own rules,
checked with `nft -c`, loaded with `nft -f` in one transaction, and counted.

    DATA_DIR/firewall/ruleset.nft      the ruleset in force (confirmed); loaded at every boot
    DATA_DIR/firewall/pending.nft      a ruleset applied with --confirm, not yet confirmed
    DATA_DIR/firewall/site-rules.nft   the site's own rules (siterules.py)
    DATA_DIR/firewall/firewall.yaml    the management networks (settings.py)

A load either succeeds whole or changes nothing: nft applies a file as one kernel transaction
(firewall-notes: a syntax error or a kernel-side error anywhere leaves the previous ruleset
byte-identical). An error inside the site's rules is reported with its line in the site's file.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..appliance import HEARTBEAT_PORT, METRICS_PORT, PEERS_PORT, SSH_PORT, WEB_UI_PORT, Paths, appliance_version
from ..fileio import write_atomic
from ..inputs.addresses import IPAddress
from ..site.model import Site
from .settings import FIREWALL_DIR, FirewallSettings
from .siterules import CHAINS, SiteRules

TABLE = "lbappliance"
RULESET_FILE = FIREWALL_DIR / "ruleset.nft"
PENDING_FILE = FIREWALL_DIR / "pending.nft"
SITE_RULES_FILE = FIREWALL_DIR / "site-rules.nft"
MANAGEMENT_PORTS = (SSH_PORT, METRICS_PORT, WEB_UI_PORT)
TPROXY_MARK = 0x1  # fwmark of connections coming back to a transparent socket
TPROXY_TABLE = 100  # the routing table that delivers them locally (firewall-notes)
# How long the peer's entry in heartbeat_seen_v4/v6 lives after its last heartbeat: the age of the
# last heartbeat is this minus the time the entry has left (lbctl cluster status).
HEARTBEAT_SEEN_TIMEOUT = "1h"
HEARTBEAT_SEEN_SECONDS = 3600
SITE_LINE = re.compile(r"# site rules line (\d+)\s*$")
NFT_ERROR = re.compile(r"^(?P<file>[^:\s]+):(?P<line>\d+):(?P<col>[\d-]+): Error: (?P<message>.*)$")


class FirewallError(Exception):
    """nft refused a ruleset, or could not be run; the previous ruleset is in force."""


def nft_binary() -> str:
    name = os.environ.get("LBCTL_NFT", "nft")
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") or name


@dataclass(frozen=True)
class VipRule:
    name: str
    interface: str
    vip: IPAddress
    port: int


def render(
    site: Site | None,
    settings: FirewallSettings,
    site_rules: SiteRules,
    peer_addresses: Sequence[IPAddress] = (),
    version: str = "",
) -> str:
    """The whole ruleset file. `site` None: no site applied yet (management and peer only)."""
    from ..templating import environment

    networks = settings.management_networks or (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
    management_v4 = [str(n) for n in networks if n.version == 4] + [str(p) for p in peer_addresses if p.version == 4]
    management_v6 = [str(n) for n in networks if n.version == 6] + [str(p) for p in peer_addresses if p.version == 6]
    vip_rules = [VipRule(s.name, s.interface, s.vip, s.port) for s in (site.services if site else ())]
    # The service addresses (VIPs, the SNAT address): the management ports are not served there.
    floating = sorted({r.vip for r in vip_rules} | ({site.snat_address} if site and site.snat_address else set()))
    env = environment()
    template = env.get_template("firewall/ruleset.nft.j2")
    return template.render(
        table=TABLE,
        version=version,
        site_rules_file=SITE_RULES_FILE,
        locked_down=settings.locked_down,
        management_v4=management_v4,
        management_v6=management_v6,
        management_ports=MANAGEMENT_PORTS,
        peer_addresses=list(peer_addresses),
        heartbeat_port=HEARTBEAT_PORT,
        peers_port=PEERS_PORT,
        vip_rules=vip_rules,
        floating_v4=[str(a) for a in floating if a.version == 4],
        floating_v6=[str(a) for a in floating if a.version == 6],
        outbound_snat=site.outbound_snat if site else (),
        transparent=bool(site and site.transparent),
        tproxy_mark=f"0x{TPROXY_MARK:x}",
        tproxy_table=TPROXY_TABLE,
        site=site_rules,
        site_chains=CHAINS,
        heartbeat_seen_timeout=HEARTBEAT_SEEN_TIMEOUT,
        passive_sources=[site.snat_address] if peer_addresses and site and site.snat_address else [],
    )


def _nft(args: list[str], text: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([nft_binary(), *args], input=text, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FirewallError(f"cannot run {nft_binary()}: {exc}") from None


def explain(stderr: str, ruleset: Path) -> str:
    """nft's error, with a line of the site's rules named as such (they are placed in the ruleset)."""
    lines = ruleset.read_text().splitlines() if ruleset.exists() else []
    out = []
    for line in stderr.strip().splitlines():
        match = NFT_ERROR.match(line)
        if match:
            number = int(match.group("line"))
            source = lines[number - 1] if 0 < number <= len(lines) else ""
            site = SITE_LINE.search(source)
            where = f"{SITE_RULES_FILE} line {site.group(1)}" if site else f"{match.group('file')} line {number}"
            out.append(f"{where}: {match.group('message')}")
    return "; ".join(out) or stderr.strip() or "nft failed without a message"


def check(ruleset: Path) -> None:
    """nft -c: the whole file, kernel-side checks included, without loading it."""
    result = _nft(["-c", "-f", str(ruleset)])
    if result.returncode != 0:
        raise FirewallError("nft refuses the ruleset: " + explain(result.stderr, ruleset))


def load(ruleset: Path) -> None:
    """nft -f: one transaction; on failure nothing changed."""
    check(ruleset)
    result = _nft(["-f", str(ruleset)])
    if result.returncode != 0:
        raise FirewallError(
            "nft could not load the ruleset (the previous one is in force): " + explain(result.stderr, ruleset)
        )


def sync_policy_routing(transparent: bool) -> None:
    """TPROXY's policy routing: marked connections are delivered locally (table TPROXY_TABLE)."""
    for family in ("-4", "-6"):
        rules = subprocess.run(
            ["ip", family, "rule", "show", "fwmark", hex(TPROXY_MARK)], capture_output=True, text=True
        ).stdout
        present = f"lookup {TPROXY_TABLE}" in rules
        local = "0.0.0.0/0" if family == "-4" else "::/0"
        if transparent and not present:
            subprocess.run(
                ["ip", family, "rule", "add", "fwmark", hex(TPROXY_MARK), "lookup", str(TPROXY_TABLE)],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                ["ip", family, "route", "replace", "local", local, "dev", "lo", "table", str(TPROXY_TABLE)],
                check=True,
                capture_output=True,
            )
        elif not transparent and present:
            subprocess.run(
                ["ip", family, "rule", "del", "fwmark", hex(TPROXY_MARK), "lookup", str(TPROXY_TABLE)],
                check=False,
                capture_output=True,
            )
            subprocess.run(
                ["ip", family, "route", "flush", "table", str(TPROXY_TABLE)], check=False, capture_output=True
            )


def sync_forwarding(forward: bool) -> None:
    """Routing is on only for outbound SNAT (its sources use the appliance as their gateway)."""
    on = "1" if forward else "0"
    for path in (Path("/proc/sys/net/ipv4/ip_forward"), Path("/proc/sys/net/ipv6/conf/all/forwarding")):
        try:
            if path.read_text().strip() != on:
                path.write_text(on + "\n")
        except OSError:
            pass  # no IPv6, or not allowed here (a test namespace without it)


@dataclass(frozen=True)
class Counter:
    chain: str
    comment: str
    packets: int
    bytes: int


def counters() -> list[Counter]:
    """Packets and bytes of every counted rule of the appliance's table, by chain and comment."""
    result = _nft(["-j", "list", "table", "inet", TABLE])
    if result.returncode != 0:
        raise FirewallError(f"no firewall table inet {TABLE} is loaded: {result.stderr.strip()}")
    found: list[Counter] = []
    for item in json.loads(result.stdout).get("nftables", []):
        rule: dict[str, Any] | None = item.get("rule")
        if not rule:
            continue
        counter = next((e["counter"] for e in rule.get("expr", []) if isinstance(e, dict) and "counter" in e), None)
        if counter is not None:
            found.append(Counter(rule["chain"], rule.get("comment", ""), counter["packets"], counter["bytes"]))
    return found


NFT_DURATION = re.compile(r"(\d+)(ms|d|h|m|s)")
NFT_DURATION_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def nft_seconds(text: str) -> float:
    """An nft duration ("59m58s120ms") in seconds."""
    return sum(int(n) * NFT_DURATION_SECONDS[unit] for n, unit in NFT_DURATION.findall(text))


def heartbeat_age(peer: IPAddress) -> float | None:
    """Seconds since the peer's last heartbeat packet reached this node's firewall; None if none
    arrived within HEARTBEAT_SEEN_TIMEOUT (or no firewall is loaded)."""
    result = _nft(["list", "set", "inet", TABLE, f"heartbeat_seen_v{peer.version}"])
    if result.returncode != 0:
        return None
    match = re.search(rf"(?<![\w:.]){re.escape(str(peer))}(?: timeout \S+)? expires (\S+?)[,\s}}]", result.stdout)
    if not match:
        return None
    return max(0.0, HEARTBEAT_SEEN_SECONDS - nft_seconds(match.group(1)))


def ruleset_text() -> str:
    """`nft list ruleset`: the kernel's whole ruleset (other tools' tables too)."""
    result = _nft(["list", "ruleset"])
    if result.returncode != 0:
        raise FirewallError(result.stderr.strip())
    return result.stdout


def write_ruleset(text: str, path: Path) -> Path:
    return write_atomic(path, text, 0o600)


def current_version(paths: Paths) -> str:
    return appliance_version(paths.os_release)
