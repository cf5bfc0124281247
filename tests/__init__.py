"""The test suite (a package, so that tests import each other as tests.<dir>.<module>).

lbctl run from the checkout finds HAProxy's check scripts in the overlay, where the image takes
them from (on the appliance: /usr/lib/lbctl/check-scripts). Set before anything imports lbctl.
"""

import os
from pathlib import Path

os.environ.setdefault(
    "LBCTL_CHECK_SCRIPTS_DIR", str(Path(__file__).resolve().parents[1] / "overlay/usr/lib/lbctl/check-scripts")
)
