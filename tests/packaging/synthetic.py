"""Small real inputs for the packaging tests: no built image, no VM (the fixtures are in conftest.py).

- a 20 GiB sparse raw disk (the profile's size) with a GPT and a few MiB of data placed to hit
  the converters' edge cases: data across a grain boundary, allocated-but-zero blocks, data in
  several 32 MiB grain-table spans, and the backup GPT at the very end;
- a minimal UKI: a PE file whose .initrd holds a zstd-compressed cpio with the hypervisors' guest
  modules, then a plain cpio, with padding between them, like mkosi's;
"""

from __future__ import annotations

import random
import struct
import subprocess
from pathlib import Path

from builder.mkosi import BuiltImage
from builder.packaging import load_profiles

GIB = 2**30
MIB = 2**20
KVER = "6.12.0-test-amd64"
GPT = """label: gpt
first-lba: 2048
start=2048, size=16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp"
start=18432, size=65536, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="lbroot_0.0.1"
start=83968, size=65536, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="_empty"
start=149504, size=32768, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="lbdata"
"""


def make_raw(path: Path, size: int = 20 * GIB) -> Path:
    """A sparse disk image with a GPT and data laid out to exercise the converters."""
    with path.open("wb") as f:
        f.truncate(size)
    subprocess.run(["sfdisk", "--quiet", str(path)], input=GPT, text=True, check=True)
    rng = random.Random(20261125)
    text = b"".join(b"lbappliance test data %08d\n" % n for n in range(40000))  # compressible
    writes = [
        (1 * MIB, rng.randbytes(300_000)),  # ESP area, not grain-aligned at the end
        (9 * MIB + 1000, text[:200_000]),  # starts inside one grain, spans four
        (12 * MIB, bytes(256 * 1024)),  # allocated, but all zeros
        (40 * MIB + 65536 - 10, b"X" * 20),  # straddles a 64 KiB grain boundary
        (70 * MIB, rng.randbytes(64 * 1024)),  # a third grain table
        (7 * GIB + 12345, text[:70_000]),  # far away: another table
    ]
    with path.open("r+b") as f:
        for offset, data in writes:
            f.seek(offset)
            f.write(data)
    return path


def _cpio(entries: list[tuple[str, bytes]]) -> bytes:
    """A newc cpio archive with these regular files (and its trailer)."""
    out = b""
    for n, (name, data) in enumerate([*entries, ("TRAILER!!!", b"")]):
        encoded = name.encode() + b"\0"
        header = b"070701" + b"".join(
            b"%08X" % v
            for v in (
                n + 1,
                0o100644 if data or name != "TRAILER!!!" else 0,
                0,
                0,
                1,
                0,
                len(data),
                0,
                0,
                0,
                0,
                len(encoded),
                0,
            )
        )
        out += header + encoded
        out += bytes(-len(out) % 4) + data
        out += bytes(-len(out) % 4)
    return out


def make_uki(path: Path, modules: list[str]) -> Path:
    """A PE image with .uname and .initrd sections, the initrd holding `modules` as mkosi would."""
    module_files = [
        (f"usr/lib/modules/{KVER}/kernel/drivers/{m}.ko.xz", b"\xfd7zXZ fake " + m.encode()) for m in modules
    ]
    main = subprocess.run(
        ["zstd", "-q", "-c", "-3"], input=_cpio([("init", b"#!/bin/sh\n")]), capture_output=True, check=True
    ).stdout
    mods = subprocess.run(["zstd", "-q", "-c", "-1"], input=_cpio(module_files), capture_output=True, check=True).stdout
    initrd = main + bytes(-len(main) % 4) + mods + bytes(-len(mods) % 4) + _cpio([("early_cpio", b"1\n")])
    sections = [(b".uname", KVER.encode()), (b".initrd", initrd)]
    pe_offset, header_size = 0x40, 0x400
    table = b""
    data = b""
    for name, content in sections:
        pointer = header_size + len(data)
        table += struct.pack("<8sIIIIIIHHI", name, len(content), pointer, len(content), pointer, 0, 0, 0, 0, 0)
        data += content + bytes(-len(content) % 512)
    coff = struct.pack("<HHIIIHH", 0x8664, len(sections), 0, 0, 0, 0, 0x22)
    head = b"MZ".ljust(0x3C, b"\0") + struct.pack("<I", pe_offset)
    head = head.ljust(pe_offset, b"\0") + b"PE\0\0" + coff + table
    path.write_bytes(head.ljust(header_size, b"\0") + data)
    return path


def all_guest_modules() -> list[str]:
    return sorted({m for hv in load_profiles("all").hypervisors for m in hv.guest_modules})


def make_built(directory: Path, raw: Path, uki: Path, version: str = "0.0.1") -> BuiltImage:
    return BuiltImage(
        version=version,
        raw=str(raw),
        root_partition=str(directory / "root.raw"),
        uki=str(uki),
        package_list=str(directory / "manifest"),
        virtual_size=raw.stat().st_size,
        inputs_digest="0" * 64,
        built="2026-11-25T12:00:00Z",
        source_date_epoch=1795600000,
    )
