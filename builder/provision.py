"""Provisioning media for an appliance, written from the same table the appliance reads.

The appliance (lbctl.boot.provision.INPUTS) accepts each input as a systemd credential or as a file on
a config disk labelled LBCONFIG. This module makes both for tests and for `lbimage boot`.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from lbctl.boot.provision import CONFIG_DISK_LABEL, INPUTS_BY_KEY


def check_keys(inputs: dict[str, str]) -> None:
    unknown = set(inputs) - set(INPUTS_BY_KEY)
    if unknown:
        raise ValueError(f"unknown provisioning inputs {sorted(unknown)}; known: {sorted(INPUTS_BY_KEY)}")


def as_credentials(inputs: dict[str, str]) -> dict[str, str]:
    """{input key: text} -> {systemd credential name: text}, for QEMU -fw_cfg."""
    check_keys(inputs)
    return {INPUTS_BY_KEY[key].credential: text for key, text in inputs.items()}


def make_config_disk(inputs: dict[str, str], path: Path, size_kib: int = 2048, fmt: str = "fat") -> Path:
    """A config disk labelled LBCONFIG holding one file per input (no root mount needed):
    fmt "fat" is a small FAT disk image, "iso" an ISO 9660 image to attach as a CD-ROM (what
    VMware, Hyper-V and Nutanix attach most easily)."""
    check_keys(inputs)
    path.unlink(missing_ok=True)
    if fmt == "iso":
        with tempfile.TemporaryDirectory() as tree:
            for key, text in inputs.items():
                (Path(tree) / INPUTS_BY_KEY[key].disk_file).write_text(text)
            subprocess.run(
                ["xorriso", "-as", "mkisofs", "-quiet", "-V", CONFIG_DISK_LABEL, "-J", "-R", "-o", str(path), tree],
                check=True,
                capture_output=True,
            )
        return path
    if fmt != "fat":
        raise ValueError(f"config disk format {fmt!r}: expected 'fat' or 'iso'")
    subprocess.run(
        ["mkfs.vfat", "-n", CONFIG_DISK_LABEL, "-C", str(path), str(size_kib)], check=True, capture_output=True
    )
    for key, text in inputs.items():
        source = path.with_name(f"{path.name}.{INPUTS_BY_KEY[key].disk_file}")
        source.write_text(text)
        subprocess.run(
            ["mcopy", "-i", str(path), str(source), f"::/{INPUTS_BY_KEY[key].disk_file}"],
            check=True,
            capture_output=True,
            env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
        )
        source.unlink()
    return path


def make_ssh_key(directory: Path, name: str = "id_ed25519") -> tuple[Path, str]:
    """A throwaway SSH key pair for a test or a local boot: (private key path, public key line)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / name
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lbimage-test", "-f", str(key)], check=True
        )
    return key, key.with_name(f"{key.name}.pub").read_text()  # what ssh-keygen writes, dots or not
