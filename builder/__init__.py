"""lbimage: builds, packages, verifies and boot-tests the PACS load-balancer appliance."""

from __future__ import annotations

from pathlib import Path

# The checkout this package runs from: image/, overlay/, hypervisors/ sit beside builder/.
ROOT = Path(__file__).resolve().parent.parent


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("lbappliance")
    except PackageNotFoundError:  # running from a checkout without the virtualenv
        import tomllib

        return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
