"""package() on a small synthetic image: every artifact, every descriptor checked against the profile."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from lxml import etree

from builder import ROOT, manifest
from builder.mkosi import BuiltImage
from builder.packaging import formats, load_profiles, package
from builder.packaging.bundles import BundleJob, Disk
from builder.packaging.profiles import Profiles
from tests.packaging.artifact_checks import (
    ova_members,
    ova_read,
    ovf_problems,
    powershell_commands,
    read_mf,
    xl_config,
    xl_spec,
)

SCHEMA_DIR = ROOT / "tests" / "data" / "ovf-schema"
LBIMAGE = Path(sys.executable).parent / "lbimage"
STEM = "lbappliance_0.0.1"
VSIZE = 20 * 2**30


@pytest.fixture(scope="module")
def profiles() -> Profiles:
    return load_profiles("all")


@pytest.fixture(scope="module")
def dist_manifest(packaged: Path) -> dict:
    return json.loads((packaged / "manifest.json").read_text())


def entry(dist_manifest: dict, hv: str) -> dict:
    return next(a for a in dist_manifest["artifacts"] if a["hypervisor"] == hv)


def compare(raw: Path, disk: Path, fmt: str) -> None:
    result = subprocess.run(
        ["qemu-img", "compare", "-f", "raw", "-F", fmt, str(raw), str(disk)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def qemu_info(disk: Path, fmt: str) -> dict:
    return json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", "-f", fmt, str(disk)], capture_output=True, text=True, check=True
        ).stdout
    )


# --- manifest.json and lbimage verify ---------------------------------------------------------


def test_manifest_has_one_entry_per_hypervisor(dist_manifest: dict) -> None:
    assert dist_manifest["name"] == "lbappliance"
    assert dist_manifest["version"] == "0.0.1"
    assert dist_manifest["built"] == "2026-11-25T12:00:00Z"
    assert [(a["hypervisor"], a["disk_format"]) for a in dist_manifest["artifacts"]] == [
        ("hyperv", "vhdx"),
        ("kvm", "qcow2"),
        ("nutanix", "qcow2"),
        ("vmware", "vmdk"),
        ("xen", "vhd"),
    ]
    assert {a["virtual_size"] for a in dist_manifest["artifacts"]} == {VSIZE}
    assert manifest.check_schema(dist_manifest) == []


def test_dist_holds_exactly_the_manifest_files(packaged: Path, dist_manifest: dict) -> None:
    names = {p.name for p in packaged.iterdir()}
    assert names == set(manifest.listed_files(dist_manifest)) | {"manifest.json", "SHA256SUMS"}


def test_kvm_and_nutanix_share_the_one_qcow2(dist_manifest: dict) -> None:
    qcow2 = [f for hv in ("kvm", "nutanix") for f in entry(dist_manifest, hv)["files"] if f["path"].endswith(".qcow2")]
    assert len(qcow2) == 2 and qcow2[0] == qcow2[1]


def test_verify_passes_and_sha256sums_agree(packaged: Path) -> None:
    assert manifest.verify(packaged) == []
    result = subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=packaged, capture_output=True)
    assert result.returncode == 0, result.stdout


def test_lbimage_verify_detects_a_corrupted_and_a_missing_file(packaged: Path, tmp_path: Path) -> None:
    dist = Path(shutil.copytree(packaged, tmp_path / "dist"))
    ok = subprocess.run([str(LBIMAGE), "verify", str(dist)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    xml = dist / f"{STEM}-kvm.xml"
    xml.write_bytes(xml.read_bytes().replace(b"<vcpu", b"<vCPU", 1))  # same size, other content
    (dist / f"{STEM}-xen.zip").unlink()
    bad = subprocess.run([str(LBIMAGE), "verify", str(dist)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert f"kvm: {STEM}-kvm.xml: sha256" in bad.stderr
    assert f"xen: {STEM}-xen.zip: missing" in bad.stderr


def test_verify_reports_a_wrong_size_and_a_bad_manifest(packaged: Path, tmp_path: Path) -> None:
    dist = Path(shutil.copytree(packaged, tmp_path / "dist"))
    with (dist / f"{STEM}-nutanix.json").open("a") as f:
        f.write(" ")
    assert any("nutanix.json" in p and "bytes" in p for p in manifest.verify(dist))
    (dist / "manifest.json").write_text('{"name": "x", "artifacts": []}')
    problems = manifest.verify(dist)
    assert "manifest.json: artifacts: lists nothing; a manifest lists at least one artifact" in problems
    assert any("version" in p for p in problems)


# --- VMware: OVA ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ova(packaged: Path) -> Path:
    return packaged / f"{STEM}-vmware.ova"


def test_ova_is_ustar_with_ovf_then_mf_then_disk(ova: Path) -> None:
    members = ova_members(ova)
    assert [m.name for m in members] == [f"{STEM}.ovf", f"{STEM}.mf", f"{STEM}.vmdk"]
    with ova.open("rb") as f:
        assert f.read(512)[257:265] == b"ustar\x0000"  # POSIX ustar, not GNU
    assert all(m.uid == 0 and m.gid == 0 and m.mode == 0o644 and m.mtime == 1795600000 for m in members)


def test_mf_lines_are_exact_and_hashes_match(ova: Path) -> None:
    import hashlib

    text = ova_read(ova, f"{STEM}.mf").decode()
    assert text.endswith("\n") and "SHA256 (" not in text and "SHA2-256" not in text
    sums = read_mf(text)
    assert set(sums) == {f"{STEM}.ovf", f"{STEM}.vmdk"}
    for name, digest in sums.items():
        assert hashlib.sha256(ova_read(ova, name)).hexdigest() == digest, name


def test_ovf_validates_against_the_dmtf_schema(ova: Path) -> None:
    schema = etree.XMLSchema(etree.parse(str(SCHEMA_DIR / "dsp8023_1.1.1.xsd")))
    document = etree.fromstring(ova_read(ova, f"{STEM}.ovf"))
    assert document.tag == "{http://schemas.dmtf.org/ovf/envelope/1}Envelope"
    assert schema.validate(document), schema.error_log


def test_ovf_matches_the_profile(ova: Path, profiles: Profiles) -> None:
    sizes = {m.name: m.size for m in ova_members(ova)}
    problems = ovf_problems(ova_read(ova, f"{STEM}.ovf"), profiles.hardware, [True, False, False, False], sizes, VSIZE)
    assert problems == []


def test_ovf_semantic_check_can_fail(ova: Path, profiles: Profiles) -> None:
    """The checker is not a rubber stamp: break the descriptor three ways."""
    ovf = ova_read(ova, f"{STEM}.ovf").decode()
    sizes = {m.name: m.size for m in ova_members(ova)}
    broken = (
        ovf.replace("<rasd:Parent>3</rasd:Parent>", "<rasd:Parent>42</rasd:Parent>")
        .replace("<rasd:InstanceID>6</rasd:InstanceID>", "<rasd:InstanceID>5</rasd:InstanceID>")
        .replace(
            "<rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>",
            "<rasd:AutomaticAllocation>false</rasd:AutomaticAllocation>",
        )
    )
    problems = " | ".join(ovf_problems(broken.encode(), profiles.hardware, [True, False, False, False], sizes, VSIZE))
    assert "Parent 42 is not a controller" in problems
    assert "InstanceID 5 is used by 2 items" in problems
    assert "AutomaticAllocation" in problems


def test_ova_disk_is_the_raw_image(ova: Path, built: BuiltImage, tmp_path: Path) -> None:
    with tarfile.open(ova) as tar:
        tar.extract(f"{STEM}.vmdk", tmp_path)
    disk = tmp_path / f"{STEM}.vmdk"
    compare(Path(built.raw), disk, "vmdk")
    info = qemu_info(disk, "vmdk")
    assert info["virtual-size"] == VSIZE
    assert info["format-specific"]["data"]["create-type"] == "streamOptimized"


# --- Hyper-V: zip of VHDX + PowerShell ------------------------------------------------------------


@pytest.fixture(scope="module")
def hyperv_zip(packaged: Path) -> zipfile.ZipFile:
    return zipfile.ZipFile(packaged / f"{STEM}-hyperv.zip")


def test_hyperv_zip_members(hyperv_zip: zipfile.ZipFile) -> None:
    assert hyperv_zip.namelist() == [f"{STEM}-hyperv.ps1", f"{STEM}.vhdx"]
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in hyperv_zip.infolist())
    assert hyperv_zip.testzip() is None


def test_hyperv_script_field_by_field(hyperv_zip: zipfile.ZipFile, profiles: Profiles) -> None:
    text = hyperv_zip.read(f"{STEM}-hyperv.ps1").decode("ascii")  # PowerShell 5.1 reads BOM-less files as ANSI
    calls = powershell_commands(text)
    by_name: dict[str, list[dict[str, str]]] = {}
    for cmdlet, params in calls:
        by_name.setdefault(cmdlet, []).append(params)
    (new_vm,) = by_name["New-VM"]
    assert new_vm["-Generation"] == "2"
    assert new_vm["-MemoryStartupBytes"] == "4096MB"
    assert new_vm["-VHDPath"] == "$disk"
    (memory,) = by_name["Set-VMMemory"]
    assert (memory["-DynamicMemoryEnabled"], memory["-StartupBytes"]) == ("$false", "4096MB")
    assert by_name["Set-VMProcessor"] == [{"-VM": "$vm", "-Count": "2"}]
    (firmware,) = by_name["Set-VMFirmware"]
    assert firmware["-EnableSecureBoot"] == "Off"
    assert "Get-VMNetworkAdapter -VM $vm | Remove-VMNetworkAdapter" in text  # New-VM's own adapter goes
    adapters = by_name["Add-VMNetworkAdapter"]
    assert [a["-Name"] for a in adapters] == ["eth0", "eth1", "eth2", "eth3"]
    assert not any("-SwitchName" in a for a in adapters)  # none connected
    assert by_name["Set-VMComPort"][0]["-Number"] == "1"
    assert f"Join-Path $PSScriptRoot '{STEM}.vhdx'" in text


def test_hyperv_vhdx_is_the_raw_image(hyperv_zip: zipfile.ZipFile, built: BuiltImage, tmp_path: Path) -> None:
    disk = Path(hyperv_zip.extract(f"{STEM}.vhdx", tmp_path))
    compare(Path(built.raw), disk, "vhdx")
    assert qemu_info(disk, "vhdx")["virtual-size"] == VSIZE


# --- KVM: qcow2 + libvirt XML ---------------------------------------------------------------------


def test_libvirt_xml_validates(packaged: Path) -> None:
    result = subprocess.run(
        ["virt-xml-validate", str(packaged / f"{STEM}-kvm.xml"), "domain"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_libvirt_xml_field_by_field(packaged: Path) -> None:
    dom = etree.parse(str(packaged / f"{STEM}-kvm.xml")).getroot()
    assert dom.findtext("vcpu") == "2"
    assert (dom.findtext("memory"), dom.find("memory").get("unit")) == ("4096", "MiB")
    assert dom.find("os").get("firmware") == "efi"
    assert dom.find("os/type").get("machine") == "q35"
    assert dom.find("os/firmware/feature[@name='secure-boot']").get("enabled") == "no"
    disk = dom.find("devices/disk")
    assert (disk.find("driver").get("type"), disk.find("target").get("bus")) == ("qcow2", "virtio")
    nics = dom.findall("devices/interface")
    assert [n.find("model").get("type") for n in nics] == ["virtio"] * 4
    assert [n.find("link").get("state") for n in nics] == ["down"] * 4
    assert dom.find("devices/serial") is not None


def test_qcow2_is_compressed_and_the_raw_image(packaged: Path, built: BuiltImage) -> None:
    disk = packaged / f"{STEM}.qcow2"
    compare(Path(built.raw), disk, "qcow2")
    info = qemu_info(disk, "qcow2")
    assert info["virtual-size"] == VSIZE
    assert info["format-specific"]["data"]["compat"] == "1.1"
    assert info["format-specific"]["data"]["compression-type"] == "zlib"
    check = subprocess.run(["qemu-img", "check", "--output=json", str(disk)], capture_output=True, text=True)
    assert check.returncode == 0
    assert json.loads(check.stdout)["compressed-clusters"] > 0


# --- Nutanix: v3 spec -----------------------------------------------------------------------------


def test_nutanix_spec_field_by_field(packaged: Path) -> None:
    spec = json.loads((packaged / f"{STEM}-nutanix.json").read_text())
    resources = spec["spec"]["resources"]
    assert resources["num_sockets"] * resources["num_vcpus_per_socket"] == 2
    assert resources["memory_size_mib"] == 4096
    assert resources["boot_config"]["boot_type"] == "UEFI"  # not SECURE_BOOT
    assert resources["machine_type"] == "Q35"
    (disk,) = resources["disk_list"]
    assert disk["disk_size_mib"] * 2**20 == VSIZE
    assert disk["data_source_reference"] == {"kind": "image", "uuid": "${IMAGE_UUID}"}
    assert disk["device_properties"]["disk_address"] == {"adapter_type": "SCSI", "device_index": 0}
    nics = resources["nic_list"]
    assert [(n["model"], n["is_connected"]) for n in nics] == [("VIRTIO", False)] * 4
    assert resources["serial_port_list"] == [{"index": 0, "is_connected": True}]


# --- Xen: zip of VHD + xl config ------------------------------------------------------------------


@pytest.fixture(scope="module")
def xen_zip(packaged: Path) -> zipfile.ZipFile:
    return zipfile.ZipFile(packaged / f"{STEM}-xen.zip")


def test_xl_config_field_by_field(xen_zip: zipfile.ZipFile) -> None:
    assert xen_zip.namelist() == [f"{STEM}-xen.cfg", f"{STEM}.vhd"]
    cfg = xl_config(xen_zip.read(f"{STEM}-xen.cfg").decode())
    assert (cfg["type"], cfg["firmware"]) == ("hvm", "uefi")
    assert (cfg["vcpus"], cfg["maxvcpus"], cfg["memory"], cfg["maxmem"]) == (2, 2, 4096, 4096)
    (disk,) = cfg["disk"]
    assert xl_spec(disk)["format"] == "vhd" and xl_spec(disk)["vdev"] == "xvda"
    vifs = [xl_spec(v) for v in cfg["vif"]]
    assert [v["type"] for v in vifs] == ["vif"] * 4  # PV only, no emulated twin
    assert [v["bridge"] for v in vifs] == ["lbisolated"] * 4  # "disconnected"
    assert cfg["serial"] == "pty"


def test_xen_vhd_is_the_raw_image(xen_zip: zipfile.ZipFile, built: BuiltImage, tmp_path: Path) -> None:
    disk = Path(xen_zip.extract(f"{STEM}.vhd", tmp_path))
    compare(Path(built.raw), disk, "vpc")
    assert qemu_info(disk, "vpc")["virtual-size"] == VSIZE


# --- the profile is data --------------------------------------------------------------------------


def render_all(profiles: Profiles, tmp_path: Path) -> dict[str, str]:
    """Every descriptor rendered from `profiles` (no disk conversion), by hypervisor."""
    fake = tmp_path / "disk.img"
    fake.write_bytes(b"x" * 1234)
    out = {}
    for hv in profiles.hypervisors:
        job = BundleJob(
            hv,
            Disk(fake, hv.disk_format, hv.disk_format, profiles.hardware.disk_bytes),
            {
                "product": profiles.product,
                "version": "9.9",
                "built": "2026-01-01T00:00:00Z",
                "hardware": profiles.hardware,
                "hv": hv,
                "nics": hv.nics,
                "vars": hv.vars,
            },
            "x_9.9",
            tmp_path,
            tmp_path,
            0,
        )
        out[hv.name] = job.render_descriptor(tmp_path).read_text()
    return out


def test_hardware_is_written_once_and_every_descriptor_follows(profile_dir: Path, tmp_path: Path) -> None:
    data = yaml.safe_load((profile_dir / "profile.yaml").read_text())
    data["hardware"].update(cpus=6, memory_mib=6144, connected_at_power_on=["eth2"])
    data["product"]["title"] = "R&D <test> 'appliance'"  # must be escaped per format
    (profile_dir / "profile.yaml").write_text(yaml.safe_dump(data))
    profiles = load_profiles("all", profile_dir)
    text = render_all(profiles, tmp_path)
    ovf = etree.fromstring(text["vmware"].encode())  # still well-formed XML
    assert ovf.findtext(".//{*}Product") == "R&D <test> 'appliance'"
    assert "<rasd:VirtualQuantity>6</rasd:VirtualQuantity>" in text["vmware"]
    flags = [i.findtext("{*}AutomaticAllocation") for i in ovf.iter("{*}Item") if i.findtext("{*}ResourceType") == "10"]
    assert flags == ["true", "false", "false", "false"]  # VMware's own override wins
    kvm = etree.fromstring(text["kvm"].encode())
    assert kvm.findtext("vcpu") == "6" and kvm.findtext("memory") == "6144"
    assert [n.find("link").get("state") for n in kvm.findall("devices/interface")] == ["down", "down", "up", "down"]
    spec = json.loads(text["nutanix"])["spec"]["resources"]
    assert (spec["num_sockets"], spec["memory_size_mib"]) == (6, 6144)
    assert [n["is_connected"] for n in spec["nic_list"]] == [False, False, True, False]
    cfg = xl_config(text["xen"])
    assert (cfg["vcpus"], cfg["memory"]) == (6, 6144)
    assert [xl_spec(v)["bridge"] for v in cfg["vif"]] == ["lbisolated", "lbisolated", "xenbr0", "lbisolated"]
    calls = powershell_commands(text["hyperv"])
    assert ("Set-VMProcessor", {"-VM": "$vm", "-Count": "6"}) in calls
    assert [p.get("-SwitchName") for c, p in calls if c == "Add-VMNetworkAdapter"] == [None, None, "$SwitchName", None]


# --- packaging as a whole ------------------------------------------------------------------------


def test_a_sixth_hypervisor_packages_from_two_files(profile_dir: Path, built: BuiltImage, tmp_path: Path) -> None:
    (profile_dir / "proxmox.yaml").write_text(
        "title: Proxmox VE\ndescriptor: proxmox.conf.j2\nbundle: files\n"
        "disk: {format: qcow2, options: {compressed: true, compat: '1.1', compression_type: zlib}}\n"
        "disk_bus: scsi\nnic_model: virtio\nguest_modules: [virtio_scsi]\n"
        "boot_test: {disk_bus: virtio-scsi, nic_model: virtio, nic_driver: virtio_net}\n"
    )
    (profile_dir / "proxmox.conf.j2").write_text(
        "cores: {{ hardware.cpus }}\nmemory: {{ hardware.memory_mib }}\n"
        "{% for nic in nics %}net{{ nic.index }}: {{ hv.nic_model }},bridge=vmbr0,"
        "link_down={{ 0 if nic.connected else 1 }}\n"
        "{% endfor %}scsi0: local:0,import-from={{ disk.name }}\n"
    )
    dist = tmp_path / "dist"
    package(built, load_profiles("kvm,proxmox", profile_dir), dist)
    listing = json.loads((dist / "manifest.json").read_text())
    assert [a["hypervisor"] for a in listing["artifacts"]] == ["kvm", "proxmox"]
    conf = (dist / f"{STEM}-proxmox.conf").read_text()
    assert "cores: 2" in conf and conf.count("link_down=1") == 4 and f"import-from={STEM}.qcow2" in conf
    assert manifest.verify(dist) == []


def test_a_failed_run_leaves_the_previous_dist_alone(
    built: BuiltImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "dist"
    package(built, load_profiles("nutanix"), dist)
    before = {p.name: p.stat().st_mtime_ns for p in dist.iterdir()}

    def broken_converter(*args: object) -> None:
        raise RuntimeError("qemu-img convert failed: disk full")

    monkeypatch.setitem(
        formats.DISK_FORMATS, "vhd", dataclasses.replace(formats.DISK_FORMATS["vhd"], convert=broken_converter)
    )
    with pytest.raises(RuntimeError, match="disk full"):
        package(built, load_profiles("kvm,xen"), dist)
    assert {p.name: p.stat().st_mtime_ns for p in dist.iterdir()} == before  # no .work left either
    assert manifest.verify(dist) == []


def test_a_subset_replaces_the_previous_build(built: BuiltImage, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    package(built, load_profiles("kvm,xen"), dist)
    package(built, load_profiles("vmware"), dist)
    assert sorted(p.name for p in dist.iterdir()) == sorted(["SHA256SUMS", "manifest.json", f"{STEM}-vmware.ova"])
    assert manifest.verify(dist) == []


def test_raw_image_of_the_wrong_size_is_refused(built: BuiltImage, tmp_path: Path) -> None:
    raw = tmp_path / "small.raw"
    with raw.open("wb") as f:
        f.truncate(2**30)
    with pytest.raises(ValueError, match=r"is 1073741824 bytes, but hypervisors/profile\.yaml asks for a 20 GiB"):
        package(BuiltImage(**{**built.__dict__, "raw": str(raw)}), load_profiles("kvm"), tmp_path / "dist")
