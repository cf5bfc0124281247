"""What a unified kernel image carries: its PE sections, and the files and modules of its initrd.

Packaging checks that each hypervisor's guest_modules are in the UKI's initrd before it ships an
artifact: a Hyper-V disk without hv_storvsc there, or a Xen disk without xen-blkfront (HVM guests
unplug the emulated disk early), would never find its root file system.

The .initrd section is a concatenation of cpio archives ("newc"), each zstd-compressed or plain,
with zero padding between them. The zstd frames are walked here (RFC 8878 frame and block headers)
to find where each ends; the zstd command line decompresses them.
"""

from __future__ import annotations

import lzma
import re
import struct
import subprocess
import zlib
from pathlib import Path

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CPIO_MAGICS = (b"070701", b"070702")
CPIO_HEADER = 110
MODULE_SUFFIX = re.compile(r"\.ko(\.(xz|zst|gz))?$")


def pe_sections(data: bytes) -> dict[str, bytes]:
    """{section name: contents} of a PE image, each cut to its virtual size."""
    if data[:2] != b"MZ":
        raise ValueError("not a PE image (no MZ header)")
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if data[pe : pe + 4] != b"PE\0\0":
        raise ValueError("not a PE image (no PE signature)")
    count, optional_size = struct.unpack_from("<H", data, pe + 6)[0], struct.unpack_from("<H", data, pe + 20)[0]
    table = pe + 24 + optional_size
    sections = {}
    for n in range(count):
        name, virtual_size, _, raw_size, raw_pointer = struct.unpack_from("<8sIIII", data, table + 40 * n)
        sections[name.rstrip(b"\0").decode()] = data[raw_pointer : raw_pointer + min(virtual_size, raw_size)]
    return sections


def _zstd_frame_end(data: bytes, start: int) -> int:
    pos = start + 4
    descriptor = data[pos]
    pos += 1
    single_segment = descriptor >> 5 & 1
    if not single_segment:
        pos += 1  # window descriptor
    pos += (0, 1, 2, 4)[descriptor & 3]  # dictionary id
    pos += (single_segment, 2, 4, 8)[descriptor >> 6]  # frame content size
    while True:
        header = int.from_bytes(data[pos : pos + 3], "little")
        pos += 3
        last, block_type, size = header & 1, header >> 1 & 3, header >> 3
        if block_type == 3:
            raise ValueError(f"corrupt zstd frame at offset {start} (reserved block type)")
        pos += 1 if block_type == 1 else size  # RLE blocks store one byte
        if last:
            break
    if descriptor >> 2 & 1:
        pos += 4  # content checksum
    return pos


def _cpio_names(data: bytes, pos: int = 0) -> tuple[list[str], int]:
    """Names in the newc archive at `pos` and the offset just past its trailer."""
    names: list[str] = []
    while True:
        if data[pos : pos + 6] not in CPIO_MAGICS:
            raise ValueError(f"corrupt cpio archive at offset {pos}")
        file_size = int(data[pos + 54 : pos + 62], 16)
        name_size = int(data[pos + 94 : pos + 102], 16)
        name = data[pos + CPIO_HEADER : pos + CPIO_HEADER + name_size - 1].decode(errors="replace")
        pos = (pos + CPIO_HEADER + name_size + 3) & ~3
        pos = (pos + file_size + 3) & ~3
        if name == "TRAILER!!!":
            return names, pos
        names.append(name)


def _decompress(data: bytes, pos: int) -> tuple[bytes, int]:
    """(payload, end) of the compressed stream at `pos`."""
    if data.startswith(ZSTD_MAGIC, pos):
        end = _zstd_frame_end(data, pos)
        result = subprocess.run(["zstd", "-dc"], input=data[pos:end], capture_output=True, check=True)
        return result.stdout, end
    if data.startswith(b"\x1f\x8b", pos):
        d = zlib.decompressobj(wbits=31)
        return d.decompress(data[pos:]), len(data) - len(d.unused_data)
    if data.startswith(b"\xfd7zXZ\0", pos):
        x = lzma.LZMADecompressor()
        return x.decompress(data[pos:]), len(data) - len(x.unused_data)
    raise ValueError(f"unknown archive format at offset {pos}: {data[pos : pos + 8].hex()}")


def initrd_files(initrd: bytes) -> list[str]:
    """Every path in a (possibly concatenated, possibly compressed) initramfs."""
    names: list[str] = []
    pos = 0
    while pos < len(initrd):
        if initrd[pos] == 0:  # padding between archives
            pos += 1
            continue
        if initrd[pos : pos + 6] in CPIO_MAGICS:
            found, pos = _cpio_names(initrd, pos)
            names += found
            continue
        payload, pos = _decompress(initrd, pos)
        inner = 0
        while inner < len(payload):  # one stream may hold several archives
            if payload[inner] == 0:
                inner += 1
                continue
            found, inner = _cpio_names(payload, inner)
            names += found
    return names


def module_names(paths: list[str]) -> set[str]:
    """Kernel module names among `paths`, spelt the way modprobe compares them (- == _)."""
    return {MODULE_SUFFIX.sub("", p.rsplit("/", 1)[-1]).replace("-", "_") for p in paths if MODULE_SUFFIX.search(p)}


def initrd_modules(uki: Path) -> set[str]:
    return module_names(initrd_files(pe_sections(uki.read_bytes())[".initrd"]))


def kernel_release(uki: Path) -> str:
    return pe_sections(uki.read_bytes())[".uname"].decode().strip("\0\n ")


def missing_modules(uki: Path, wanted: list[str] | tuple[str, ...]) -> list[str]:
    present = initrd_modules(uki)
    return [m for m in wanted if m.replace("-", "_") not in present]
