"""What the update keeps on the data partition: the configuration format and the last outcome.

    DATA_DIR/config-format       the format of the configuration below DATA_DIR (one integer)
    DATA_DIR/update/last.json    the last update: version, from, outcome, reason, time
    DATA_DIR/update/versions/    the signed manifest of every version applied (its config formats)
    DATA_DIR/update/staged.json  the slot an interrupted apply had written and read back

The configuration format is what lets an older system that was rolled back to find a
configuration it understands: a version that changes the layout of DATA_DIR raises CONFIG_FORMAT,
keeps reading the formats before it (CONFIG_FORMATS_READ), and migrates only once it has been
blessed (docs/update.md, "Configuration formats and migrations"). An archive whose version cannot
read the format in place is refused before anything is written.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..appliance import DATA_DIR
from ..fileio import fsync_dir, write_atomic

CONFIG_FORMAT = 1  # what this lbctl writes
CONFIG_FORMATS_READ = (1,)  # what this lbctl reads
FORMAT_FILE = DATA_DIR / "config-format"
UPDATE_DIR = DATA_DIR / "update"
LAST_FILE = UPDATE_DIR / "last.json"
VERSIONS_DIR = UPDATE_DIR / "versions"
STAGED_FILE = UPDATE_DIR / "staged.json"  # the slot an unfinished apply wrote and read back


class ConfigFormatError(RuntimeError):
    """The data partition's configuration is in a format this version does not read."""


def config_format() -> int:
    """The data partition's configuration format (1 when none is recorded: the first format)."""
    try:
        return int(FORMAT_FILE.read_text().strip())
    except FileNotFoundError:
        return 1
    except ValueError:
        raise ConfigFormatError(f"{FORMAT_FILE} does not hold a format number") from None


def check_config_format() -> int:
    """Provisioning's check at every boot; records the format on a first boot.

    Raises ConfigFormatError when a newer version migrated the configuration and this (older)
    version cannot read it.
    """
    found = config_format()
    if found not in CONFIG_FORMATS_READ:
        raise ConfigFormatError(
            f"the configuration on the data partition is format {found}; this version reads "
            f"{', '.join(map(str, CONFIG_FORMATS_READ))} (a newer version migrated it; see docs/update.md)"
        )
    if not FORMAT_FILE.exists():
        write_atomic(FORMAT_FILE, f"{CONFIG_FORMAT}\n", 0o644)
    return found


def record(version: str, from_version: str, outcome: str, reason: str = "") -> None:
    """The last update's outcome: applied, installed, rolled back, failed, refused."""
    UPDATE_DIR.mkdir(parents=True, exist_ok=True)
    entry = {
        "version": version,
        "from": from_version,
        "outcome": outcome,
        "reason": reason,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_atomic(LAST_FILE, json.dumps(entry, indent=2) + "\n", 0o644, durable=True)


def last() -> dict[str, Any] | None:
    try:
        data = json.loads(LAST_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remember_manifest(version: str, manifest_json: bytes) -> None:
    VERSIONS_DIR.mkdir(parents=True, exist_ok=True)
    write_atomic(VERSIONS_DIR / f"{version}.json", manifest_json.decode(), 0o644)


def config_formats_of(version: str) -> tuple[int, ...] | None:
    """The formats a version reads, from its manifest (None when it was never applied here)."""
    try:
        data = json.loads((VERSIONS_DIR / f"{version}.json").read_text())
        return tuple(int(f) for f in data["config_formats"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def staged() -> tuple[int, str] | None:
    """(partition number, image SHA-256) of a slot an unfinished apply wrote and read back."""
    try:
        data = json.loads(STAGED_FILE.read_text())
        return int(data["partition"]), str(data["image_sha256"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def set_staged(slot: tuple[int, str] | None) -> None:
    if slot is None:
        if STAGED_FILE.exists():
            STAGED_FILE.unlink()
            fsync_dir(UPDATE_DIR)
        return
    UPDATE_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"partition": slot[0], "image_sha256": slot[1]}) + "\n"
    write_atomic(STAGED_FILE, text, 0o644, durable=True)
