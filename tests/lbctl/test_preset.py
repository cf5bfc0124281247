"""The pacs preset is the issue's table, and a broken preset is reported as the appliance's bug."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lbctl.site.preset import PresetError, load_preset

# Issue 4 / vendor guide section 8: service, port, persistence minutes, check, TLS.
EXPECTED = [
    ("DICOM", 104, 30, "connect", False),
    ("DICOM-Secure", 2762, 30, "connect", True),
    ("DMWL", 8104, 60, "ping", False),
    ("DMWL-Secure", 10104, 60, "ping", True),
    ("SQL", 1433, 2, "mssql", False),
    ("LDAP", 3890, 2, "connect", False),
    ("LDAP-Secure", 6360, 2, "connect", True),
    ("QRSCP", 107, 2, "ping", False),
    ("QRSCP-Secure", 2765, 2, "ping", True),
]


def test_pacs_preset_is_the_vendor_table() -> None:
    preset = load_preset("pacs")
    assert [(s.name, s.port, s.persistence_minutes, s.check, s.tls) for s in preset.services] == EXPECTED
    assert {s.balance for s in preset.services} == {"leastconn"}


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "preset: other\ntitle: T\nservices: {X: {summary: x, port: 1, protocol: sql, tls: false, balance:"
            " leastconn,"
            " persistence_minutes: 2, check: mssql, check_interval_seconds: 5, check_timeout_seconds: 3, rise:"
            " 2, fall: 3,"
            " idle_timeout_minutes: 60, max_connections: 10}}\n",
            "preset: 'other' must be the file's name, 'broken'",
        ),
        (
            "preset: broken\ntitle: T\ndefaults: {}\nservices: {X: {port: '1'}}\n",
            "services.X.summary: missing: One line for 'lbctl status'",
        ),
        (
            "preset: broken\ntitle: T\ndefaults: {}\nservices: {X: {port: '1'}}\n",
            "services.X.port: must be a whole number from 1 to 65535, not '1' (line 4)",
        ),
        (
            "preset: broken\ntitle: T\nservices: {X: {summary: x}}\n",
            "services.X.check: missing: given neither here nor in the preset's defaults (line 3)",
        ),
        (
            "preset: broken\ntitle: T\ndefaults: {balance: leastconn, check_interval_seconds: 5,"
            " check_timeout_seconds: 3, rise: 2,"
            " fall: 3, idle_timeout_minutes: 60, max_connections: 10}\n"
            "services: {X: {summary: x, port: 1, protocol: sql, tls: false,"
            " persistence_minutes: 2, check: ldap}}\n",
            "services.X.check: ldap does not apply to sql",
        ),
    ],
)
def test_broken_preset(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "broken.yaml").write_text(text)
    with pytest.raises(PresetError, match=re.escape(message)):
        load_preset("broken", tmp_path)
