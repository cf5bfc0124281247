"""The hardware profile and the hypervisor profiles: loading, and the errors a wrong file gets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from builder import ROOT
from builder.packaging import ProfileError, load_profiles
from builder.packaging.profiles import HYPERVISORS_DIR, known_hypervisors, reference_doc

FIVE = ["hyperv", "kvm", "nutanix", "vmware", "xen"]


def edit(directory: Path, name: str, change) -> None:
    """Load hypervisors/<name>, let `change` modify the mapping, write it back."""
    path = directory / name
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_all_five_load_with_the_profile_hardware() -> None:
    profiles = load_profiles("all")
    assert [hv.name for hv in profiles.hypervisors] == FIVE
    hw = profiles.hardware
    assert (hw.cpus, hw.memory_mib, hw.nics, hw.disk_bytes) == (2, 4096, 4, 21474836480)
    assert hw.nic_names == ("eth0", "eth1", "eth2", "eth3")


def test_connect_policy_vmware_first_only_others_none() -> None:
    for hv in load_profiles("all").hypervisors:
        expected = [True, False, False, False] if hv.name == "vmware" else [False] * 4
        assert [nic.connected for nic in hv.nics] == expected, hv.name
        assert [nic.name for nic in hv.nics] == ["eth0", "eth1", "eth2", "eth3"]


def test_comma_list_keeps_order_and_drops_duplicates() -> None:
    profiles = load_profiles(" vmware, kvm ,vmware")
    assert [hv.name for hv in profiles.hypervisors] == ["vmware", "kvm"]


@pytest.mark.parametrize("arg", ["proxmox", "kvm,proxmox", ",", ""])
def test_unknown_hypervisor_is_named_with_the_known_ones(arg: str) -> None:
    with pytest.raises(ValueError) as err:
        load_profiles(arg)
    message = str(err.value)
    assert "unknown hypervisor" in message
    assert "hyperv, kvm, nutanix, vmware, xen" in message
    if "proxmox" in arg:
        assert "'proxmox'" in message


def test_qcow2_is_converted_once_for_kvm_and_nutanix() -> None:
    assert set(load_profiles("all").formats()) == {"vmdk", "vhdx", "qcow2", "vhd"}


# Each case: file, change, and what the message must say (file, field, reason).
BROKEN = [
    (
        "profile.yaml",
        lambda d: d["hardware"].update(cpus="two"),
        r"profile\.yaml: hardware\.cpus: must be a whole number from 1 to 64, not 'two' \(line 3\)",
    ),
    (
        "profile.yaml",
        lambda d: d["hardware"].update(cpus=True),
        r"hardware\.cpus: must be a whole number from 1 to 64, not true \(a true/false value\)",
    ),
    (
        "profile.yaml",
        lambda d: d["hardware"].update(memory_mib=100),
        r"hardware\.memory_mib: 100 is out of range \(256 to",
    ),
    ("profile.yaml", lambda d: d["hardware"].pop("nics"), r"profile\.yaml: hardware\.nics: missing"),
    (
        "profile.yaml",
        lambda d: d["hardware"].update(nic=4),
        r"profile\.yaml: hardware\.nic: unknown key \(expected one of cpus, memory_mib",
    ),
    (
        "profile.yaml",
        lambda d: d["hardware"].update(connected_at_power_on=["eth4"]),
        r"hardware\.connected_at_power_on: eth4 does not exist; the profile has 4 NICs",
    ),
    (
        "profile.yaml",
        lambda d: d["product"].update(name="LB Appliance"),
        r"product\.name: 'LB Appliance' is not a lower-case",
    ),
    (
        "vmware.yaml",
        lambda d: d["disk"].update(format="vmdx"),
        r"vmware\.yaml: disk\.format: 'vmdx' is not a disk format \(expected one of vmdk",
    ),
    (
        "vmware.yaml",
        lambda d: d["disk"]["options"].update(compression_level=11),
        r"vmware\.yaml: disk\.options\.compression_level: 11 is out of range \(1 to 9\) \(line \d+\)",
    ),
    (
        "hyperv.yaml",
        lambda d: d["disk"]["options"].update(cluster_size="1M"),
        r"hyperv\.yaml: disk\.options: 'cluster_size' is not an option of vhdx",
    ),
    (
        "kvm.yaml",
        lambda d: d["boot_test"].update(disk_bus="floppy"),
        r"kvm\.yaml: boot_test\.disk_bus: 'floppy' is not a QEMU disk bus",
    ),
    ("kvm.yaml", lambda d: d.pop("nic_model"), r"kvm\.yaml: nic_model: missing"),
    ("kvm.yaml", lambda d: d.update(bundel="files"), r"kvm\.yaml: bundel: unknown key"),
    ("kvm.yaml", lambda d: d.update(bundle="tarball"), r"kvm\.yaml: bundle: 'tarball' is not a bundle kind"),
    (
        "kvm.yaml",
        lambda d: d.update(descriptor="xen.cfg.j2"),
        r"kvm\.yaml: descriptor: xen\.cfg\.j2 must be named kvm\.",
    ),
    (
        "kvm.yaml",
        lambda d: d.update(descriptor="kvm.yaml.j2"),
        r"kvm\.yaml: descriptor: .*kvm\.yaml\.j2 does not exist",
    ),
    (
        "xen.yaml",
        lambda d: d.update(connected_at_power_on=["eth0", "eth0"]),
        r"xen\.yaml: connected_at_power_on\[1\]: lists eth0 twice \(items 0 and 1\)",
    ),
    (
        "nutanix.yaml",
        lambda d: d["disk"]["options"].update(compression_type="zstd"),
        r"nutanix\.yaml: disk\.options: .* differ from kvm\.yaml's .* for the same format qcow2",
    ),
]


@pytest.mark.parametrize("name,change,message", BROKEN, ids=[m for _, _, m in BROKEN])
def test_a_broken_file_is_reported_with_file_field_and_reason(profile_dir: Path, name, change, message) -> None:
    edit(profile_dir, name, change)
    with pytest.raises(ProfileError, match=message):
        load_profiles("all", profile_dir)


def test_invalid_yaml_names_the_file(profile_dir: Path) -> None:
    (profile_dir / "xen.yaml").write_text("title: [unclosed\n")
    with pytest.raises(ProfileError, match=r"xen\.yaml: line 2: YAML syntax error: "):
        load_profiles("xen", profile_dir)


def test_every_problem_of_a_file_is_reported_at_once(profile_dir: Path) -> None:
    edit(profile_dir, "profile.yaml", lambda d: d["hardware"].update(cpus=0, disk_gib="20"))
    with pytest.raises(ProfileError) as err:
        load_profiles("kvm", profile_dir)
    assert "hardware.cpus" in str(err.value) and "hardware.disk_gib" in str(err.value)


def test_a_sixth_hypervisor_is_two_files(profile_dir: Path) -> None:
    (profile_dir / "proxmox.yaml").write_text(
        "title: Proxmox VE\ndescriptor: proxmox.sh.j2\nbundle: files\n"
        "disk: {format: qcow2, options: {compressed: true, compat: '1.1', compression_type: zlib}}\n"
        "disk_bus: scsi\nnic_model: virtio\n"
        "boot_test: {disk_bus: virtio-scsi, nic_model: virtio, nic_driver: virtio_net}\n"
    )
    (profile_dir / "proxmox.sh.j2").write_text("qm create 900 --cores {{ hardware.cpus }}\n")
    assert "proxmox" in known_hypervisors(profile_dir)
    profiles = load_profiles("all", profile_dir)
    assert [hv.name for hv in profiles.hypervisors][-2:] == ["vmware", "xen"]
    assert "proxmox" in [hv.name for hv in profiles.hypervisors]


def test_the_docs_carry_the_field_reference() -> None:
    """docs/hypervisors.md shows the fields the tables define (regenerate with reference_doc())."""
    docs = (ROOT / "docs" / "hypervisors.md").read_text()
    assert reference_doc() in docs


def test_every_hypervisor_file_has_exactly_one_template() -> None:
    for name in known_hypervisors():
        templates = sorted(p.name for p in HYPERVISORS_DIR.glob(f"{name}.*.j2"))
        assert len(templates) == 1, (name, templates)
        assert re.fullmatch(rf"{name}\.[a-z0-9]+\.j2", templates[0])
