"""The appliance version: IMAGE_VERSION in os-release on the appliance, the package version elsewhere."""
from __future__ import annotations

from pathlib import Path


def read_os_release(path: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


def appliance_version(os_release: Path) -> str:
    fields = read_os_release(os_release)
    if fields.get("IMAGE_ID") == "lbappliance" and fields.get("IMAGE_VERSION"):
        return fields["IMAGE_VERSION"]
    try:
        from importlib.metadata import version

        return version("lbappliance")
    except Exception:  # not installed as a distribution: a source checkout without the venv
        return "unknown"
