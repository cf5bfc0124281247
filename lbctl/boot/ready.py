"""lb-ready: announce on the serial console that the appliance is ready (or why it is not).

Runs once per boot after provisioning and HAProxy. Ready means: HAProxy runs the configuration
lbctl applied and 'lbctl status' reports healthy (every virtual service's frontend is open).
Real servers being DOWN does not make the appliance unready; lbctl status reports them.
"""
from __future__ import annotations

import sys
import time

from ..appliance import Paths
from ..status import collect_status
from . import console

TIMEOUT_SECONDS = 90


def main() -> int:
    paths = Paths.from_env()
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        status = collect_status(paths)
        if status.healthy:
            console.ready(status.version)
            return 0
        if time.monotonic() > deadline:
            console.failed(f"lbctl status not healthy after {TIMEOUT_SECONDS} s: "
                           + ("; ".join(status.problems) or "unknown"))
            return 1
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
