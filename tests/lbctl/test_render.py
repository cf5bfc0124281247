"""Rendering: what the generated files say, that HAProxy accepts them, and that they are
deterministic."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from builder import ROOT
from lbctl.appliance import CHECK_SCRIPTS_DIR as CHECKS_DIR
from lbctl.config.render import Peer, RenderSettings, render
from lbctl.site.healthchecks import a_associate_rq
from lbctl.site.model import empty_site
from lbctl.site.schema import SITE_KIND
from tests.helpers import haproxy_binaries
from tests.lbctl.lbctl_cli import run_lbctl

EXAMPLE = ROOT / "examples" / "site.yaml"
SETTINGS = RenderSettings(
    version="test",
    admin_socket=Path("/run/haproxy/admin.sock"),
    server_state_file=Path("/var/lib/lbappliance/lbctl/server-state"),
)


def rendered(text: str) -> dict[str, str]:
    return render(parse_site(text), SETTINGS)


def parse_site(text: str):
    return SITE_KIND.parse_text(text)


def section(config: str, name: str) -> str:
    """The lines of one 'listen' section."""
    match = re.search(rf"^listen {re.escape(name)}\n(.*?)(?=^#---|\Z)", config, re.S | re.M)
    assert match, f"no listen {name}"
    return match.group(1)


def haproxy_check(config: Path, binary: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60)


V6_SITE = """\
preset: pacs
snat_address: 2001:db8:85::4
services:
  DICOM-Secure:
    vip: 2001:db8:85::5
    check: dicom-echo
    called_ae_title: ISPACS
    servers: [{label: S1, address: "2001:db8:52::10"}, {label: S2, address: "2001:db8:52::11"}]
  LDAP-Secure:
    vip: 2001:db8:85::8
    check: ldap
    servers: [{label: S1, address: "2001:db8:52::40"}]
"""

TWO_INTERFACES = """\
preset: pacs
snat_address: 192.168.85.4
services:
  DICOM:
    vip: 192.168.85.5
    servers: [{label: S1, address: 10.0.52.10}]
  SQL:
    vip: 10.20.0.8
    interface: eth1
    servers: [{label: S1, address: 10.0.52.30}]
"""


@pytest.mark.parametrize("binary", haproxy_binaries())
@pytest.mark.parametrize("site", ["example", "empty", "ipv6"])
def test_haproxy_accepts_the_generated_configuration(site: str, binary: str, tmp_path: Path) -> None:
    model = {
        "example": lambda: parse_site(EXAMPLE.read_text()),
        "empty": empty_site,
        "ipv6": lambda: parse_site(V6_SITE),
    }[site]()
    config = tmp_path / "haproxy.cfg"
    config.write_text(render(model, SETTINGS)["haproxy.cfg"])
    result = haproxy_check(config, binary)
    assert result.returncode == 0, result.stdout + result.stderr
    # Only the missing server-state file may be warned about (lbctl apply creates it).
    warnings = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "WARNING" in line and "server state file" not in line
    ]
    assert warnings == []


def test_every_generated_file_comes_from_the_renderer() -> None:
    files = rendered(EXAMPLE.read_text())
    assert sorted(files) == [
        "check-ping",
        "floating-ips",
        "haproxy.cfg",
        "networkd/10-lb-eth0.network.d/50-lbctl-vips.conf",
        "passive-ips",
        "services.json",
    ]


def test_render_command_writes_the_files_and_is_deterministic(tmp_path: Path) -> None:
    outputs = []
    for n, seed in enumerate(("1", "2")):
        out = tmp_path / f"out{n}"
        result = run_lbctl(
            "render",
            str(EXAMPLE),
            "--out",
            str(out),
            env={
                "PYTHONHASHSEED": seed,
                "LBCTL_STATE_DIR": "/var/lib/lbappliance/lbctl",
                "LBCTL_ADMIN_SOCKET": "/run/haproxy/admin.sock",
                "LBCTL_OS_RELEASE": "/nonexistent",
            },
        )
        assert result.returncode == 0, result.stderr
        outputs.append({str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert outputs[0] == outputs[1]
    assert set(outputs[0]) == {
        "check-ping",
        "floating-ips",
        "haproxy.cfg",
        "services.json",
        "passive-ips",
        "networkd/10-lb-eth0.network.d/50-lbctl-vips.conf",
    }
    assert os.access(tmp_path / "out0" / "check-ping", os.X_OK)


def test_site_file_order_does_not_change_the_output() -> None:
    reordered = (
        TWO_INTERFACES.replace("  DICOM:\n    vip: 192.168.85.5\n    servers: [{label: S1, address: 10.0.52.10}]\n", "")
        + "  DICOM:\n    vip: 192.168.85.5\n    servers: [{label: S1, address: 10.0.52.10}]\n"
    )
    assert rendered(reordered) == rendered(TWO_INTERFACES)


def test_every_service_is_a_tcp_proxy_with_persistence_snat_and_fixed_server_ids() -> None:
    config = rendered(EXAMPLE.read_text())["haproxy.cfg"]
    assert re.search(r"^defaults\n(?:.*\n)*?    mode tcp$", config, re.M)
    expected_minutes = {
        "DICOM": 30,
        "DICOM-Secure": 30,
        "DMWL": 60,
        "DMWL-Secure": 60,
        "SQL": 2,
        "LDAP": 2,
        "LDAP-Secure": 2,
        "QRSCP": 2,
        "QRSCP-Secure": 2,
    }
    for name, minutes in expected_minutes.items():
        body = section(config, name)
        assert f"stick-table type ip size 100k expire {minutes}m srvkey name peers lbpeers\n" in body
        assert "    stick on src\n" in body
        assert "    source 192.168.85.4\n" in body
        servers = re.findall(r"^    server (\S+) (\S+) id (\d+) ", body, re.M)
        assert [s[0] for s in servers] == ["Server1", "Server2"] and [s[2] for s in servers] == ["1", "2"]
    # TLS passes through: nothing terminates it.
    assert not re.search(r"^\s*bind .* ssl", config, re.M)


def test_peers_section_holds_the_local_peer_before_any_table() -> None:
    config = rendered(EXAMPLE.read_text())["haproxy.cfg"]
    assert "    localpeer local\n" in config
    assert re.search(r"^peers lbpeers\n    peer local 127\.0\.0\.1:7778$", config, re.M)
    assert config.index("localpeer local") < config.index("peers lbpeers") < config.index("stick-table")


def test_ping_services_use_the_external_script_without_timeout_check() -> None:
    config = rendered(EXAMPLE.read_text())["haproxy.cfg"]
    for name in ("DMWL", "DMWL-Secure", "QRSCP", "QRSCP-Secure"):
        body = section(config, name)
        assert "option external-check" in body and 'external-check path "/usr/bin:/bin"' in body
        assert f"external-check command {SETTINGS.current_dir / 'check-ping'}" in body
        # 'timeout check' would cap the script at min(inter, timeout connect)
        assert not re.search(r"^\s*timeout check", body, re.M)
    for name in ("DICOM", "SQL", "LDAP"):
        assert "timeout check 3s" in section(config, name)
    globals_ = config.split("\ndefaults\n")[0]
    assert "    external-check\n" in globals_ and "    insecure-fork-wanted\n" in globals_
    assert not re.search(r"^\s*chroot", globals_, re.M)  # it would hide the script and ping


def test_without_external_checks_there_is_no_fork_and_a_chroot() -> None:
    config = rendered(TWO_INTERFACES)["haproxy.cfg"]
    globals_ = config.split("\ndefaults\n")[0]
    assert "insecure-fork-wanted" not in globals_ and "external-check" not in globals_
    assert "    chroot /var/lib/haproxy\n" in globals_


def test_ping_check_script_is_executable_and_in_place() -> None:
    script = CHECKS_DIR / "ping"
    assert script.is_file() and os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/bin/sh\n")


def test_mssql_check_is_the_tds_prelogin_probe() -> None:
    body = section(rendered(EXAMPLE.read_text())["haproxy.cfg"], "SQL")
    assert "option tcp-check" in body
    assert (
        "tcp-check send-binary 1201002f0000010000001a00060100200001020021000103002200040400260001ff"
        "09000000000002000000000000"
    ) in body
    assert "tcp-check expect rbinary ^0401" in body


def test_dicom_echo_check_carries_the_sites_ae_titles() -> None:
    site = TWO_INTERFACES.replace(
        "    vip: 192.168.85.5\n", "    vip: 192.168.85.5\n    check: dicom-echo\n    called_ae_title: ISPACS\n"
    )
    body = section(rendered(site)["haproxy.cfg"], "DICOM")
    assert f"tcp-check send-binary {a_associate_rq('ISPACS', 'LBAPPLIANCE').hex()} " in body
    assert "tcp-check connect linger" in body
    assert re.findall(r"tcp-check expect r?binary (\S+)", body) == ["^02", "00000009020000000000", "^06"]


def test_protocol_checks_on_tls_services_speak_tls() -> None:
    config = rendered(V6_SITE)["haproxy.cfg"]
    dicom = section(config, "DICOM-Secure")
    assert "tcp-check connect ssl linger" in dicom and "check check-ssl verify none" in dicom
    ldaps = section(config, "LDAP-Secure")
    assert "check check-ssl verify none" in ldaps and "tcp-check connect ssl linger" in ldaps
    assert "tcp-check send-binary 300c020101600702010304008000" in ldaps  # the anonymous bind


def test_ipv6_addresses_are_bracketed() -> None:
    config = rendered(V6_SITE)["haproxy.cfg"]
    assert "    bind [2001:db8:85::5]:2762\n" in config
    assert "    source [2001:db8:85::4]\n" in config
    assert "    server S1 [2001:db8:52::10]:2762 id 1 " in config
    assert "stick-table type ipv6 " in config


def test_networkd_dropin_lists_vips_and_snat_once_per_interface() -> None:
    files = rendered(TWO_INTERFACES)
    eth0 = files["networkd/10-lb-eth0.network.d/50-lbctl-vips.conf"]
    eth1 = files["networkd/10-lb-eth1.network.d/50-lbctl-vips.conf"]
    assert re.findall(r"^Address=(.*)$", eth0, re.M) == ["192.168.85.4/32", "192.168.85.5/32"]
    assert re.findall(r"^Address=(.*)$", eth1, re.M) == ["10.20.0.8/32"]
    assert "[Network]\n" in eth0
    example = rendered(EXAMPLE.read_text())["networkd/10-lb-eth0.network.d/50-lbctl-vips.conf"]
    assert re.findall(r"^Address=(.*)$", example, re.M) == ["192.168.85.4/32", "192.168.85.5/32", "192.168.85.8/32"]
    assert re.findall(
        r"^Address=(.*)$", rendered(V6_SITE)["networkd/10-lb-eth0.network.d/50-lbctl-vips.conf"], re.M
    ) == ["2001:db8:85::4/128", "2001:db8:85::5/128", "2001:db8:85::8/128"]


def test_empty_site_has_no_services_and_no_addresses() -> None:
    files = render(empty_site(), SETTINGS)
    assert sorted(files) == ["floating-ips", "haproxy.cfg", "passive-ips", "services.json"]
    assert "address replace" not in files["floating-ips"]
    assert "\nlisten " not in files["haproxy.cfg"]
    assert "peers lbpeers" in files["haproxy.cfg"] and "stats socket /run/haproxy/admin.sock" in files["haproxy.cfg"]
    assert json.loads(files["services.json"]) == {"preset": "pacs", "snat_address": None, "services": []}


def test_manifest_describes_the_applied_site() -> None:
    manifest = json.loads(rendered(TWO_INTERFACES)["services.json"])
    assert manifest["snat_address"] == "192.168.85.4"
    assert [s["name"] for s in manifest["services"]] == ["DICOM", "SQL"]
    sql = manifest["services"][1]
    assert (sql["vip"], sql["port"], sql["interface"], sql["check"], sql["persistence_minutes"]) == (
        "10.20.0.8",
        1433,
        "eth1",
        "mssql",
        2,
    )
    assert sql["servers"] == [{"label": "S1", "address": "10.0.52.30", "port": 1433, "id": 1}]


def test_site_overrides_reach_the_configuration() -> None:
    site = TWO_INTERFACES.replace(
        "    vip: 10.20.0.8\n",
        "    vip: 10.20.0.8\n    port: 11433\n    persistence_minutes: 15\n"
        "    check_interval_seconds: 10\n    check_timeout_seconds: 4\n    rise: 5\n"
        "    fall: 6\n    idle_timeout_minutes: 90\n",
    )
    site = site.replace(
        "{label: S1, address: 10.0.52.30}", "{label: S1, address: 10.0.52.30, port: 1533, weight: 7, id: 42}"
    )
    body = section(rendered(site)["haproxy.cfg"], "SQL")
    for line in (
        "bind 10.20.0.8:11433",
        "expire 15m",
        "timeout check 4s",
        "default-server inter 10s rise 5 fall 6",
        "timeout client 90m",
        "timeout server 90m",
        "server S1 10.0.52.30:1533 id 42 weight 7 check",
    ):
        assert line in body, line


def test_a_paired_node_floats_its_addresses_and_lists_both_peers() -> None:
    """On an HA pair no networkd drop-in holds the VIPs: heartbeat's resource script adds the
    floating-ips list (an ip -batch file) on the active node; the peers section names both nodes
    by their own addresses, this node as the local peer."""
    settings = dataclasses.replace(
        SETTINGS,
        clustered=True,
        local_peer="lb1",
        peers=(Peer("lb1", "192.168.85.2:7778"), Peer("lb2", "192.168.85.3:7778")),
    )
    files = render(SITE_KIND.parse_text(EXAMPLE.read_text()), settings)
    assert not [name for name in files if name.startswith("networkd/")]
    assert re.findall(r"^address replace (\S+) dev (\S+)$", files["floating-ips"], re.M) == [
        ("192.168.85.4/32", "eth0"),
        ("192.168.85.5/32", "eth0"),
        ("192.168.85.8/32", "eth0"),
    ]
    config = files["haproxy.cfg"]
    assert "    localpeer lb1\n" in config
    assert "    peer lb1 192.168.85.2:7778\n    peer lb2 192.168.85.3:7778\n" in config
    assert "127.0.0.1:7778" not in config
