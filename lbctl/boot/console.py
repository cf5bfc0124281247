"""The appliance's one-line status messages on the serial console.

Test harnesses and integrators watch the serial console for exactly one of:
    LBAPPLIANCE READY <version>
    LBAPPLIANCE FAILED <reason>
The line is written to the first serial port and to the journal. It starts and ends with CR LF
so that it stands on a line of its own even when it interrupts other console output.
"""

from __future__ import annotations

import os
import sys

from ..appliance import RUN_DIR
from ..appliance import SERIAL_CONSOLE as SERIAL
from ..inputs.problems import one_line

PREFIX = "LBAPPLIANCE"
FAILED_FILE = RUN_DIR / "failed"  # this boot's FAILED reason


def emit(word: str, text: str) -> None:
    line = f"{PREFIX} {word} {one_line(text)}"  # one line, whatever the reason holds
    print(line, flush=True)  # the journal, via stdout
    try:
        fd = os.open(SERIAL, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return  # no serial port: the journal has it
    try:
        os.write(fd, f"\r\n{line}\r\n".encode())
    except OSError as exc:
        print(f"cannot write to {SERIAL}: {exc}", file=sys.stderr)
    finally:
        os.close(fd)


def ready(version: str) -> None:
    emit("READY", version)


def failed(reason: str) -> None:
    emit("FAILED", reason)
    # Kept for the boot's health check (lbctl.update.health), which says why a new version failed.
    try:
        FAILED_FILE.parent.mkdir(parents=True, exist_ok=True)
        FAILED_FILE.write_text(one_line(reason) + "\n")
    except OSError:
        pass
