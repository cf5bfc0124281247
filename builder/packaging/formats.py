"""The disk formats: what each is called, which converter makes it, which options it takes.

A hypervisor's YAML names a format and its converter options; packaging converts the raw image
once per format, however many hypervisors share it (KVM and Nutanix share the qcow2).
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from . import fields, vmdk

Converter = Callable[["DiskFormat", Path, Path, Mapping[str, Any], str], None]


@dataclass(frozen=True)
class DiskFormat:
    name: str                      # in hypervisors/*.yaml and manifest.json
    qemu_format: str               # what qemu and qemu-img call it
    suffix: str
    options: Mapping[str, fields.Parser]   # converter options it accepts, each with its parser
    convert: Converter             # (format, raw, target, options, seed)
    description: str


def qemu_img(fmt: DiskFormat, raw: Path, target: Path, options: Mapping[str, Any], seed: str) -> None:
    """qemu-img convert; option "compressed" is its -c flag, every other one goes to -o.

    No -W (out-of-order writes): it would make the cluster layout, and so the file's sha256,
    differ from run to run.
    """
    opts = dict(options)
    argv = ["qemu-img", "convert", "-f", "raw", "-O", fmt.qemu_format]
    if opts.pop("compressed", False):
        argv.append("-c")
    if opts:
        argv += ["-o", ",".join(f"{k}={_qemu_value(v)}" for k, v in sorted(opts.items()))]
    result = subprocess.run([*argv, str(raw), str(target)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


def _qemu_value(value: Any) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def stream_vmdk(fmt: DiskFormat, raw: Path, target: Path, options: Mapping[str, Any], seed: str) -> None:
    vmdk.write_stream_optimized(raw, target, seed=seed, **options)


SIZE = fields.text(r"\d+[KMG]?", "a size like 1M")

DISK_FORMATS: dict[str, DiskFormat] = {f.name: f for f in (
    DiskFormat("vmdk", "vmdk", ".vmdk",
               {"compression_level": fields.integer(1, 9),
                "adapter_type": fields.choice(vmdk.ADAPTER_TYPES, "a VMDK adapter type")},
               stream_vmdk,
               "streamOptimized VMDK, written by builder/packaging/vmdk.py (not qemu-img; see there why)"),
    DiskFormat("qcow2", "qcow2", ".qcow2",
               {"compressed": fields.boolean,
                "compat": fields.choice(("0.10", "1.1"), "a qcow2 compat level"),
                "compression_type": fields.choice(("zlib", "zstd"), "a qcow2 compression type"),
                "cluster_size": SIZE},
               qemu_img, "qcow2 by qemu-img"),
    DiskFormat("vhdx", "vhdx", ".vhdx",
               {"subformat": fields.choice(("dynamic", "fixed"), "a VHDX subformat"),
                "block_size": SIZE},
               qemu_img, "VHDX by qemu-img"),
    DiskFormat("vhd", "vpc", ".vhd",
               {"subformat": fields.choice(("dynamic", "fixed"), "a VHD subformat"),
                "force_size": fields.boolean},
               qemu_img, "VHD (qemu's 'vpc') by qemu-img"),
)}


def parse_options(fmt: DiskFormat, options: Mapping[str, Any]) -> dict[str, Any]:
    """Check converter options against the format's table; raises ValueError(reason)."""
    parsed = {}
    for key, value in options.items():
        if key not in fmt.options:
            raise ValueError(f"{key!r} is not an option of {fmt.name} (known: {', '.join(fmt.options)})")
        try:
            parsed[key] = fmt.options[key](value)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return parsed
