"""The System Overview as text, and how HAProxy's states map to the vendor's words."""

from __future__ import annotations

import pytest

from lbctl.status import (
    CheckResult,
    HAProxyStatus,
    ServerStatus,
    ServiceStatus,
    Status,
    duration,
    format_overview,
    server_state,
)


@pytest.mark.parametrize(
    "raw, state",
    [
        ("UP", "UP"),
        ("UP 1/3", "UP"),
        ("DOWN", "DOWN"),
        ("DOWN 1/2", "DOWN"),
        ("DRAIN", "DRAIN"),
        ("NOLB", "DRAIN"),
        ("MAINT", "MAINT"),
        ("MAINT (via DICOM/Server1)", "MAINT"),
        ("no check", "UP"),
    ],
)
def test_haproxy_states_in_the_vendors_words(raw: str, state: str) -> None:
    assert server_state(raw) == state


def test_duration() -> None:
    assert [duration(s) for s in (None, 5, 65, 3700, 90000)] == ["-", "5s", "1m05s", "1h01m", "1d01h"]


def test_overview_text() -> None:
    def server(label: str, address: str, state: str, sessions: int, check: CheckResult, since: int) -> ServerStatus:
        return ServerStatus(
            label=label,
            address=address,
            state=state,
            haproxy_status=state,
            weight=100,
            sessions=sessions,
            sessions_total=sessions,
            last_check=check,
            seconds_since_change=since,
            failed_checks=0,
        )

    status = Status(
        version="1.0",
        healthy=True,
        generation="0007",
        haproxy=HAProxyStatus(running=True, version="3.0.11", uptime_seconds=3700),
        services=(
            ServiceStatus(
                name="DICOM",
                vip="192.168.85.5:104",
                state="OPEN",
                check="connect",
                sessions=3,
                servers_up=1,
                health="degraded",
                servers=(
                    server("Server1", "10.0.52.10:104", "UP", 3, CheckResult("L4OK", None, 0, ""), 65),
                    server(
                        "Server2", "10.0.52.11:104", "DOWN", 0, CheckResult("L4CON", None, 1, "Connection refused"), 5
                    ),
                ),
            ),
        ),
    )
    assert format_overview(status).splitlines() == [
        "PACS load balancer 1.0: healthy (HAProxy 3.0.11, up 1h01m, configuration 0007)",
        "",
        "SERVICE / SERVER   ADDRESS                  STATE    SESS  DETAIL",
        "DICOM              192.168.85.5:104         OPEN        3  1/2 servers up, check connect  [DEGRADED]",
        "  Server1          10.0.52.10:104           UP          3  last check L4OK 0ms; UP for 1m05s",
        "  Server2          10.0.52.11:104           DOWN        0  last check L4CON 1ms (Connection refused); "
        "DOWN for 5s",
    ]
