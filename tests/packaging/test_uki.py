"""Reading the UKI's initrd, and refusing to package for a platform whose disk driver is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.mkosi import BuiltImage
from builder.packaging import load_profiles, package, uki
from tests.packaging.synthetic import KVER, all_guest_modules, make_built, make_uki


def test_all_archives_of_the_initrd_are_read(synthetic_uki: Path) -> None:
    files = uki.initrd_files(uki.pe_sections(synthetic_uki.read_bytes())[".initrd"])
    assert files[0] == "init"  # first, zstd-compressed archive
    assert files[-1] == "early_cpio"  # last, plain archive after padding
    assert uki.kernel_release(synthetic_uki) == KVER


def test_module_names_compare_like_modprobe(synthetic_uki: Path) -> None:
    modules = uki.initrd_modules(synthetic_uki)
    assert {"xen_blkfront", "xen_netfront", "hv_vmbus", "hv_storvsc", "hv_netvsc"} <= modules
    assert uki.missing_modules(synthetic_uki, ["xen-blkfront", "hv_vmbus", "floppy"]) == ["floppy"]


def test_not_a_pe_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.efi").write_bytes(b"\x7fELF" + bytes(100))
    with pytest.raises(ValueError, match="not a PE image"):
        uki.pe_sections((tmp_path / "x.efi").read_bytes())


def test_packaging_refuses_a_uki_without_a_platform_disk_driver(built: BuiltImage, tmp_path: Path) -> None:
    modules = [m for m in all_guest_modules() if m not in ("hv_storvsc", "xen-blkfront")]
    lacking = make_built(tmp_path, Path(built.raw), make_uki(tmp_path / "uki.efi", modules))
    with pytest.raises(ValueError) as err:
        package(lacking, load_profiles("kvm,hyperv,xen"), tmp_path / "dist")
    assert "hv_storvsc (hyperv)" in str(err.value) and "xen-blkfront (xen)" in str(err.value)
    assert not (tmp_path / "dist").exists()
    package(lacking, load_profiles("kvm"), tmp_path / "dist")  # KVM alone does not need them
