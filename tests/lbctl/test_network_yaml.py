"""network.yaml: the same engine and messages on the command line (lbctl validate --kind network)
as at first boot, and the networkd files it renders."""

from __future__ import annotations

from pathlib import Path

import pytest

from lbctl.boot.network import NETWORK_KIND, render_network
from lbctl.inputs import InputInvalid
from tests.lbctl.lbctl_cli import run_lbctl

GOOD = """\
hostname: lb1
interfaces:
  eth0: {address: 192.168.85.2/24, gateway: 192.168.85.254}
  eth1: {dhcp: true, mtu: 1500}
dns: [192.168.85.10]
ntp: [ntp.hospital.example, 192.168.85.11]
"""


def test_a_valid_file_renders_one_networkd_file_per_adapter() -> None:
    files = render_network(NETWORK_KIND.parse_text(GOOD))
    assert sorted(files) == [f"10-lb-eth{n}.network" for n in range(4)]
    eth0 = files["10-lb-eth0.network"]
    for line in (
        "Name=eth0",
        "Address=192.168.85.2/24",
        "Gateway=192.168.85.254",
        "DNS=192.168.85.10",
        "NTP=ntp.hospital.example",
        "NTP=192.168.85.11",
    ):
        assert line in eth0.splitlines()
    assert "DHCP=ipv4" in files["10-lb-eth1.network"] and "MTUBytes=1500" in files["10-lb-eth1.network"]


def test_an_empty_file_means_eth0_by_dhcp() -> None:
    with pytest.raises(InputInvalid):
        NETWORK_KIND.parse_text("")
    assert NETWORK_KIND.parse_text("hostname: lb1\n").interfaces["eth0"].dhcp is True


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "interfaces: {eth7: {dhcp: true}}\n",
            "interfaces.eth7: 'eth7' is not an interface of the appliance "
            "(expected one of eth0, eth1, eth2, eth3) (line 1)",
        ),
        (
            "interfaces: {eth0: {address: 192.168.85.2}}\n",
            "interfaces.eth0.address: '192.168.85.2' needs a prefix length, e.g. 192.168.85.2/24 (line 1)",
        ),
        ("interfaces: {eth0: {addresses: 5}}\n", "interfaces.eth0.addresses: must be a list, not 5 (int) (line 1)"),
        (
            "interfaces: {eth0: {addresses: ~}}\n",
            "interfaces.eth0.addresses: must be a list, not nothing (null) (line 1)",
        ),
        ("interfaces: {eth0: {}}\n", "interfaces.eth0: needs 'dhcp: true' or at least one address (line 1)"),
        (
            "interfaces: {eth0: {dhcp: yes}}\n",
            "interfaces.eth0.dhcp: 'yes' is a boolean in YAML 1.1 and text in YAML 1.2; write true or false (line 1)",
        ),
        ("interfaces:\n  eth0: {dhcp: true}\n  eth0: {dhcp: false}\n", "interfaces.eth0: given twice (lines 2 and 3)"),
        ("hostname: lb_1\n", "hostname: 'lb_1' is not a host name of 1 to 63 letters, digits and '-' (line 1)"),
    ],
)
def test_a_bad_file_is_refused_with_field_reason_and_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "network.yaml"
    path.write_text(text)
    result = run_lbctl("validate", "--kind", "network", str(path))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [f"error: {expected}"]


def test_the_valid_file_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "network.yaml"
    path.write_text(GOOD)
    result = run_lbctl("validate", "--kind", "network", str(path))
    assert (result.returncode, result.stdout) == (0, f"{path}: valid network input\n")
