"""The HA pair, with two appliance VMs: pairing, replication, failover, split-brain defences.

The lab (two VMs, two bridges, the gateway, the client and two real servers) is in pair.py.

The tests are one story, in this order (each builds on the state the one before left): failed
pairings change nothing; pairing; the passive node's checks; addresses changed by hand put
back; persistence across a hard power-off
of the active node (the failover time is measured, bench/ha has the series); the old primary
back as passive; replication (and a site the secondary refuses); one heartbeat path cut; the
ping node lost; takeover/standby; a restore held until join; unpair.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import artifact
from tests.image.pair import GATEWAY, NODE_ADDRESS, SITE, SNAT, VIP, Pair, booted_pair


@pytest.fixture(scope="module")
def pair(manifest: dict, built_dist: Path, ssh_keypair: tuple[Path, str], tmp_path_factory) -> Iterator[Pair]:
    disk = artifact(manifest, built_dist, "kvm", ".qcow2")
    with booted_pair(disk, tmp_path_factory.mktemp("pair"), ssh_keypair) as booted:
        yield booted


def test_pairing_with_a_wrong_token_or_an_unreachable_peer_changes_nothing(pair: Pair) -> None:
    token = re.search(r"token for lb2: (\S+)", pair.sh("lb2", "lbctl cluster token").stdout)
    assert token
    wrong = "-".join(["AAAA"] * 8)
    refused = pair.sh("lb1", f"lbctl cluster pair --peer {NODE_ADDRESS['lb2']} --token {wrong}", check=False)
    assert refused.returncode == 1
    assert "is not the one the token names" in refused.stderr and "nothing was changed" in refused.stderr
    away = pair.sh("lb1", f"lbctl cluster pair --peer 10.210.0.99 --token {token.group(1)}", check=False)
    assert away.returncode == 1 and "cannot reach 10.210.0.99" in away.stderr
    for name in ("lb1", "lb2"):
        assert "not paired" in pair.sh(name, "lbctl cluster status", check=False).stderr
    assert pair.holds_vip("lb1") and not pair.holds_vip("lb2")


# The appliance gauges from the node's own web UI (its certificate is self-signed).
GAUGES = """python3 -c '
import ssl, time, urllib.request
context = ssl._create_unverified_context()
for _ in range(60):
    try:
        print(urllib.request.urlopen("https://127.0.0.1:9443/metrics", context=context).read().decode()); break
    except OSError:
        time.sleep(1)
'"""


def test_pairing_copies_the_site_and_starts_heartbeat(pair: Pair) -> None:
    token = re.search(r"token for lb2: (\S+)", pair.sh("lb2", "lbctl cluster token").stdout)
    assert token
    paired = pair.sh("lb1", f"lbctl cluster pair --peer {NODE_ADDRESS['lb2']} --token {token.group(1)}")
    assert "paired: lb1 (primary) and lb2 (secondary)" in paired.stdout
    assert "eth1 -> 10.210.0.3" in paired.stdout and "eth2 -> 10.211.0.3" in paired.stdout
    assert f"ping node {GATEWAY}" in paired.stdout
    # The token was for one pairing only.
    again = pair.sh("lb1", f"lbctl cluster pair --peer {NODE_ADDRESS['lb2']} --token {token.group(1)}", check=False)
    assert again.returncode == 1 and "already paired" in again.stderr
    deadline = time.monotonic() + 90
    while True:
        one, two = pair.status("lb1"), pair.status("lb2")
        if one.get("state") == "active" and two.get("state") == "passive" and one.get("same_configuration"):
            break
        assert time.monotonic() < deadline, (one, two)
        time.sleep(2)
    assert one["role"] == "primary" and two["role"] == "secondary"
    assert one["last_heartbeat_seconds"] is not None and one["last_heartbeat_seconds"] < 2
    assert pair.holds_vip("lb1") and not pair.holds_vip("lb2")
    # The secondary's HAProxy runs the same services, warm (non-local bind of the VIP).
    assert [s["name"] for s in json.loads(pair.sh("lb2", "lbctl status --json").stdout)["services"]] == ["DICOM"]
    # The web UI's gauges say the same to Prometheus.
    for name, state in (("lb1", 'role="primary",state="active"'), ("lb2", 'role="secondary",state="passive"')):
        gauges = pair.sh(name, GAUGES).stdout
        assert f"lbappliance_ha_role{{{state}}} 1" in gauges and "lbappliance_ha_paired 1" in gauges
        assert re.search(r'lbappliance_ha_peer_alive\{peer="lb[12]"\} 1', gauges), gauges


def test_the_passive_node_sees_its_real_servers_up(pair: Pair) -> None:
    """Its checks leave from its own address (the SNAT address is on the active node), so the
    real servers' replies come back to it: a takeover does not find every server DOWN."""
    deadline = time.monotonic() + 30
    while True:
        services = json.loads(pair.sh("lb2", "lbctl status --json").stdout)["services"]
        states = [s["state"] for s in services[0]["servers"]]
        if states == ["UP", "UP"]:
            break
        assert time.monotonic() < deadline, services
        time.sleep(2)


def test_addresses_changed_by_hand_are_put_back_where_heartbeat_says(pair: Pair) -> None:
    """lb-garp.timer (lbfloat reconcile, every 15 s): the active node gets its floating IP back,
    the passive node its SNAT address on lo (its health checks leave from it)."""
    pair.sh("lb1", f"ip addr del {VIP}/32 dev eth1")
    pair.sh("lb2", f"ip addr del {SNAT}/32 dev lo")
    deadline = time.monotonic() + 40
    while not (pair.holds_vip("lb1") and f"{SNAT}/32" in pair.sh("lb2", "ip -4 -o addr show dev lo").stdout):
        assert time.monotonic() < deadline, "lbfloat reconcile did not put the addresses back within 40 s"
        time.sleep(2)
    assert not pair.holds_vip("lb2")


def test_hard_power_off_of_the_active_node_keeps_persistence(pair: Pair, tmp_path: Path) -> None:
    first = pair.store(tmp_path)
    assert pair.store(tmp_path) == first  # sticky
    time.sleep(2)  # the stick-table entry reaches the peer (HAProxy peers, TCP 7778)
    outage = pair.power_off("lb1", "lb2")
    assert outage is not None, "the VIP never answered after the power-off"
    print(f"failover: the VIP answered again {outage:.2f} s after the power-off")
    assert outage < 15
    assert pair.store(tmp_path) == first, "the client lost its real server across the failover"


def test_the_old_primary_comes_back_passive(pair: Pair) -> None:
    vm = pair.vms["lb1"]
    vm.start()
    vm.wait_ready(timeout=420)
    deadline = time.monotonic() + 90
    while pair.status("lb1").get("state") != "passive":
        assert time.monotonic() < deadline, pair.status("lb1")
        time.sleep(2)
    assert pair.holds_vip("lb2") and not pair.holds_vip("lb1")  # no failback (ha.failback false)


def test_apply_on_the_primary_reaches_the_secondary(pair: Pair) -> None:
    changed = SITE.replace("    rise: 1\n", "    rise: 1\n    persistence_minutes: 45\n")
    pair.sh("lb1", f"cat > /tmp/site.yaml <<'EOF'\n{changed}EOF")
    applied = pair.sh("lb1", "lbctl apply /tmp/site.yaml")
    assert "replicated: lb2 applied it (generation" in applied.stdout
    assert "expire 45m" in pair.sh("lb2", "cat /etc/haproxy/haproxy.cfg").stdout
    assert pair.status("lb1")["same_configuration"] is True
    # The secondary refuses what it cannot run (here: lb2's own SSH port as a real server); the
    # primary says so, and keeps its own new configuration.
    refused_site = changed.replace(f"address: {GATEWAY}, port: 11113", f"address: {NODE_ADDRESS['lb2']}, port: 22")
    pair.sh("lb1", f"cat > /tmp/bad.yaml <<'EOF'\n{refused_site}EOF")
    refused = pair.sh("lb1", "lbctl apply /tmp/bad.yaml", check=False)
    assert refused.returncode == 1
    assert "lb2 refused the replicated site" in refused.stderr and "stays applied" in refused.stderr
    assert f"{NODE_ADDRESS['lb2']}:22" in pair.sh("lb1", "cat /etc/haproxy/haproxy.cfg").stdout
    status = pair.sh("lb1", "lbctl cluster status", check=False)
    assert "DIFFERENT sites" in status.stdout and "FAILED" in status.stdout
    pair.sh("lb1", "lbctl apply /tmp/site.yaml")  # back to a site both run
    # On the secondary itself, changes are refused.
    on_secondary = pair.sh("lb2", "lbctl apply /etc/haproxy/haproxy.cfg", check=False)
    assert on_secondary.returncode == 1 and "secondary of an HA pair" in on_secondary.stderr


def test_one_heartbeat_path_cut_causes_no_failover(pair: Pair) -> None:
    pair.ns.run(["ip", "link", "set", "lb2-2", "nomaster"], check=True)
    try:
        time.sleep(8)
        assert pair.holds_vip("lb2") and not pair.holds_vip("lb1")
    finally:
        pair.ns.run(["ip", "link", "set", "lb2-2", "master", "br1"], check=True)


def test_the_node_that_loses_the_ping_node_gives_the_floating_ips_up(pair: Pair) -> None:
    """lb2 (active) stops reaching the gateway while lb1 still does: ipfail moves the floating
    IPs to lb1. Only lb2's pings are dropped; heartbeat between the nodes continues."""
    drop = f"add rule inet cut input ip saddr {NODE_ADDRESS['lb2']} icmp type echo-request drop"
    pair.ns.run(["nft", "add", "table", "inet", "cut"], check=True)
    pair.ns.run(["nft", "add chain inet cut input { type filter hook input priority 0; }"], check=True)
    pair.ns.run(["nft", drop], check=True)
    try:
        pair.wait_holder("lb1", timeout=90)
        assert not pair.holds_vip("lb2")
    finally:
        pair.ns.run(["nft", "delete", "table", "inet", "cut"], check=True)


def test_takeover_and_standby_move_the_floating_ips(pair: Pair) -> None:
    time.sleep(5)  # ipfail settles after the ping node is back
    pair.sh("lb2", "lbctl cluster takeover")
    pair.wait_holder("lb2", timeout=60)
    pair.sh("lb2", "lbctl cluster standby")
    pair.wait_holder("lb1", timeout=60)
    assert not pair.holds_vip("lb2")


def test_a_restored_node_keeps_heartbeat_stopped_until_join(pair: Pair) -> None:
    pair.sh("lb2", "lbctl backup /root/lb2.backup")
    restored = pair.sh("lb2", "lbctl restore /root/lb2.backup")
    assert "heartbeat held until 'lbctl cluster join'" in restored.stdout
    assert pair.status("lb2")["state"] == "held"
    assert pair.sh("lb2", "systemctl is-active heartbeat", check=False).stdout.strip() != "active"
    # Nor does starting the service, as a boot would (the drop-in's condition).
    pair.sh("lb2", "systemctl restart heartbeat", check=False)
    assert pair.sh("lb2", "systemctl is-active heartbeat", check=False).stdout.strip() != "active"
    assert pair.holds_vip("lb1") and not pair.holds_vip("lb2")
    pair.sh("lb2", "lbctl cluster join")
    deadline = time.monotonic() + 90
    while pair.status("lb2").get("state") != "passive":
        assert time.monotonic() < deadline, pair.status("lb2")
        time.sleep(2)
    assert pair.holds_vip("lb1") and not pair.holds_vip("lb2")


def test_unpair_leaves_two_working_single_appliances(pair: Pair, tmp_path: Path) -> None:
    result = pair.sh("lb1", "lbctl cluster unpair")
    assert "lb2 left the pair and dropped its services" in result.stdout
    for name in ("lb1", "lb2"):
        assert "not paired" in pair.sh(name, "lbctl cluster status", check=False).stderr
        assert pair.sh(name, "systemctl is-active heartbeat", check=False).stdout.strip() != "active"
    one = json.loads(pair.sh("lb1", "lbctl status --json").stdout)
    two = json.loads(pair.sh("lb2", "lbctl status --json").stdout)
    assert one["healthy"] and [s["name"] for s in one["services"]] == ["DICOM"]
    assert two["healthy"] and two["services"] == []
    assert pair.holds_vip("lb1") and not pair.holds_vip("lb2")
    pair.store(tmp_path)  # the VIP still serves, from lb1 alone
