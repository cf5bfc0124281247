"""The streamOptimized VMDK writer, proven against the raw image by qemu-img and libvmdk."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from builder.packaging import vmdk
from builder.packaging.sparse import data_blocks, data_extents


@pytest.fixture(scope="module")
def stream(synthetic_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("vmdk") / "disk.vmdk"
    vmdk.write_stream_optimized(synthetic_raw, target, seed="test")
    return target


def qemu_img(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True)


def test_qemu_img_reads_the_same_disk_as_the_raw(synthetic_raw: Path, stream: Path) -> None:
    result = qemu_img("compare", "-f", "raw", "-F", "vmdk", str(synthetic_raw), str(stream))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical" in result.stdout


def test_qemu_img_check_finds_no_errors(stream: Path) -> None:
    result = qemu_img("check", "-f", "vmdk", str(stream))
    assert result.returncode == 0, result.stdout + result.stderr


def test_libvmdk_reads_it_as_stream_optimized(stream: Path) -> None:
    """A second, independent reader (Debian libvmdk-utils): it rejects a misspelt descriptor."""
    result = subprocess.run(["vmdkinfo", str(stream)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Stream optimized" in result.stdout
    assert "(21474836480 bytes)" in result.stdout


def test_canonical_stream_layout(synthetic_raw: Path, stream: Path) -> None:
    layout = vmdk.read_layout(stream)
    assert layout.flags == 0x30001
    assert layout.capacity * 512 == synthetic_raw.stat().st_size
    assert layout.header_gd_offset == vmdk.GD_AT_END  # the GD is only known at the end
    assert layout.footer_gd_offset not in (None, vmdk.GD_AT_END)
    assert layout.markers[-3:] == ["GD", "FOOTER", "EOS"]
    assert layout.markers.count("EOS") == 1 and layout.bytes_after_eos == 0  # qemu-img leaves 127 zero sectors
    assert set(layout.markers[:-3]) == {"GT"}
    assert layout.grain_lbas == sorted(set(layout.grain_lbas))  # each grain once, in LBA order
    assert layout.descriptor.startswith("# Disk DescriptorFile\n")
    assert 'createType="streamOptimized"' in layout.descriptor
    assert f'RW {layout.capacity} SPARSE "disk.vmdk"' in layout.descriptor


def test_zero_blocks_are_not_stored(synthetic_raw: Path, stream: Path) -> None:
    """The raw file has 256 KiB of allocated zeros at 12 MiB: no grain may cover them."""
    lbas = set(vmdk.read_layout(stream).grain_lbas)
    zero_grains = {(12 * 2**20 + n * vmdk.GRAIN_BYTES) // 512 for n in range(4)}
    assert not lbas & zero_grains
    straddler = (40 * 2**20) // 512  # 20 bytes across a grain boundary
    assert {straddler, straddler + vmdk.GRAIN_SECTORS} <= lbas


def test_same_input_same_bytes(synthetic_raw: Path, stream: Path, tmp_path: Path) -> None:
    again = tmp_path / "disk.vmdk"
    vmdk.write_stream_optimized(synthetic_raw, again, seed="test")
    assert again.read_bytes() == stream.read_bytes()


def test_a_damaged_grain_is_caught_by_the_comparison(synthetic_raw: Path, stream: Path, tmp_path: Path) -> None:
    """The proof above can fail: flip one byte inside the first grain's compressed data."""
    damaged = tmp_path / "disk.vmdk"
    data = bytearray(stream.read_bytes())
    data[vmdk.OVERHEAD_SECTORS * 512 + 200] ^= 0xFF
    damaged.write_bytes(bytes(data))
    result = qemu_img("compare", "-f", "raw", "-F", "vmdk", str(synthetic_raw), str(damaged))
    assert result.returncode != 0


def test_odd_sizes_are_refused(tmp_path: Path) -> None:
    raw = tmp_path / "odd.raw"
    raw.write_bytes(b"x" * 1000)
    with pytest.raises(ValueError, match="sectors"):
        vmdk.write_stream_optimized(raw, tmp_path / "odd.vmdk")


def test_a_partial_last_grain_round_trips(tmp_path: Path) -> None:
    raw = tmp_path / "small.raw"
    raw.write_bytes(os.urandom(3 * vmdk.GRAIN_BYTES + 4096))  # 3 grains and a bit
    target = tmp_path / "small.vmdk"
    vmdk.write_stream_optimized(raw, target)
    assert qemu_img("compare", "-f", "raw", "-F", "vmdk", str(raw), str(target)).returncode == 0


def test_allocation_map_skips_holes(tmp_path: Path) -> None:
    path = tmp_path / "sparse"
    with path.open("wb") as f:
        f.truncate(64 * 2**20)
        f.seek(5 * 2**20)
        f.write(b"a" * 10)
        f.seek(40 * 2**20 - 1)
        f.write(b"b" * 2)  # crosses a 1 MiB boundary
    fd = os.open(path, os.O_RDONLY)
    try:
        extents = list(data_extents(fd, path.stat().st_size))
        blocks = list(data_blocks(fd, path.stat().st_size, 2**20))
    finally:
        os.close(fd)
    assert sum(end - start for start, end in extents) < 2**20  # holes were not visited
    assert blocks == [5, 39, 40]
