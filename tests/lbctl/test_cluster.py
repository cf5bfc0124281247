"""The HA pair's pieces that need no second appliance: the pairing token and its derived key,
heartbeat's generated files, the heartbeat paths between two nodes, cluster.yaml read back by the
engine, and the site's `ha` timing rules. The pair itself is tested with two VMs (tests/image)."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from lbctl.cluster import heartbeat, link
from lbctl.cluster.model import CLUSTER_KIND, ClusterConfig, HeartbeatPath, Node
from lbctl.cluster.pairing import ClusterError, Token, cluster_yaml, heartbeat_paths, own_address_towards
from lbctl.cluster.pairing import _openssh_private as openssh_private
from lbctl.firewall.ruleset import nft_seconds
from lbctl.inputs import InputInvalid
from lbctl.site.model import HASettings
from lbctl.site.schema import SITE_KIND

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def cluster(**changes: object) -> ClusterConfig:
    values: dict = {
        "role": "primary",
        "node": Node("lb1", (ipaddress.ip_address("10.0.0.2"),)),
        "peer": Node("lb2", (ipaddress.ip_address("10.0.0.3"), ipaddress.ip_address("10.9.0.3")), HOST_KEY),
        "paths": (
            HeartbeatPath("eth1", ipaddress.ip_address("10.0.0.3")),
            HeartbeatPath("eth2", ipaddress.ip_address("10.9.0.3")),
        ),
        "heartbeat_key": "ab" * 32,
        "ping_node": ipaddress.ip_address("10.0.0.1"),
    }
    values.update(changes)
    return ClusterConfig(**values)


def test_the_token_round_trips_and_derives_the_same_key_on_both_sides(tmp_path: Path) -> None:
    fingerprint = link.fingerprint(HOST_KEY)[:5]
    token = Token(bytes(range(15)), fingerprint)
    text = token.text()
    assert len(text.split("-")) == 8 and all(len(g) == 4 for g in text.split("-"))
    again = Token.parse(text.lower().replace("-", " "))  # typed by hand: case and separators do not matter
    assert again == token
    public = again.public_key()
    assert public == token.public_key() and public.startswith("ssh-ed25519 ")
    # OpenSSH itself reads the derived private key and gets the same public key.
    key = tmp_path / "key"
    key.write_bytes(openssh_private(token.private_key()))
    key.chmod(0o600)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True)
    assert derived.stdout.split()[:2] == public.split()[:2]
    assert Token(bytes(15), fingerprint).public_key() != public  # another secret, another key


@pytest.mark.parametrize("text", ["", "ABCD-EFGH", "not a token at all!", "AAAA-" * 9 + "AAAA"])
def test_a_malformed_token_is_refused_before_anything_happens(text: str) -> None:
    with pytest.raises(ClusterError, match="not one 'lbctl cluster token' prints"):
        Token.parse(text)


def test_host_key_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    (tmp_path / "k.pub").write_text(HOST_KEY + "\n")
    shown = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "k.pub")], capture_output=True, text=True)
    assert link.fingerprint_text(HOST_KEY) == shown.stdout.split()[1]


def test_ha_cf_carries_the_timing_the_paths_and_the_ping_node() -> None:
    files = heartbeat.render_files(cluster(), HASettings(keepalive_ms=100, deadtime_ms=500), "1.0")
    ha_cf = files["ha.cf"]
    lines = [line for line in ha_cf.splitlines() if line and not line.startswith("#")]
    # udpport before the media lines (ha.cf(5): it applies to the media lines after it)
    assert lines.index("udpport 6694") < lines.index("ucast eth1 10.0.0.3")
    for expected in (
        "keepalive 100ms",
        "warntime 250ms",
        "deadtime 500ms",
        "initdead 10",
        "ucast eth2 10.9.0.3",
        "ping 10.0.0.1",
        "respawn hacluster /usr/libexec/heartbeat/ipfail",
        "auto_failback off",
        "node lb1",
        "node lb2",
        "crm no",
    ):
        assert expected in lines, expected
    assert files["haresources"].splitlines()[-1] == "lb1 lbfloat"
    assert files["authkeys"].splitlines()[-2:] == ["auth 1", f"1 sha1 {'ab' * 32}"]
    # The secondary names the same preferred node, and failback is the site's choice.
    secondary = cluster(role="secondary", node=cluster().peer, peer=Node("lb1", cluster().node.addresses, HOST_KEY))
    other = heartbeat.render_files(secondary, HASettings(failback=True, deadtime_ms=8000), "1.0")
    assert other["haresources"].splitlines()[-1] == "lb1 lbfloat"
    assert "auto_failback on" in other["ha.cf"] and "initdead 16" in other["ha.cf"]
    assert "ping " not in heartbeat.render_files(cluster(ping_node=None), HASettings(), "1.0")["ha.cf"]


def test_install_writes_authkeys_private_and_reports_changes(tmp_path: Path) -> None:
    files = heartbeat.render_files(cluster(), HASettings(), "1.0")
    assert heartbeat.install(files, tmp_path) is True
    assert (tmp_path / "authkeys").stat().st_mode & 0o777 == 0o600
    assert heartbeat.install(files, tmp_path) is False


def test_heartbeat_paths_are_the_shared_subnets() -> None:
    own = {"eth0": ["192.168.1.2/24"], "eth1": ["10.0.0.2/24"], "eth2": ["10.9.0.2/24"]}
    peer = {"eth0": ["192.168.7.3/24"], "eth1": ["10.0.0.3/24"], "eth2": ["10.9.0.3/24"]}
    found = heartbeat_paths(own, peer)
    assert found == [
        HeartbeatPath("eth1", ipaddress.ip_address("10.0.0.3")),
        HeartbeatPath("eth2", ipaddress.ip_address("10.9.0.3")),
    ]
    assert [str(a) for a in own_address_towards(found, own)] == ["10.0.0.2", "10.9.0.2"]
    assert heartbeat_paths(own, {"eth0": ["172.16.0.3/24"]}) == []


def test_cluster_yaml_reads_back_through_the_engine() -> None:
    original = cluster()
    assert CLUSTER_KIND.parse_text(cluster_yaml(original)) == original


def test_a_cluster_yaml_without_a_path_is_refused_with_its_line() -> None:
    paths = "paths:\n- interface: eth1\n  peer: 10.0.0.3\n- interface: eth2\n  peer: 10.9.0.3\n"
    text = cluster_yaml(cluster()).replace(paths, "paths: []\n")
    with pytest.raises(InputInvalid) as err:
        CLUSTER_KIND.parse_text(text)
    assert any(line.startswith("paths: ") and "heartbeat path" in line for line in err.value.lines())


SITE = """\
preset: pacs
snat_address: 10.0.0.11
services:
  DICOM: {vip: 10.0.0.10, servers: [{label: S1, address: 10.1.0.5}]}
"""


def test_site_ha_defaults_and_heartbeats_rule() -> None:
    assert SITE_KIND.parse_text(SITE).ha == HASettings(keepalive_ms=100, deadtime_ms=500, failback=False)
    with pytest.raises(InputInvalid) as err:
        SITE_KIND.parse_text(SITE + "ha: {keepalive_ms: 250, deadtime_ms: 500}\n")
    assert err.value.lines() == [
        "ha.deadtime_ms: must be more than twice keepalive_ms (250 ms): a peer is declared dead only after "
        "missing at least two heartbeats (line 5)"
    ]


def test_nft_durations() -> None:
    assert nft_seconds("59m58s768ms") == pytest.approx(3598.768)
    assert nft_seconds("1h") == 3600 and nft_seconds("2d3s") == 172803


@pytest.mark.parametrize(
    "key",
    [
        HOST_KEY + "\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        HOST_KEY + " comment",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ",
        "ssh-ed25519 AAAA",
        "ssh-ed25519 !!!!",
        'command="sh" ' + HOST_KEY,
        None,
    ],
    ids=["second line", "comment", "rsa", "short blob", "not base64", "options", "not text"],
)
def test_only_exactly_one_ed25519_key_reaches_authorized_keys(tmp_path: Path, key: object) -> None:
    """A peer's key with a newline would add an authorized_keys line without the forced command:
    a root shell for whoever holds a token, or for a compromised peer."""
    target = tmp_path / "authorized_keys"
    with pytest.raises(link.LinkError):
        link.authorize(key, "receive", target)  # type: ignore[arg-type]
    assert not target.exists()
    link.authorize(HOST_KEY, "receive", target)
    assert target.read_text().count("\n") == 1 and target.read_text().startswith('restrict,command="')


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"peer": Node("lb1", (ipaddress.ip_address("10.0.0.3"),), HOST_KEY)}, "peer: is 'lb1', the name of this node"),
        ({"peer": Node("lb2", (ipaddress.ip_address("10.0.0.2"),), HOST_KEY)}, "10.0.0.2 is an address of both"),
        ({"peer": Node("lb2", (ipaddress.ip_address("10.0.0.3"),), HOST_KEY)}, "eth2 -> 10.9.0.3: not one of the peer"),
        (
            {"paths": (HeartbeatPath("eth1", ipaddress.ip_address("10.0.0.3")),) * 2},
            "eth1 has more than one path",
        ),
        (
            {"peer": Node("lb2", (ipaddress.ip_address("10.0.0.3"),), "ssh-ed25519 AAAA")},
            "host_key: the key is not one",
        ),
    ],
    ids=["same names", "shared address", "path to nowhere", "two paths on one interface", "short host key"],
)
def test_an_inconsistent_cluster_yaml_is_refused(change: dict, expected: str) -> None:
    with pytest.raises(InputInvalid) as err:
        CLUSTER_KIND.parse_text(cluster_yaml(cluster(**change)))
    assert any(expected in line for line in err.value.lines()), err.value.lines()
