"""Generated inputs: every site file and network.yaml is refused cleanly or rendered into files the
appliance's HAProxy and networkd accept, with each field replaced by values of every other kind.

The rule (the hardening issue): refused means one single-line 'field path: reason (line N)' per
problem, never an exception of another kind; accepted means haproxy -c passes (the host's HAProxy
and the appliance's own 3.0 when the image was built) and every networkd line is a known key with
a value that means what the input said.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbctl.boot.network import NETWORK_KIND, render_network
from lbctl.config.render import RenderSettings, render, write_files
from lbctl.inputs import InputInvalid
from lbctl.site.schema import SITE_KIND
from tests.helpers import haproxy_binaries

SETTINGS = RenderSettings(
    version="test",
    admin_socket=Path("/run/haproxy/admin.sock"),
    server_state_file=Path("/var/lib/lbappliance/lbctl/server-state"),
)

BASE_SITE: dict[str, Any] = {
    "preset": "pacs",
    "snat_address": "192.168.85.4",
    "services": {
        "DICOM": {
            "vip": "192.168.85.5",
            "check": "dicom-echo",
            "called_ae_title": "ISPACS",
            "servers": [{"label": "Server1", "address": "10.0.52.10"}, {"label": "Server2", "address": "10.0.52.11"}],
        },
        "SQL": {"vip": "192.168.85.8", "servers": [{"label": "S1", "address": "10.0.52.30", "weight": 50}]},
        "DMWL": {"vip": "192.168.85.5", "servers": [{"label": "W1", "address": "10.0.52.20"}]},
    },
}
BASE_NETWORK: dict[str, Any] = {
    "hostname": "lb1",
    "interfaces": {
        "eth0": {"address": "192.168.85.2/24", "gateway": "192.168.85.254"},
        "eth1": {"dhcp": True, "mtu": 1500},
    },
    "dns": ["192.168.85.10"],
    "ntp": ["ntp.example.org"],
}

TRICKY_TEXT = st.sampled_from(
    [
        "",
        " ",
        'IS"PACS',
        'A" B "C',
        "${HOME}",
        "$HOME",
        "#x",
        "{x}",
        "a\nb",
        "x\r\nGateway=192.0.2.66",
        "\u00e9\u00e8",
        "\u2028",
        "x" * 300,
        "0104",
        "yes",
        "192.168.85.5",
        "::ffff:192.168.85.5",
        "fe80::1%eth0",
        "127.0.0.1",
        "1:44",
    ]
)
ANY_VALUE = st.one_of(
    TRICKY_TEXT,
    st.text(max_size=40),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value (and to each container) in `data`."""
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += paths(value, prefix + (index,))
    return found


def replace(data: Any, path: tuple, value: Any) -> Any:
    data = copy.deepcopy(data)
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> str:
    """`base` with one to three values replaced, or a key renamed, dumped as YAML text."""
    data = base
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(data)))
        data = replace(data, path, draw(ANY_VALUE))
    return yaml.safe_dump(data, allow_unicode=draw(st.booleans()), sort_keys=False)


PROBLEM_LINE = re.compile(r"^[^\n]+$")


def assert_clean_refusal(exc: InputInvalid) -> None:
    assert exc.problems, "refused without a problem"
    for line in exc.lines():
        assert "\n" not in line and "\r" not in line and "\u2028" not in line, line
        assert PROBLEM_LINE.match(line), line


def haproxy_check(files: dict[str, str], tmp: Path) -> None:
    write_files(files, tmp)
    for binary in haproxy_binaries():
        result = subprocess.run([binary, "-c", "-f", str(tmp / "haproxy.cfg")], capture_output=True, text=True)
        assert result.returncode == 0, f"{binary} refuses an accepted site:\n{result.stdout}{result.stderr}"


# Keys systemd-networkd takes in the sections lbctl writes (systemd.network(5)), with a check of
# the value where it is an address.
NETWORKD_KEYS: dict[str, dict[str, Any]] = {
    "Match": {"Name": None},
    "Link": {"MTUBytes": int, "RequiredForOnline": None},
    "Network": {
        "DHCP": None,
        "LinkLocalAddressing": None,
        "IPv6AcceptRA": None,
        "KeepConfiguration": None,
        "Address": ipaddress.ip_interface,
        "Gateway": ipaddress.ip_address,
        "DNS": ipaddress.ip_address,
        "NTP": None,
    },
}


def assert_networkd_parses(text: str) -> None:
    section = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            assert section in NETWORKD_KEYS, line
            continue
        key, sep, value = line.partition("=")
        assert sep and section, line
        assert key in NETWORKD_KEYS[section], line
        assert value and not any(c < " " for c in value), line
        check = NETWORKD_KEYS[section][key]
        if check is not None:
            check(value)


def test_the_bases_are_valid() -> None:
    SITE_KIND.parse_text(yaml.safe_dump(BASE_SITE))
    NETWORK_KIND.parse_text(yaml.safe_dump(BASE_NETWORK))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mutated(BASE_SITE))
def test_a_generated_site_is_refused_cleanly_or_accepted_by_haproxy(
    text: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    try:
        site = SITE_KIND.parse_text(text)
    except InputInvalid as exc:
        assert_clean_refusal(exc)
        return
    haproxy_check(render(site, SETTINGS), tmp_path_factory.mktemp("site"))


@settings(max_examples=200, deadline=None)
@given(text=mutated(BASE_NETWORK))
def test_a_generated_network_file_is_refused_cleanly_or_renders_parsable_networkd_files(text: str) -> None:
    try:
        network = NETWORK_KIND.parse_text(text)
    except InputInvalid as exc:
        assert_clean_refusal(exc)
        return
    for content in render_network(network).values():
        assert_networkd_parses(content)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_arbitrary_text_never_escapes_as_another_exception(text: str) -> None:
    for kind in (SITE_KIND, NETWORK_KIND):
        try:
            kind.parse_text(text)
        except InputInvalid as exc:
            assert_clean_refusal(exc)
