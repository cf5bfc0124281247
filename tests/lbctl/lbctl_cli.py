"""Running the real lbctl command line from the unit tests."""

from __future__ import annotations

import os
import subprocess
import sys


def run_lbctl(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real command line, as the lead's provisioning and an operator call it."""
    return subprocess.run(
        [sys.executable, "-m", "lbctl", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
