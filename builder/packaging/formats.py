"""The disk formats: what each is called, which converter makes it, which options it takes.

A hypervisor's YAML names a format and its converter options; packaging converts the raw image
once per format, however many hypervisors share it (KVM and Nutanix share the qcow2).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lbctl.inputs import Field, Table
from lbctl.inputs.types import Boolean, Choice, Integer, Text

from . import vmdk

Converter = Callable[["DiskFormat", Path, Path, Mapping[str, Any], str], None]


@dataclass(frozen=True)
class DiskFormat:
    name: str  # in hypervisors/*.yaml and manifest.json
    qemu_format: str  # what qemu and qemu-img call it
    suffix: str
    options: Table  # the converter options it accepts (all optional)
    convert: Converter  # (format, raw, target, options, seed)
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


SIZE = Text(r"\d+[KMG]?", "a size like 1M")


def _options(*fields: Field) -> Table:
    return Table(fields, what="converter options")


DISK_FORMATS: dict[str, DiskFormat] = {
    f.name: f
    for f in (
        DiskFormat(
            "vmdk",
            "vmdk",
            ".vmdk",
            _options(
                Field("compression_level", Integer(1, 9), "deflate level of the grains"),
                Field(
                    "adapter_type", Choice(vmdk.ADAPTER_TYPES, "a VMDK adapter type"), "the VMDK's ddb.adapterType hint"
                ),
            ),
            stream_vmdk,
            "streamOptimized VMDK, written by builder/packaging/vmdk.py (not qemu-img; see there why)",
        ),
        DiskFormat(
            "qcow2",
            "qcow2",
            ".qcow2",
            _options(
                Field("compressed", Boolean(), "qemu-img -c"),
                Field("compat", Choice(("0.10", "1.1"), "a qcow2 compat level"), "qcow2 version"),
                Field(
                    "compression_type",
                    Choice(("zlib", "zstd"), "a qcow2 compression type"),
                    "compression of the clusters",
                ),
                Field("cluster_size", SIZE, "cluster size"),
            ),
            qemu_img,
            "qcow2 by qemu-img",
        ),
        DiskFormat(
            "vhdx",
            "vhdx",
            ".vhdx",
            _options(
                Field("subformat", Choice(("dynamic", "fixed"), "a VHDX subformat"), "allocation"),
                Field("block_size", SIZE, "block size"),
            ),
            qemu_img,
            "VHDX by qemu-img",
        ),
        DiskFormat(
            "vhd",
            "vpc",
            ".vhd",
            _options(
                Field("subformat", Choice(("dynamic", "fixed"), "a VHD subformat"), "allocation"),
                Field("force_size", Boolean(), "keep the exact virtual size"),
            ),
            qemu_img,
            "VHD (qemu's 'vpc') by qemu-img",
        ),
    )
}
