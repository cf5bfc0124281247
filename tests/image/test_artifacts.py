"""Every hypervisor's artifact, as `lbimage build` shipped it: static checks, then one boot each.

Each artifact's own disk file (taken out of its .ova or .zip where it ships in one) boots to
READY in QEMU with the closest device models its hypervisors/<name>.yaml names under boot_test,
and the booted guest is asked what it sees. One boot per artifact (a class-scoped fixture), as
each TCG boot costs about a minute.

What QEMU cannot stand in for is checked statically: the Hyper-V (VMBus) and Xen (PV) drivers
must be in the UKI's initrd and in the image's module index.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from builder import ROOT, qemu
from builder import manifest as manifest_module
from builder.mkosi import BuiltImage
from builder.packaging import SIZE_BUDGET_BYTES, formats, load_profiles, uki
from builder.packaging.profiles import Hypervisor
from tests.helpers import LOG_DIR, provisioned
from tests.packaging.artifact_checks import ova_members, ova_read, ovf_problems

PROFILES = load_profiles("all")
HYPERVISORS = {hv.name: hv for hv in PROFILES.hypervisors}
# The drivers QEMU cannot emulate for a Linux guest; they must be there all the same.
STATIC_ONLY = ["hv_vmbus", "hv_storvsc", "hv_netvsc", "xen-blkfront", "xen-netfront"]
# QEMU disk bus of a boot test -> (the guest's disk, the driver of its controller)
# The root disk's name and the driver (bus/driver in sysfs) of the device it must sit below.
ROOT_DISK = {
    "virtio": ("vda", "virtio/virtio_blk"),
    "virtio-scsi": ("sda", "virtio/virtio_scsi"),
    "sata": ("sda", "pci/ahci"),
    "pvscsi": ("sda", "pci/vmw_pvscsi"),
    "nvme": ("nvme0n1", "pci/nvme"),
}
BOOT_TIMEOUT = float(os.environ.get("LB_TEST_BOOT_TIMEOUT", "420"))  # seconds to READY under TCG


def entry(manifest: dict, hypervisor: str) -> dict:
    return next(a for a in manifest["artifacts"] if a["hypervisor"] == hypervisor)


def artifact_disk(manifest: dict, dist: Path, hypervisor: str, scratch: Path) -> tuple[Path, str]:
    """(disk file, qemu format) of a hypervisor's artifact, taken out of its .ova/.zip if need be."""
    listed = entry(manifest, hypervisor)
    fmt = formats.DISK_FORMATS[listed["disk_format"]]
    for f in listed["files"]:
        path = dist / f["path"]
        if path.suffix == fmt.suffix:
            return path, fmt.qemu_format
        if path.suffix == ".ova":
            with tarfile.open(path) as tar:
                member = next(m for m in tar.getmembers() if m.name.endswith(fmt.suffix))
                tar.extract(member, scratch)
            return scratch / member.name, fmt.qemu_format
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.endswith(fmt.suffix))
                return Path(archive.extract(name, scratch)), fmt.qemu_format
    raise AssertionError(f"{hypervisor}: no {fmt.suffix} disk in {listed['files']}")


# --- static: no boot ---------------------------------------------------------------------------


def test_manifest_verifies_and_lists_every_hypervisor(built_dist: Path, manifest: dict) -> None:
    assert manifest_module.verify(built_dist) == []
    assert sorted(a["hypervisor"] for a in manifest["artifacts"]) == sorted(HYPERVISORS)


@pytest.mark.parametrize("hypervisor", sorted(HYPERVISORS))
def test_each_artifact_file_is_within_the_size_budget(manifest: dict, hypervisor: str) -> None:
    for f in entry(manifest, hypervisor)["files"]:
        assert f["bytes"] <= SIZE_BUDGET_BYTES, f"{f['path']}: {f['bytes'] / 1e6:.1f} MB > 200 MB"


def test_the_shipped_ovf_passes_schema_and_semantic_checks(built_dist: Path, manifest: dict) -> None:
    ova = next(built_dist / f["path"] for f in entry(manifest, "vmware")["files"] if f["path"].endswith(".ova"))
    members = ova_members(ova)
    assert [m.name.rsplit(".", 1)[1] for m in members] == ["ovf", "mf", "vmdk"]
    ovf = ova_read(ova, members[0].name)
    schema = etree.XMLSchema(etree.parse(str(ROOT / "tests" / "data" / "ovf-schema" / "dsp8023_1.1.1.xsd")))
    assert schema.validate(etree.fromstring(ovf)), schema.error_log
    connected = [nic.connected for nic in HYPERVISORS["vmware"].nics]
    assert (
        ovf_problems(ovf, PROFILES.hardware, connected, {m.name: m.size for m in members}, PROFILES.hardware.disk_bytes)
        == []
    )


def test_vmbus_and_xen_drivers_are_in_the_uki_initrd(built_image: BuiltImage) -> None:
    wanted = STATIC_ONLY + [m for hv in PROFILES.hypervisors for m in hv.guest_modules]
    assert uki.missing_modules(Path(built_image.uki), wanted) == []


def test_vmbus_and_xen_drivers_are_in_the_image(built_image: BuiltImage) -> None:
    """The root file system's modules.dep (what modprobe loads from) names them, and the files exist."""
    release = uki.kernel_release(Path(built_image.uki))
    base = f"/usr/lib/modules/{release}"
    dep = subprocess.run(
        ["debugfs", "-R", f"cat {base}/modules.dep", built_image.root_partition], capture_output=True, text=True
    )
    assert dep.returncode == 0 and dep.stdout, dep.stderr
    paths = {line.split(":", 1)[0] for line in dep.stdout.splitlines() if ":" in line}
    by_name = {uki.MODULE_SUFFIX.sub("", p.rsplit("/", 1)[-1]).replace("-", "_"): p for p in paths}
    nic_drivers = [hv.boot_test.nic_driver for hv in PROFILES.hypervisors]
    for module in STATIC_ONLY + nic_drivers + ["vmw_pvscsi", "hv_utils"]:
        path = by_name.get(module.replace("-", "_"))
        assert path, f"{module} is not in {base}/modules.dep"
        found = subprocess.run(
            ["debugfs", "-R", f"stat {base}/{path}", built_image.root_partition], capture_output=True, text=True
        )
        assert "Type: regular" in found.stdout, f"{base}/{path} is missing from the image"


# --- one boot per artifact --------------------------------------------------------------------


def esp_uki(built_image: BuiltImage) -> Path:
    """The UKI on the built disk's ESP (every artifact's disk is that disk, converted), checked to be
    the build's UKI: the kernel, initrd and command line a direct boot loads are the disk's own."""
    raw = Path(built_image.raw)
    table = json.loads(
        subprocess.run(["sfdisk", "--json", str(raw)], capture_output=True, text=True, check=True).stdout
    )["partitiontable"]
    esp = next(p for p in table["partitions"] if p.get("name") == "esp")
    image = f"{raw}@@{esp['start'] * table.get('sectorsize', 512)}"
    env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}
    listing = subprocess.run(
        ["mdir", "-b", "-i", image, "::/EFI/Linux"], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    ukis = [name for name in listing if name.endswith(".efi")]
    assert len(ukis) == 1, f"expected one UKI on the ESP, found {ukis}"
    target = Path(built_image.raw).with_name("esp-uki.efi")
    subprocess.run(["mcopy", "-o", "-i", image, ukis[0], str(target)], env=env, check=True)
    assert target.read_bytes() == Path(built_image.uki).read_bytes(), "the ESP's UKI is not the build's UKI"
    return target


@dataclass
class Booted:
    hv: Hypervisor
    vm: qemu.VM
    disk: Path


@pytest.fixture(scope="class", params=sorted(HYPERVISORS))
def booted(
    request: pytest.FixtureRequest,
    built_dist: Path,
    built_image: BuiltImage,
    manifest: dict,
    ssh_keypair: tuple[Path, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Booted]:
    """The hypervisor's artifact disk booted to READY with its boot_test device models."""
    hv = HYPERVISORS[request.param]
    scratch = tmp_path_factory.mktemp(f"boot-{hv.name}")
    disk, disk_format = artifact_disk(manifest, built_dist, hv.name, scratch)
    # Where OVMF has no boot driver for the controller (PVSCSI), QEMU loads the disk's own UKI:
    # the boot then proves the initrd and everything after it, not the firmware step.
    direct = None if hv.boot_test.firmware_boot else qemu.DirectKernel.from_uki(esp_uki(built_image), scratch / "uki")
    spec = qemu.VMSpec(
        disk=disk,
        disk_format=disk_format,
        disk_bus=hv.boot_test.disk_bus,
        nics=[qemu.Nic(model=hv.boot_test.nic_model, ssh=(n == 0)) for n in range(len(hv.nics))],
        credentials=provisioned(ssh_keypair[1]),
        direct_kernel=direct,
    )
    vm = qemu.VM(spec, scratch, ssh_key=ssh_keypair[0], name=hv.name)
    failures = request.session.testsfailed
    try:
        vm.start()
        vm.wait_ready(BOOT_TIMEOUT)
        yield Booted(hv, vm, disk)
    except BaseException:
        failures = -1
        raise
    finally:
        vm.stop()
        if (failures < 0 or request.session.testsfailed > failures) and vm.console_log.exists():
            LOG_DIR.mkdir(parents=True, exist_ok=True)
            shutil.copy(vm.console_log, LOG_DIR / f"test_artifacts-{hv.name}-console.log")


class TestBootedArtifact:
    def test_reaches_ready_with_the_manifest_version(self, booted: Booted, manifest: dict) -> None:
        assert booted.vm.version == manifest["version"]

    def test_sees_four_nics_eth0_to_eth3_with_the_expected_driver(self, booted: Booted) -> None:
        # Physical adapters are the interfaces with a device behind them (not lo, bonds, bridges).
        out = booted.vm.ssh(
            "for d in /sys/class/net/*/device; do i=${d%/device}; echo ${i##*/} $(basename $(readlink $d/driver)); done"
        ).stdout.split()
        seen = dict(zip(out[::2], out[1::2], strict=True))
        expected = booted.hv.boot_test.nic_driver
        assert seen == {f"eth{n}": expected for n in range(4)}, seen

    def test_eth_names_follow_adapter_order(self, booted: Booted) -> None:
        """The harness gives adapter n the MAC 52:54:00:1b:00:0n; ethN must be adapter N."""
        macs = booted.vm.ssh(
            "cat /sys/class/net/eth0/address /sys/class/net/eth1/address "
            "/sys/class/net/eth2/address /sys/class/net/eth3/address"
        ).stdout.split()
        assert macs == [f"52:54:00:1b:00:{n:02x}" for n in range(4)]

    def test_root_disk_is_the_whole_virtual_disk_on_the_expected_controller(self, booted: Booted) -> None:
        disk, driver = ROOT_DISK[booted.hv.boot_test.disk_bus]
        # / is a RAM overlay; the root slot it is made of is mounted read-only at /run/lbroot/slot.
        source = booted.vm.ssh("findmnt -no SOURCE /run/lbroot/slot").stdout.strip()
        assert source.startswith(f"/dev/{disk}"), source
        sectors = int(booted.vm.ssh(f"cat /sys/block/{disk}/size").stdout)
        assert sectors * 512 == PROFILES.hardware.disk_bytes
        bus, name = driver.split("/")
        bound = booted.vm.ssh(f"for d in /sys/bus/{bus}/drivers/{name}/*/; do readlink -f $d; done").stdout.split()
        disk_path = booted.vm.ssh(f"readlink -f /sys/block/{disk}").stdout.strip()
        assert any(disk_path.startswith(device + "/") for device in bound), (
            f"{disk_path} is not below a device bound to {driver}: {bound}"
        )

    def test_the_boot_path_is_the_one_the_profile_names(self, booted: Booted) -> None:
        """Which step the boot proves: firmware_boot means OVMF -> systemd-boot -> UKI -> initrd;
        otherwise QEMU loaded the disk's UKI and the boot proves the initrd onward."""
        cmdline = booted.vm.ssh("cat /proc/cmdline").stdout
        loader = booted.vm.ssh("cat /sys/firmware/efi/efivars/LoaderInfo-* 2>/dev/null | tr -d '\\0' || true").stdout
        if booted.hv.boot_test.firmware_boot:
            assert "systemd-boot" in loader, "booted without systemd-boot, though the firmware should boot the disk"
        else:
            assert "systemd-boot" not in loader, "systemd-boot ran, though QEMU should have loaded the UKI"
        assert f"root=PARTLABEL=lbroot_{booted.vm.version}" in cmdline
