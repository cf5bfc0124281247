"""lbctl validate on malformed site files: each problem is reported as exactly one line,
'error: <field.path>: <reason> (line N)', through the real command line, with exit status 1
and never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import ROOT
from tests.lbctl.lbctl_cli import run_lbctl

BASE = """\
preset: pacs
snat_address: 192.168.85.4
services:
  DICOM:
    vip: 192.168.85.5
    servers:
      - {label: Server1, address: 10.0.52.10}
      - {label: Server2, address: 10.0.52.11}
"""


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new)


def add_service(text: str) -> str:
    return BASE + text


CASES: list[tuple[str, str, list[str]]] = [
    (
        "bad VIP",
        edit("vip: 192.168.85.5", "vip: 192.168.85.256"),
        ["error: services.DICOM.vip: '192.168.85.256' is not an IPv4 or IPv6 address (line 5)"],
    ),
    (
        "bad SNAT address",
        edit("snat_address: 192.168.85.4", "snat_address: 192.168.85"),
        ["error: snat_address: '192.168.85' is not an IPv4 or IPv6 address (line 2)"],
    ),
    (
        "host name for a server",
        edit("address: 10.0.52.11", "address: pacs2.example.org"),
        ["error: services.DICOM.servers[1].address: 'pacs2.example.org' is not an IPv4 or IPv6 address (line 8)"],
    ),
    (
        "VIP with a prefix length",
        edit("vip: 192.168.85.5", "vip: 192.168.85.5/24"),
        ["error: services.DICOM.vip: '192.168.85.5/24': give a plain address, without a prefix length (line 5)"],
    ),
    (
        "loopback VIP",
        edit("vip: 192.168.85.5", "vip: 127.0.0.5"),
        ["error: services.DICOM.vip: 127.0.0.5 is a loopback address, which cannot be a VIP (line 5)"],
    ),
    (
        "IP address as a number",
        edit("vip: 192.168.85.5", "vip: 3232257285"),
        [
            "error: services.DICOM.vip: must be an IP address written as text (e.g. 192.168.85.5), not"
            " 3232257285 (int) (line 5)"
        ],
    ),
    (
        "two services on one VIP:port",
        add_service(
            "  DICOM-Secure:\n    vip: 192.168.85.5\n    port: 104\n    servers: [{label: S1, address: 10.0.52.10}]\n"
        ),
        [
            "error: services.DICOM-Secure.port: 192.168.85.5:104 is already the address of services.DICOM; "
            "each virtual service needs its own VIP:port (line 11)"
        ],
    ),
    (
        "unknown service",
        add_service("  PACS:\n    vip: 192.168.85.9\n"),
        [
            "error: services.PACS: unknown service (the pacs preset has DICOM, DICOM-Secure, DMWL, DMWL-Secure, SQL, "
            "LDAP, LDAP-Secure, QRSCP, QRSCP-Secure) (line 10)"
        ],
    ),
    (
        "unknown check",
        edit("    vip: 192.168.85.5\n", "    vip: 192.168.85.5\n    check: http\n"),
        [
            "error: services.DICOM.check: 'http' is not a health check (expected one of connect, ping, mssql,"
            " dicom-echo, ldap) (line 6)"
        ],
    ),
    (
        "unknown preset",
        edit("preset: pacs", "preset: ris"),
        ["error: preset: 'ris' is not a known preset (known: pacs) (line 1)"],
    ),
    (
        "port 0",
        edit("    vip: 192.168.85.5\n", "    vip: 192.168.85.5\n    port: 0\n"),
        ["error: services.DICOM.port: 0 is out of range (1 to 65535) (line 6)"],
    ),
    (
        "server port out of range",
        edit("address: 10.0.52.11}", "address: 10.0.52.11, port: 70000}"),
        ["error: services.DICOM.servers[1].port: 70000 is out of range (1 to 65535) (line 8)"],
    ),
    (
        "no servers",
        BASE.split("    servers:")[0] + "    servers: []\n",
        ["error: services.DICOM.servers: lists nothing; a service needs at least one real server (line 6)"],
    ),
    (
        "servers missing",
        BASE.split("    servers:")[0],
        ["error: services.DICOM.servers: missing: The real servers (at least one). (line 5)"],
    ),
    (
        "duplicate labels",
        edit("label: Server2", "label: Server1"),
        ["error: services.DICOM.servers[1].label: 'Server1' is already the label of servers[0] (line 8)"],
    ),
    (
        "duplicate server address and port",
        edit("address: 10.0.52.11", "address: 10.0.52.10"),
        ["error: services.DICOM.servers[1].address: 10.0.52.10:104 is already servers[0] (line 8)"],
    ),
    (
        "port as text",
        edit("    vip: 192.168.85.5\n", "    vip: 192.168.85.5\n    port: '104'\n"),
        ["error: services.DICOM.port: must be a whole number from 1 to 65535, not '104' (line 6)"],
    ),
    (
        "port as a fraction",
        edit("    vip: 192.168.85.5\n", "    vip: 192.168.85.5\n    port: 104.5\n"),
        ["error: services.DICOM.port: must be a whole number from 1 to 65535, not 104.5 (float) (line 6)"],
    ),
    (
        "persistence as yes",
        edit("    vip: 192.168.85.5\n", "    vip: 192.168.85.5\n    persistence_minutes: yes\n"),
        [
            "error: services.DICOM.persistence_minutes: 'yes' is a boolean in YAML 1.1 and text in YAML 1.2; "
            "write true or false (line 6)"
        ],
    ),
    (
        "servers as a mapping",
        BASE.split("    servers:")[0] + "    servers: {label: Server1, address: 10.0.52.10}\n",
        ["error: services.DICOM.servers: must be a list of real servers, not a mapping (line 6)"],
    ),
    (
        "services as a list",
        "preset: pacs\nsnat_address: 192.168.85.4\nservices: [DICOM]\n",
        ["error: services: must be a mapping of service names to settings, not a list (line 3)"],
    ),
    (
        "YAML syntax error",
        edit("      - {label: Server2, address: 10.0.52.11}", "      - {label: Server2, address: 10.0.52.11"),
        ["error: line 9: YAML syntax error: did not find expected ',' or '}' (while parsing a flow mapping)"],
    ),
    (
        "YAML indentation error",
        edit("    vip: 192.168.85.5", "    vip: 192.168.85.5\n   port: 104"),
        ["error: line 6: YAML syntax error: did not find expected key (while parsing a block mapping)"],
    ),
    (
        "service given twice",
        add_service("  DICOM:\n    vip: 192.168.85.6\n    servers: [{label: S1, address: 10.0.52.10}]\n"),
        ["error: services.DICOM: given twice (lines 4 and 9)"],
    ),
    (
        "misspelt key",
        edit("snat_address:", "snat_adress:"),
        [
            'error: snat_address: missing: "Set Source Address": connections and health checks to the real servers '
            "leave from this address. The appliance adds it to `interface` (a floating IP on an HA pair). (line 1)",
            "error: snat_adress: unknown key (expected one of preset, snat_address, interface, services, "
            "outbound_snat, ha) (line 2)",
        ],
    ),
    (
        "misspelt server key",
        edit("address: 10.0.52.11}", "adress: 10.0.52.11}"),
        [
            "error: services.DICOM.servers[1].adress: unknown key (expected one of label, address, port, weight,"
            " id) (line 8)",
            "error: services.DICOM.servers[1].address: missing: Address of the real server. (line 8)",
        ],
    ),
    (
        "check for another protocol",
        add_service(
            "  SQL:\n    vip: 192.168.85.8\n    check: dicom-echo\n"
            "    called_ae_title: PACS\n    servers: [{label: S1, address: 10.0.52.30}]\n"
        ),
        [
            "error: services.SQL.check: dicom-echo does not apply to a SQL service (choose connect, ping, mssql)"
            " (line 11)"
        ],
    ),
    (
        "dicom-echo without AE title",
        edit("    vip: 192.168.85.5\n", "    vip: 192.168.85.5\n    check: dicom-echo\n"),
        [
            "error: services.DICOM.called_ae_title: missing: the dicom-echo check associates with the real servers' "
            "AE title, which only the site knows (line 5)"
        ],
    ),
    (
        "AE title too long",
        edit(
            "    vip: 192.168.85.5\n",
            "    vip: 192.168.85.5\n    check: dicom-echo\n    called_ae_title: INTELLISPACE-PACS-1\n",
        ),
        [
            "error: services.DICOM.called_ae_title: 'INTELLISPACE-PACS-1' must be 1 to 16 characters (DICOM"
            " PS3.5 6.2, AE) (line 7)"
        ],
    ),
    (
        "AE title with the connect check",
        edit("    vip: 192.168.85.5\n", "    vip: 192.168.85.5\n    called_ae_title: PACS\n"),
        [
            "error: services.DICOM.called_ae_title: only used by the dicom-echo check, but this service's check is "
            "connect (line 6)"
        ],
    ),
    (
        "check timeout not below interval",
        edit(
            "    vip: 192.168.85.5\n",
            "    vip: 192.168.85.5\n    check_interval_seconds: 3\n    check_timeout_seconds: 3\n",
        ),
        [
            "error: services.DICOM.check_timeout_seconds: the check timeout (3 s) must be shorter than the check "
            "interval (3 s) (line 7)"
        ],
    ),
    (
        "ping check too fast",
        add_service(
            "  DMWL:\n    vip: 192.168.85.5\n    check_interval_seconds: 2\n"
            "    check_timeout_seconds: 1\n    servers: [{label: S1, address: 10.0.52.20}]\n"
        ),
        [
            "error: services.DMWL.check_interval_seconds: the ping check needs an interval above its 2 s deadline "
            "(at least 3) (line 11)"
        ],
    ),
    (
        "IPv6 server behind an IPv4 SNAT address",
        edit("address: 10.0.52.11", "address: '2001:db8::11'"),
        [
            "error: services.DICOM.servers[1].address: IPv6 real server, but snat_address 192.168.85.4 is IPv4; "
            "connections to it leave from the SNAT address (line 8)"
        ],
    ),
    (
        "real server is the VIP",
        edit("address: 10.0.52.11", "address: 192.168.85.5"),
        [
            "error: services.DICOM.servers[1].address: 192.168.85.5 is the VIP of services.DICOM: the appliance "
            "would connect to itself (line 8)"
        ],
    ),
    (
        "unknown interface",
        edit("snat_address: 192.168.85.4\n", "snat_address: 192.168.85.4\ninterface: eth9\n"),
        [
            "error: interface: 'eth9' is not an interface of the appliance (expected one of eth0, eth1, eth2,"
            " eth3) (line 3)"
        ],
    ),
    (
        "one address on two interfaces",
        add_service(
            "  DICOM-Secure:\n    vip: 192.168.85.5\n    interface: eth1\n"
            "    servers: [{label: S1, address: 10.0.52.10}]\n"
        ),
        [
            "error: services.DICOM-Secure.interface: 192.168.85.5 is on eth0 for services.DICOM.vip; one address can "
            "be on one interface only (line 11)"
        ],
    ),
    (
        "label with a space",
        edit("label: Server2", "label: Server 2"),
        [
            "error: services.DICOM.servers[1].label: 'Server 2' is not a label: 1 to 32 letters, digits, '_', "
            "'.' or '-', starting with a letter or digit (line 8)"
        ],
    ),
    (
        "weight too high",
        edit("address: 10.0.52.11}", "address: 10.0.52.11, weight: 300}"),
        ["error: services.DICOM.servers[1].weight: 300 is out of range (0 to 256) (line 8)"],
    ),
    (
        "duplicate explicit server id",
        edit("address: 10.0.52.11}", "address: 10.0.52.11, id: 1}"),
        ["error: services.DICOM.servers[1].id: 1 is already the id of servers[0] (line 8)"],
    ),
    (
        "no services",
        "preset: pacs\nsnat_address: 192.168.85.4\nservices: {}\n",
        ["error: services: lists nothing; a site uses at least one service (line 3)"],
    ),
    (
        "preset and services missing",
        "snat_address: 192.168.85.4\n",
        [
            "error: preset: missing: The service preset the site uses: which services exist and their defaults."
            " (line 1)",
            "error: services: missing: The virtual services the site uses, by preset name (see below). A site"
            " lists only "
            "the services it uses, at least one. (line 1)",
        ],
    ),
    ("empty file", "", ["error: the file is empty; a site file needs at least preset, snat_address and services"]),
    (
        "a list instead of a mapping",
        "- preset: pacs\n",
        ["error: line 1: must be a mapping of site keys (preset, snat_address, services, ...), not a list"],
    ),
    (
        "several problems at once",
        edit("vip: 192.168.85.5", "vip: 192.168.85.256").replace("label: Server2", "label: Server1"),
        [
            "error: services.DICOM.vip: '192.168.85.256' is not an IPv4 or IPv6 address (line 5)",
            "error: services.DICOM.servers[1].label: 'Server1' is already the label of servers[0] (line 8)",
        ],
    ),
]


@pytest.mark.parametrize("name, text, expected", CASES, ids=[c[0] for c in CASES])
def test_malformed_site_is_rejected_with_field_and_reason(
    name: str, text: str, expected: list[str], tmp_path: Path
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(text)
    result = run_lbctl("validate", str(site))
    assert result.returncode == 1, result.stdout
    assert result.stderr.splitlines() == expected
    assert result.stdout == ""


def test_not_utf8(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_bytes(BASE.encode() + b"# caf\xe9\n")
    result = run_lbctl("validate", str(site))
    assert (result.returncode, result.stderr) == (1, "error: line 9: not UTF-8 text\n")


def test_missing_file(tmp_path: Path) -> None:
    result = run_lbctl("validate", str(tmp_path / "nope.yaml"))
    assert (result.returncode, result.stderr) == (
        1,
        f"error: {tmp_path / 'nope.yaml'}: cannot read: No such file or directory\n",
    )


def test_valid_site(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(BASE)
    result = run_lbctl("validate", str(site))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{site}: valid; preset pacs, 1 service(s): DICOM\n"


def test_example_site_is_valid() -> None:
    example = ROOT / "examples" / "site.yaml"
    result = run_lbctl("validate", str(example))
    assert result.returncode == 0, result.stderr
    assert "9 service(s)" in result.stdout


def test_provisioning_takes_the_first_error_as_its_reason(tmp_path: Path) -> None:
    """The lead's provisioning calls 'python3 -m lbctl validate' and reports the first error."""
    from lbctl.boot.provision import validate_site
    from lbctl.inputs import InputInvalid

    with pytest.raises(InputInvalid, match=r"^services\.DICOM\.vip: '1\.2\.3' is not an IPv4 or IPv6 address"):
        validate_site(edit("vip: 192.168.85.5", "vip: 1.2.3"), {})
    validate_site(BASE, {})
