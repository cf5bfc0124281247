"""The System Overview as text, and how HAProxy's states map to the vendor's words."""
from __future__ import annotations

import pytest

from lbctl.status import duration, format_overview, server_state


@pytest.mark.parametrize("raw, state", [("UP", "UP"), ("UP 1/3", "UP"), ("DOWN", "DOWN"), ("DOWN 1/2", "DOWN"),
                                        ("DRAIN", "DRAIN"), ("NOLB", "DRAIN"), ("MAINT", "MAINT"),
                                        ("MAINT (via DICOM/Server1)", "MAINT"), ("no check", "UP")])
def test_haproxy_states_in_the_vendors_words(raw: str, state: str) -> None:
    assert server_state(raw) == state


def test_duration() -> None:
    assert [duration(s) for s in (None, 5, 65, 3700, 90000)] == ["-", "5s", "1m05s", "1h01m", "1d01h"]


def test_overview_text() -> None:
    check = {"status": "L4CON", "code": None, "duration_ms": 1, "detail": "Connection refused"}
    status = {"version": "1.0", "healthy": True, "generation": "0007",
              "haproxy": {"running": True, "version": "3.0.11", "uptime_seconds": 3700},
              "problems": [],
              "services": [{"name": "DICOM", "vip": "192.168.85.5:104", "state": "OPEN", "check": "connect",
                            "sessions": 3, "servers_up": 1, "health": "degraded",
                            "servers": [{"label": "Server1", "address": "10.0.52.10:104", "state": "UP", "sessions": 3,
                                         "last_check": {"status": "L4OK", "code": None, "duration_ms": 0, "detail": ""},
                                         "seconds_since_change": 65},
                                        {"label": "Server2", "address": "10.0.52.11:104", "state": "DOWN",
                                         "sessions": 0, "last_check": check, "seconds_since_change": 5}]}]}
    assert format_overview(status).splitlines() == [
        "PACS load balancer 1.0: healthy (HAProxy 3.0.11, up 1h01m, configuration 0007)",
        "",
        "SERVICE / SERVER   ADDRESS                  STATE    SESS  DETAIL",
        "DICOM              192.168.85.5:104         OPEN        3  1/2 servers up, check connect  [DEGRADED]",
        "  Server1          10.0.52.10:104           UP          3  last check L4OK 0ms; UP for 1m05s",
        "  Server2          10.0.52.11:104           DOWN        0  last check L4CON 1ms (Connection refused); DOWN for 5s",
    ]
