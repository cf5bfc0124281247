"""What a real server sees of the appliance's health checks and traffic log, counted by nftables
in the real server's namespace: checks end with FIN and never RST (a SQL Server or a PACS logs
every reset), the ping check leaves from the SNAT address like the others, and every client
connection reaches the traffic log."""

from __future__ import annotations

import json
import sys
import time

from tests.helpers import appliance_binary
from tests.netns.appliance import Appliance
from tests.netns.netlab import SERVER_ADDRESSES, SNAT, VIP_DATA, Lab, wait_until

NFT = appliance_binary("nft") or "nft"
COUNTERS = ("fin", "rst", "ping_from_snat", "ping_from_elsewhere")


def count_at(lab: Lab, server: str) -> None:
    """Count, in the real server's namespace, what arrives from the appliance (its own table)."""
    script = f"""
table inet lbtcount {{}}
delete table inet lbtcount
table inet lbtcount {{
    chain input {{
        type filter hook input priority 0; policy accept;
        ip saddr {SNAT} tcp flags & fin == fin counter comment "fin"
        ip saddr {SNAT} tcp flags & rst == rst counter comment "rst"
        ip saddr {SNAT} tcp flags & rst == rst tcp dport 104 counter comment "rst_104"
        ip saddr {SNAT} tcp flags & rst == rst tcp dport 2762 counter comment "rst_2762"
        ip saddr {SNAT} tcp flags & rst == rst tcp dport 1433 counter comment "rst_1433"
        ip saddr {SNAT} tcp flags & rst == rst tcp dport 3890 counter comment "rst_3890"
        ip saddr {SNAT} tcp flags & rst == rst tcp dport 6360 counter comment "rst_6360"
        ip saddr {SNAT} icmp type echo-request counter comment "ping_from_snat"
        ip saddr != {SNAT} icmp type echo-request counter comment "ping_from_elsewhere"
    }}
}}
"""
    lab.exec(server, [NFT, "-f", "-"], input=script)


def counted(lab: Lab, server: str) -> dict[str, int]:
    listing = json.loads(lab.exec(server, [NFT, "-j", "list", "table", "inet", "lbtcount"]).stdout)
    values: dict[str, int] = {}
    for item in listing["nftables"]:
        rule = item.get("rule")
        if rule:
            packets = next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
            values[rule["comment"]] = packets
    return values


def test_checks_close_with_fin_never_rst_and_ping_leaves_from_the_snat_address(running: Appliance, lab: Lab) -> None:
    for server in SERVER_ADDRESSES:
        count_at(lab, server)
    time.sleep(8)  # at least three rounds of every check (intervals 2 s, ping 3 s)
    for server in SERVER_ADDRESSES:
        seen = counted(lab, server)
        assert set(seen) >= set(COUNTERS), seen
        # connect, dicom-echo, mssql, ldap and ldap over TLS on this server: each round closes
        # each connection with a FIN from the appliance.
        assert seen["fin"] >= 5 * 3, seen
        # Plain TCP: every check closes with FIN, never RST.
        plain = {port: seen[f"rst_{port}"] for port in (104, 1433, 3890)}
        assert plain == {104: 0, 1433: 0, 3890: 0}, f"health checks reset their connections at {server}: {seen}"
        # In TLS the check ends with close_notify and FIN; the server's own close_notify, sent after,
        # reaches a closed socket, which TCP answers with RST (RFC 9293 3.6.1): one per check at most.
        assert seen["rst_2762"] <= seen["fin"] and seen["rst_6360"] <= seen["fin"], seen
        assert seen["ping_from_snat"] >= 4 * 2, seen
        assert seen["ping_from_elsewhere"] == 0, f"the ping check left from another address: {seen}"


def test_every_client_connection_reaches_the_traffic_log(running: Appliance, lab: Lab) -> None:
    # One LDAP bind through the VIP (a connection that carries data: dontlognull skips empty ones).
    client = (
        f"import socket; s = socket.create_connection(({VIP_DATA!r}, 3890), timeout=5); "
        "s.sendall(bytes.fromhex('300c020101600702010304008000')); print(s.recv(64).hex()); s.close()"
    )
    answer = lab.exec("cl", [sys.executable, "-c", client]).stdout
    assert answer.startswith("30"), answer
    haproxy = running.haproxy
    assert haproxy is not None
    line = wait_until(
        lambda: next((line for line in haproxy.output().splitlines() if " LDAP LDAP/" in line), None),
        10,
        "the LDAP connection in HAProxy's traffic log (its standard output)",
    )
    assert line.startswith("<6>"), line  # info: the journal reads the priority from the prefix
