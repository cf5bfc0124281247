"""lbimage: builds, packages, verifies and boot-tests the PACS load-balancer appliance."""

from __future__ import annotations

from pathlib import Path

# The checkout this package runs from: image/, overlay/, hypervisors/ sit beside builder/.
ROOT = Path(__file__).resolve().parent.parent


def version() -> str:
    """The appliance version being built: LB_VERSION when set (a test or release script building
    the next version from the same tree), else the package's. Raises settings.SettingError."""
    import os

    if os.environ.get("LB_VERSION"):
        from . import settings

        return settings.get("LB_VERSION")
    return package_version()


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("lbappliance")
    except PackageNotFoundError:  # running from a checkout without the virtualenv
        import tomllib

        return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
