"""The Logs page: the recent journal lines of the appliance's services, filtered.

Read with journalctl(1) in its JSON output (one object per line; journalctl(1), "--output=json"),
which gives the time, the priority and the unit without parsing text. The filter is a plain
case-insensitive substring and a lowest priority, applied here: the operator's words never
reach a regular-expression engine or a command line.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass

# source: (what the page calls it, the units)
SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "haproxy": ("HAProxy", ("haproxy.service",)),
    "heartbeat": ("heartbeat (HA pair)", ("heartbeat.service", "lb-garp.service")),
    "provisioning": ("provisioning and boot", ("lb-provision.service", "lb-ready.service", "lb-boot-check.service")),
    "webui": ("web UI: sign-ins, actions, updates", ("lb-webui.service",)),
}
# syslog(3) priorities, lowest number most severe.
PRIORITIES: dict[str, int] = {"all": 7, "info": 6, "notice": 5, "warning": 4, "error": 3}
LINE_CHOICES = (100, 200, 500, 1000)
TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class LogLine:
    time: str  # ISO 8601, UTC, seconds
    unit: str
    priority: int
    message: str


class JournalError(Exception):
    pass


def journalctl() -> str:
    return os.environ.get("LBCTL_JOURNALCTL", "journalctl")


def read(source: str, lines: int = 200, text: str = "", priority: str = "all") -> list[LogLine]:
    """The last `lines` entries of `source`'s units (oldest first), keeping those that contain
    `text` (any case) and are at least as severe as `priority`. Raises JournalError, KeyError
    for an unknown source or priority."""
    import datetime

    _title, units = SOURCES[source]
    most = PRIORITIES[priority]
    args = [journalctl(), "--no-pager", "--output=json", f"--lines={lines}", f"--priority=0..{most}"]
    for unit in units:
        args += ["--unit", unit]
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JournalError(f"cannot read the journal: {exc}") from None
    if result.returncode not in (0, 1):  # 1: no entries
        raise JournalError(f"journalctl: {result.stderr.strip() or f'exit {result.returncode}'}")
    wanted = text.casefold()
    out: list[LogLine] = []
    for raw in result.stdout.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        message = entry.get("MESSAGE", "")
        if isinstance(message, list):  # not valid UTF-8: journalctl gives the bytes
            message = bytes(message).decode("utf-8", "replace")
        if wanted and wanted not in str(message).casefold():
            continue
        usec = int(entry.get("__REALTIME_TIMESTAMP", 0))
        when = datetime.datetime.fromtimestamp(usec / 1e6, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        unit = entry.get("_SYSTEMD_UNIT") or entry.get("SYSLOG_IDENTIFIER") or ""
        out.append(LogLine(when, str(unit), int(entry.get("PRIORITY", 6)), str(message)))
    return out
