"""Every kind of input mishandling the hardening issue found, each example with its right value.

The rule for every input: it is refused (exit 1, one 'error: <field path>: <reason> (line N)'
line per problem, no traceback), or it is accepted and every generated file means exactly what
the input says and passes the appliance's own HAProxy (`haproxy -c`, 3.0 once the image was built).
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from lbctl.boot.network import NETWORK_KIND
from lbctl.config.render import RenderSettings, render, write_files
from lbctl.inputs import InputInvalid
from lbctl.inputs.addresses import special
from lbctl.site.healthchecks import a_associate_rq
from lbctl.site.schema import SITE_KIND
from tests.helpers import haproxy_binaries
from tests.lbctl.lbctl_cli import run_lbctl

SETTINGS = RenderSettings(
    version="test",
    admin_socket=Path("/run/haproxy/admin.sock"),
    server_state_file=Path("/var/lib/lbappliance/lbctl/server-state"),
)

SITE = """\
preset: pacs
snat_address: 192.168.85.4
services:
  DICOM:
    vip: 192.168.85.5
    check: dicom-echo
    called_ae_title: ISPACS
    servers:
      - {label: Server1, address: 10.0.52.10}
  SQL:
    vip: 192.168.85.8
    servers:
      - {label: Server1, address: 10.0.52.30}
"""


def errors(text: str, tmp_path: Path, kind: str = "site") -> list[str]:
    """lbctl validate's stderr lines for `text` (exit 1 and nothing on stdout, or the test fails)."""
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text)
    result = run_lbctl("validate", "--kind", kind, str(path))
    assert "Traceback" not in result.stderr, result.stderr
    assert (result.returncode, result.stdout) == (1, ""), (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert all(line.startswith("error: ") for line in lines), lines
    return lines


def haproxy_accepts(text: str, tmp_path: Path) -> str:
    """Render `text` and check haproxy.cfg with every HAProxy there is; returns the config."""
    files = render(SITE_KIND.parse_text(text), SETTINGS)
    write_files(files, tmp_path / "out")
    for binary in haproxy_binaries():
        result = subprocess.run([binary, "-c", "-f", str(tmp_path / "out/haproxy.cfg")], capture_output=True, text=True)
        assert result.returncode == 0, f"{binary}:\n{result.stdout}{result.stderr}"
    return files["haproxy.cfg"]


# --- 1. text reaches generated files unescaped ----------------------------------------------------


@pytest.mark.parametrize("title", ['IS"PACS', "${PACS}", 'A" B "C', "#PACS", "P$A{C}S", "PACS\\", "  PACS  "])
def test_ae_titles_reach_the_check_literally_or_are_refused(title: str, tmp_path: Path) -> None:
    text = SITE.replace("called_ae_title: ISPACS", f"called_ae_title: '{title}'")
    if "\\" in title:
        assert errors(text, tmp_path) == [
            f"error: services.DICOM.called_ae_title: {title!r} may hold only printable ASCII characters other "
            "than backslash (DICOM PS3.5 6.2, AE) (line 7)"
        ]
        return
    config = haproxy_accepts(text, tmp_path)
    # The A-ASSOCIATE-RQ carries exactly the title (space-padded to 16 bytes).
    assert a_associate_rq(title.strip(), "LBAPPLIANCE").hex() in config


@pytest.mark.parametrize(
    "network, field",
    [
        ('ntp: ["pool.ntp.org\\nGateway=192.0.2.66"]', "ntp[0]"),
        ('dns: ["fe80::1%eth0\\nGateway=192.0.2.66"]', "dns[0]"),
        ('interfaces: {eth0: {address: "2001:db8::2/64%eth0\\nGateway=x"}}', "interfaces.eth0.address"),
        ('interfaces: {eth0: {address: 192.0.2.2/24, gateway: "192.0.2.1%eth0"}}', "interfaces.eth0.gateway"),
        ('hostname: "lb1\\nDNS=192.0.2.9"', "hostname"),
    ],
)
def test_network_values_cannot_add_directives(network: str, field: str, tmp_path: Path) -> None:
    lines = errors(network + "\n", tmp_path, "network")
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}: "), lines
    assert "\n" not in lines[0]


# --- 2. null or empty means "delete everything" ----------------------------------------------------


def test_a_bare_services_key_is_refused(tmp_path: Path) -> None:
    assert errors("preset: pacs\nsnat_address: 192.168.85.4\nservices:\n", tmp_path) == [
        "error: services: is empty; a site uses at least one service (line 3)"
    ]


def test_a_bare_servers_key_is_refused(tmp_path: Path) -> None:
    text = SITE.replace("    servers:\n      - {label: Server1, address: 10.0.52.30}\n", "    servers:\n")
    assert errors(text, tmp_path) == [
        "error: services.SQL.servers: is empty; a service needs at least one real server (line 12)"
    ]


def test_removing_a_running_service_is_said_explicitly(tmp_path: Path, lbctl_env: dict) -> None:
    full, dicom_only = tmp_path / "full.yaml", tmp_path / "dicom.yaml"
    full.write_text(SITE)
    dicom_only.write_text(SITE.split("  SQL:")[0])
    assert run_lbctl("apply", str(full), env=lbctl_env).returncode == 0
    refused = run_lbctl("apply", str(dicom_only), env=lbctl_env)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "error: the site file does not have SQL, which the running configuration serves; nothing was changed. "
        "To remove it on purpose: lbctl apply --remove SQL FILE"
    ]
    assert "SQL" in (Path(lbctl_env["LBCTL_STATE_DIR"]) / "current/services.json").read_text()
    wrong = run_lbctl("apply", "--remove", "DICOM", "--remove", "SQL", str(dicom_only), env=lbctl_env)
    assert wrong.stderr == "error: --remove DICOM: the site file still has it\n"
    done = run_lbctl("apply", "--remove", "SQL", str(dicom_only), env=lbctl_env)
    assert done.returncode == 0, done.stderr
    assert "SQL" not in (Path(lbctl_env["LBCTL_STATE_DIR"]) / "current/services.json").read_text()


# --- 3. the appliance as its own real server ---------------------------------------------------------


@pytest.mark.parametrize(
    "server, reason",
    [
        (
            "{label: S1, address: 192.168.85.8, port: 1433}",
            "192.168.85.8 is the VIP of services.SQL: the appliance would connect to itself",
        ),
        (
            "{label: S1, address: 192.168.85.5, port: 4242}",
            "192.168.85.5 is the VIP of services.DICOM: the appliance would connect to itself",
        ),
        (
            "{label: S1, address: 192.168.85.4}",
            "192.168.85.4 is the SNAT address: the appliance would connect to itself",
        ),
        ("{label: S1, address: 127.0.0.1}", "127.0.0.1 is a loopback address, which cannot be a real server"),
        ("{label: S1, address: '::1'}", "::1 is the loopback address, which cannot be a real server"),
    ],
)
def test_a_real_server_that_is_the_appliance_is_refused(server: str, reason: str, tmp_path: Path) -> None:
    text = SITE.replace("      - {label: Server1, address: 10.0.52.10}\n", f"      - {server}\n")
    assert errors(text, tmp_path) == [f"error: services.DICOM.servers[0].address: {reason} (line 9)"]


def test_an_appliance_port_on_its_own_address_is_refused() -> None:
    own = {"own_addresses": NETWORK_KIND.parse_text("interfaces: {eth0: {address: 192.168.85.2/24}}\n").own_addresses()}
    for port, what in ((22, "SSH"), (7778, "persistence-table replication (HAProxy peers)")):
        text = SITE.replace(
            "{label: Server1, address: 10.0.52.10}", f"{{label: S1, address: 192.168.85.2, port: {port}}}"
        )
        with pytest.raises(InputInvalid) as err:
            SITE_KIND.parse_text(text, own)
        assert err.value.lines() == [
            f"services.DICOM.servers[0].address: 192.168.85.2:{port} is the appliance's own {what} port, "
            "not a real server (line 9)"
        ]


@pytest.mark.parametrize(
    "network, problems",
    [
        # 10.0.52.0/24 is on eth1: the real servers can take the appliance as their gateway.
        ("interfaces: {eth0: {address: 192.168.85.2/24}, eth1: {address: 10.0.52.2/24}}\n", []),
        # Behind a router: their replies to the client's own address would not come back.
        (
            "interfaces: {eth0: {address: 192.168.85.2/24, gateway: 192.168.85.1}}\n",
            [
                "services.DICOM.servers[0].address: 10.0.52.10 is on none of the appliance's networks "
                "(network.yaml); a transparent service's real servers must route their replies back through the "
                "appliance, so they must be on one of its networks (line 10)"
            ],
        ),
        # With DHCP the networks are not known here: nothing to check.
        ("interfaces: {eth0: {dhcp: true}}\n", []),
    ],
    ids=["connected", "behind-a-router", "dhcp"],
)
def test_a_transparent_service_needs_its_real_servers_on_a_network_of_the_appliance(
    network: str, problems: list[str]
) -> None:
    from lbctl.boot.provision import site_context

    text = SITE.replace("    check: dicom-echo\n", "    check: dicom-echo\n    transparent: true\n")
    try:
        SITE_KIND.parse_text(text, site_context(network))
        found: list[str] = []
    except InputInvalid as err:
        found = err.lines()
    assert found == problems


# --- 4. VIPs that cannot be bound, or that collide -------------------------------------------------


@pytest.mark.parametrize(
    "vip, port, reason, key",
    [
        ("fe80::5", None, "fe80::5 is a link-local address, which cannot be a VIP", "vip"),
        (
            "::ffff:192.168.85.5",
            None,
            "::ffff:c0a8:5505 is an IPv4-mapped IPv6 address (write the IPv4 address itself), which cannot be a VIP",
            "vip",
        ),
        ("192.168.85.6", 22, "port 22 is the appliance's own (SSH); a virtual service needs another port", "port"),
        (
            "192.168.85.6",
            9443,
            "port 9443 is the appliance's own (the web UI); a virtual service needs another port",
            "port",
        ),
    ],
)
def test_vips_that_cannot_be_bound_are_refused(
    vip: str, port: int | None, reason: str, key: str, tmp_path: Path
) -> None:
    text = SITE.replace("    vip: 192.168.85.8\n", f"    vip: '{vip}'\n" + (f"    port: {port}\n" if port else ""))
    assert errors(text, tmp_path) == [f"error: services.SQL.{key}: {reason} (line {11 if key == 'vip' else 12})"]


# --- 5. IPv4-mapped IPv6 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, what",
    [
        ("::ffff:255.255.255.255", "an IPv4-mapped IPv6 address (write the IPv4 address itself)"),
        ("::ffff:127.0.0.1", "an IPv4-mapped IPv6 address (write the IPv4 address itself)"),
        ("::ffff:10.0.0.1", "an IPv4-mapped IPv6 address (write the IPv4 address itself)"),
        ("::10.0.0.1", "an IPv4-compatible IPv6 address (deprecated, RFC 4291)"),
        ("255.255.255.255", "the broadcast address"),
        ("ff02::1", "a multicast address"),
        ("2001:db8::1", None),
        ("10.0.52.10", None),
    ],
)
def test_address_classification_is_our_own_rule(address: str, what: str | None) -> None:
    import ipaddress

    assert special(ipaddress.ip_address(address)) == what


# --- 6. YAML 1.1 number surprises ---------------------------------------------------------------


@pytest.mark.parametrize(
    "written, reason",
    [
        ("0104", "0104 has a leading zero (YAML 1.1 reads it as the octal number 68); write 104 without the zero"),
        ("1:44", "1:44 is read by YAML 1.1 as the base-60 number 104; write the number in decimal"),
        ("1_04", "1_04 holds '_' (YAML 1.1 reads it as 104); write digits only"),
        ("0x68", "0x68 is not a decimal integer (YAML 1.1 reads it as 104); write integers in decimal"),
    ],
)
def test_integers_are_decimal(written: str, reason: str, tmp_path: Path) -> None:
    text = SITE.replace("    vip: 192.168.85.8\n", f"    vip: 192.168.85.8\n    port: {written}\n")
    assert errors(text, tmp_path) == [f"error: services.SQL.port: {reason} (line 12)"]


def test_a_check_interval_written_010_is_not_8(tmp_path: Path) -> None:
    text = SITE.replace("    vip: 192.168.85.8\n", "    vip: 192.168.85.8\n    check_interval_seconds: 010\n")
    assert errors(text, tmp_path) == [
        "error: services.SQL.check_interval_seconds: 010 has a leading zero (YAML 1.1 reads it as the octal "
        "number 8); write 10 without the zero (line 12)"
    ]


# --- 7. error output that can be forged or is empty -------------------------------------------------


def test_a_key_cannot_forge_an_error_line(tmp_path: Path) -> None:
    text = SITE.replace("    vip: 192.168.85.8\n", '    vip: 192.168.85.8\n    "x\\nerror: forged": 1\n')
    lines = errors(text, tmp_path)
    assert len(lines) == 1 and lines[0].count("error:") == 2 and "\\n" in lines[0], lines


@pytest.mark.parametrize(
    "text, reason",
    [
        ("a: &a [*a]\n", "line 1: the alias *a refers to the value that contains it (a recursive alias)"),
        ("a: " + "[" * 200 + "]" * 200 + "\n", "line 1: the values are nested more than 32 levels deep"),
        ("preset: pacs\x00\n", "line 1: control character U+0000 is not allowed in an input file"),
        ("preset: pacs\nsnat_address: \x9b\n", "line 2: control character U+009B is not allowed in an input file"),
    ],
)
def test_unreadable_files_get_one_line_with_a_line_number(text: str, reason: str, tmp_path: Path) -> None:
    assert errors(text, tmp_path) == [f"error: {reason}"]


# --- 8. parsing is bounded ------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_within_a_second(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 9)]
    started = time.monotonic()
    assert errors("\n".join(lines) + "\n", tmp_path) == [
        "error: line 5: the file holds more than 20000 values (aliases counted expanded)"
    ]
    assert time.monotonic() - started < 5  # the process start included; the parse itself is well under 1 s


def test_a_50_mb_site_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w") as f:
        f.write(SITE)
        f.write("# " + "x" * (50 * 2**20) + "\n")
    started = time.monotonic()
    result = run_lbctl("validate", str(path))
    assert result.stderr == "error: the file is larger than 1024 KiB; an input file is a few KB\n"
    assert time.monotonic() - started < 5


# --- 9. YAML merge keys ---------------------------------------------------------------------------


def test_merge_keys_are_accepted_and_the_services_own_keys_win() -> None:
    site = SITE_KIND.parse_text(
        "preset: pacs\nsnat_address: 192.168.85.4\nservices:\n"
        "  DICOM: &base {vip: 192.168.85.9, servers: [{label: S1, address: 10.0.52.10}]}\n"
        "  DMWL:\n    <<: *base\n    vip: 192.168.85.5\n"
    )
    dmwl = next(s for s in site.services if s.name == "DMWL")
    assert str(dmwl.vip) == "192.168.85.5" and dmwl.servers[0].label == "S1"


def test_a_real_duplicate_key_is_still_refused(tmp_path: Path) -> None:
    text = SITE.replace("    vip: 192.168.85.8\n", "    vip: 192.168.85.8\n    vip: 192.168.85.9\n")
    assert errors(text, tmp_path) == ["error: services.SQL.vip: given twice (lines 11 and 12)"]


# --- 10. network.yaml values are checked against each other -----------------------------------------


@pytest.mark.parametrize(
    "interface, field, reason",
    [
        (
            "{address: 192.168.85.2/24, gateway: 192.0.2.66}",
            "gateway",
            "192.0.2.66 is outside eth0's subnet (192.168.85.0/24); the kernel would refuse the route",
        ),
        (
            "{address: 192.168.85.2/24, gateway: 192.168.85.2}",
            "gateway",
            "192.168.85.2 is eth0's own address, not a gateway",
        ),
        (
            "{address: 192.168.85.2/24, gateway: 224.0.0.1}",
            "gateway",
            "224.0.0.1 is a multicast address, which cannot be a gateway",
        ),
        ("{address: 192.168.85.2/24, gateway: '2001:db8::1'}", "gateway", "IPv6 gateway, but eth0 has no IPv6 address"),
        (
            "{address: 192.168.85.255/24}",
            "address",
            "192.168.85.255 is the broadcast address of 192.168.85.0/24, not a host address in it",
        ),
        (
            "{address: 192.168.85.2/0}",
            "address",
            "192.168.85.2/0: a /0 prefix makes every address on-link; give the subnet's prefix length",
        ),
        ("{address: '2001:db8::2/64', mtu: 576}", "mtu", "576 is below IPv6's minimum MTU of 1280 (RFC 8200)"),
        (
            "{address: 192.168.85.2/24, gateway: 192.168.85.255}",
            "gateway",
            "192.168.85.255 is the broadcast address of 192.168.85.0/24, not a host",
        ),
    ],
)
def test_network_values_are_checked_against_each_other(interface: str, field: str, reason: str, tmp_path: Path) -> None:
    assert errors(f"interfaces:\n  eth0: {interface}\n", tmp_path, "network") == [
        f"error: interfaces.eth0.{field}: {reason} (line 2)"
    ]


def test_an_ipv6_link_local_gateway_is_fine_with_ipv6_on_the_interface() -> None:
    network = NETWORK_KIND.parse_text("interfaces:\n  eth0: {address: '2001:db8::2/64', gateway: 'fe80::1'}\n")
    assert str(network.interfaces["eth0"].gateway) == "fe80::1"


def test_one_default_gateway_per_family(tmp_path: Path) -> None:
    text = (
        "interfaces:\n  eth0: {address: 192.168.85.2/24, gateway: 192.168.85.1}\n"
        "  eth1: {address: 10.0.0.2/24, gateway: 10.0.0.1}\n"
    )
    assert errors(text, tmp_path, "network") == [
        "error: interfaces.eth1.gateway: a second IPv4 default gateway (eth0 has one); give one default gateway per "
        "address family (line 3)"
    ]


# --- 11. network.yaml structure ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value, reason",
    [
        ("5", "must be a list, not 5 (int)"),
        ("~", "must be a list, not nothing (null)"),
        ("192.168.85.2/24", "must be a list, not '192.168.85.2/24'"),
    ],
)
def test_addresses_of_the_wrong_kind_are_refused(value: str, reason: str, tmp_path: Path) -> None:
    assert errors(f"interfaces:\n  eth0: {{addresses: {value}}}\n", tmp_path, "network") == [
        f"error: interfaces.eth0.addresses: {reason} (line 2)"
    ]


def test_a_duplicate_interface_is_refused(tmp_path: Path) -> None:
    text = "interfaces:\n  eth0: {dhcp: true}\n  eth0: {address: 192.168.85.2/24}\n"
    assert errors(text, tmp_path, "network") == ["error: interfaces.eth0: given twice (lines 2 and 3)"]


# --- also found in what a valid site renders -------------------------------------------------------


def test_the_check_timeout_bounds_the_connect_and_each_service_has_its_own_connections(tmp_path: Path) -> None:
    config = haproxy_accepts(
        SITE.replace(
            "    vip: 192.168.85.8\n", "    vip: 192.168.85.8\n    check_timeout_seconds: 2\n    max_connections: 500\n"
        ),
        tmp_path,
    )
    sql = config.split("listen SQL\n", 1)[1]
    dicom = config.split("listen DICOM\n", 1)[1].split("listen SQL")[0]
    assert "    timeout connect 2s\n" in sql and "    maxconn 500\n" in sql
    assert "    timeout connect 3s\n" in dicom and "    maxconn 2000\n" in dicom
    assert re.search(r"^    maxconn 2600$", config, re.M), "global maxconn is the services' sum plus the margin"
    assert "log stdout format short" in config


def test_every_tcp_check_lingers(tmp_path: Path) -> None:
    site = SITE_KIND.parse_text(
        "preset: pacs\nsnat_address: 192.168.85.4\nservices:\n"
        + "".join(
            f"  {name}:\n    vip: 192.168.85.{n + 5}\n{extra}    servers: [{{label: S1, address: 10.0.52.10}}]\n"
            for n, (name, extra) in enumerate(
                [
                    ("DICOM", ""),
                    ("DICOM-Secure", "    check: dicom-echo\n    called_ae_title: PACS\n"),
                    ("SQL", ""),
                    ("LDAP", "    check: ldap\n"),
                    ("LDAP-Secure", "    check: ldap\n"),
                ]
            )
        )
    )
    config = render(site, SETTINGS)["haproxy.cfg"]
    connects = re.findall(r"^    tcp-check connect.*$", config, re.M)
    assert len(connects) == 5 and all(c.endswith(" linger") for c in connects), connects
    assert "option ldap-check" not in config


def test_the_ping_check_leaves_from_the_snat_address(tmp_path: Path) -> None:
    text = SITE.replace("  SQL:\n    vip: 192.168.85.8\n", "  DMWL:\n    vip: 192.168.85.5\n")
    files = render(SITE_KIND.parse_text(text), SETTINGS)
    assert "external-check command /var/lib/lbappliance/lbctl/current/check-ping" in files["haproxy.cfg"]
    assert "LB_CHECK_SOURCE=192.168.85.4 exec " in files["check-ping"]
