"""The firewall in the lab's appliance namespace, loaded by lbctl there with the kernel's nftables
(the appliance's own nft 1.1 once the image was built, else the host's): what passes, what is
dropped and counted, management lockdown, the HA peer's ports, refused rule files that change
nothing, commit-confirm, outbound SNAT at a real receiver, and TPROXY transparency."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.lbctl.test_cluster import HOST_KEY
from tests.netns.appliance import HAPROXY_VERSION, NFT, Appliance
from tests.netns.backends import Backends
from tests.netns.netlab import (
    CLIENT_ADDRESSES,
    LB_CLIENT_SIDE,
    SERVER_ADDRESSES,
    SNAT,
    VIP_DATA,
    VIP_DICOM,
    Lab,
    wait_until,
)
from tests.netns.sites import full_site

# A listener standing in for the appliance's own services in its namespace (sshd on 22, the
# peers port 7778): the firewall decides who reaches them.
LISTENER = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
while True:
    c, _ = s.accept(); c.sendall(b'hello\\n'); c.close()
"""
CONNECT = """
import socket, sys
s = socket.socket(); s.settimeout(float(sys.argv[4]))
s.bind((sys.argv[1], 0))
try:
    s.connect((sys.argv[2], int(sys.argv[3])))
except OSError as e:
    print(type(e).__name__); sys.exit()
s.settimeout(0.5)
try:
    print(s.recv(16).decode().strip() or 'connected')
except OSError:
    print('connected')
"""


def connect(lab: Lab, role: str, source: str, host: str, port: int, timeout: float = 2) -> str:
    """'hello' (or 'connected') if a connection from `source` got through, else the error's name."""
    return lab.exec(role, [sys.executable, "-c", CONNECT, source, host, str(port), str(timeout)]).stdout.strip()


@pytest.fixture
def firewalled(lab: Lab, backends: Backends) -> Iterator[Appliance]:
    """The full site applied inside the appliance namespace, its firewall loaded, HAProxy running."""
    appliance = Appliance(lab, firewall=True)
    try:
        appliance.apply(full_site())
        appliance.start()
        yield appliance
    finally:
        appliance.close()
        lab.sync_addresses(Path("/nonexistent"))


def listen(lab: Lab, port: int) -> None:
    """A listener on the appliance's own address (HAProxy's local peer holds 127.0.0.1:7778)."""
    lab.spawn("lb", f"listener-{port}", [sys.executable, "-c", LISTENER, LB_CLIENT_SIDE, str(port)])
    lab.wait_port("lb", f"{LB_CLIENT_SIDE}:{port}", port)


def ruleset(lab: Lab) -> str:
    return lab.exec("lb", [NFT, "-s", "list", "ruleset"]).stdout  # -s: without the counters' state


def counters(appliance: Appliance) -> dict[str, int]:
    groups = json.loads(appliance.lbctl("firewall", "status", "--json").stdout)["groups"]
    return {f"{g['chain']}/{g['group']}": g["packets"] for g in groups}


def test_vip_ports_pass_and_everything_else_is_dropped_and_counted(firewalled: Appliance, lab: Lab) -> None:
    source = CLIENT_ADDRESSES[0]
    assert connect(lab, "cl", source, VIP_DATA, 3890) == "connected"  # LDAP, a VIP port
    before = counters(firewalled)
    assert connect(lab, "cl", source, LB_CLIENT_SIDE, 4242, timeout=1) == "TimeoutError"  # dropped, not refused
    assert connect(lab, "cl", source, VIP_DICOM, 3890, timeout=1) == "TimeoutError"  # LDAP's port, DICOM's VIP
    after = counters(firewalled)
    assert after["input/dropped"] >= before["input/dropped"] + 2
    assert after["input/LDAP"] >= 1


def test_management_follows_the_lockdown(firewalled: Appliance, lab: Lab) -> None:
    listen(lab, 22)
    outside, inside = CLIENT_ADDRESSES[0], CLIENT_ADDRESSES[10]  # .10 and .20
    assert connect(lab, "cl", outside, LB_CLIENT_SIDE, 22) == "hello"  # no lockdown: from anywhere
    done = firewalled.lbctl("firewall", "lockdown", "--network", "10.77.1.16/28", "--confirm", "60")
    assert "reverts in 60 s" in done.stdout
    firewalled.lbctl("firewall", "confirm")
    assert connect(lab, "cl", inside, LB_CLIENT_SIDE, 22) == "hello"
    assert connect(lab, "cl", outside, LB_CLIENT_SIDE, 22, timeout=1) == "TimeoutError"


def test_a_lockdown_that_cuts_off_this_session_is_refused(firewalled: Appliance) -> None:
    refused = firewalled.lbctl(
        "firewall",
        "lockdown",
        "--network",
        "10.99.0.0/16",
        check=False,
        env={"SSH_CONNECTION": f"{CLIENT_ADDRESSES[0]} 50000 {LB_CLIENT_SIDE} 22"},
    )
    assert refused.returncode == 1
    assert "would cut it off" in refused.stderr


def test_the_peer_ports_answer_the_peer_only(firewalled: Appliance, lab: Lab) -> None:
    peer = CLIENT_ADDRESSES[15]
    cluster = {
        "role": "primary",
        "node": {"name": "lb1", "addresses": [LB_CLIENT_SIDE]},
        "peer": {"name": "lb2", "addresses": [peer], "host_key": HOST_KEY},
        "paths": [{"interface": "eth0", "peer": peer}],
        "heartbeat_key": "0" * 64,
    }
    (firewalled.data_dir / "cluster").mkdir(parents=True, exist_ok=True)
    (firewalled.data_dir / "cluster" / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    firewalled.lbctl("firewall", "apply")
    listen(lab, 7778)
    assert connect(lab, "cl", peer, LB_CLIENT_SIDE, 7778) == "hello"
    assert connect(lab, "cl", CLIENT_ADDRESSES[0], LB_CLIENT_SIDE, 7778, timeout=1) == "TimeoutError"


@pytest.mark.parametrize(
    "rules, reason",
    [
        ("chain input {\n    tcp dport 161 acept\n}\n", "site-rules.nft line 2: syntax error"),
        ("chain input {\n    jump does_not_exist\n}\n", "site-rules.nft line 2: Could not process rule"),
        ("table inet other { }\n", "'table' is not allowed"),
    ],
    ids=["syntax", "kernel-side", "outside-the-table"],
)
def test_a_broken_rules_file_changes_nothing(
    firewalled: Appliance, lab: Lab, tmp_path: Path, rules: str, reason: str
) -> None:
    before = ruleset(lab)
    path = tmp_path / "site-rules.nft"
    path.write_text(rules)
    refused = firewalled.lbctl("firewall", "rules", str(path), check=False)
    assert refused.returncode == 1 and reason in refused.stderr, refused.stderr
    assert ruleset(lab) == before
    assert not (firewalled.data_dir / "firewall" / "site-rules.nft").exists()


def test_an_unconfirmed_change_reverts_by_itself(firewalled: Appliance, lab: Lab) -> None:
    before = ruleset(lab)
    firewalled.lbctl("firewall", "lockdown", "--network", "10.77.1.16/28", "--confirm", "10")
    assert ruleset(lab) != before
    wait_until(lambda: ruleset(lab) == before, 20, "the firewall to revert by itself")
    assert json.loads(firewalled.lbctl("firewall", "status", "--json").stdout)["pending_confirmation"] is False


def test_outbound_snat_for_the_listed_servers_and_ports_only(lab: Lab, backends: Backends) -> None:
    site = full_site()
    site["outbound_snat"] = [{"sources": [SERVER_ADDRESSES["s1"]], "ports": [104, 11112]}]
    appliance = Appliance(lab, firewall=True)
    receiver = CLIENT_ADDRESSES[5]
    lab.spawn(
        "cl",
        "receiver-104",
        [
            sys.executable,
            "-c",
            LISTENER.replace("c.sendall(b'hello\\n')", "c.sendall(str(_[0]).encode() + b'\\n')"),
            receiver,
            "104",
        ],
    )
    lab.spawn("cl", "receiver-4242", [sys.executable, "-c", LISTENER, receiver, "4242"])
    try:
        appliance.apply(site)
        lab.wait_port("cl", receiver, 104)
        assert connect(lab, "s1", SERVER_ADDRESSES["s1"], receiver, 104) == SNAT  # the receiver saw the SNAT address
        assert connect(lab, "s1", SERVER_ADDRESSES["s1"], receiver, 4242, timeout=1) == "TimeoutError"  # not listed
        assert connect(lab, "s2", SERVER_ADDRESSES["s2"], receiver, 104, timeout=1) == "TimeoutError"  # not listed
    finally:
        appliance.close()
        lab.sync_addresses(Path("/nonexistent"))


@pytest.mark.skipif(
    not HAPROXY_VERSION.startswith("3."),
    reason=f"TPROXY as non-root needs HAProxy 3.0's "
    f"'setcap'; the suite runs HAProxy {HAPROXY_VERSION} (build the image for the appliance's 3.0)",
)
def test_a_transparent_service_shows_the_client_address_to_the_real_server(lab: Lab, backends: Backends) -> None:
    site = full_site()
    site["services"]["LDAP"]["transparent"] = True
    appliance = Appliance(lab, firewall=True)
    try:
        appliance.apply(site)
        appliance.start()
        appliance.wait_server_state("LDAP", "Server1", "UP")
        client = CLIENT_ADDRESSES[3]
        bind = (
            "import socket, sys; s = socket.socket(); s.settimeout(5); s.bind((sys.argv[1], 0)); "
            "s.connect((sys.argv[2], 3890)); s.sendall(bytes.fromhex('300c020101600702010304008000')); "
            "print(s.recv(64).hex())"
        )
        answer = lab.exec("cl", [sys.executable, "-c", bind, client, VIP_DATA]).stdout.strip()
        assert answer.startswith("300c02010161070a0100"), answer  # the bind reply came back through the appliance
        logs = backends.log("s1", "ldap") + backends.log("s2", "ldap")
        assert f"ACCEPT from IP={client}:" in logs, "the real server did not see the client's own address"
    finally:
        appliance.close()
        lab.sync_addresses(Path("/nonexistent"))
