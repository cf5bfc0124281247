"""Every VMware id the OVA declares exists on the oldest host the docs promise.

docs/hypervisors.md and the README promise ESXi 6.7 (vSphere API 6.7). An OVF naming a guest type
or hardware version the host does not know fails to import there, so each id the descriptor
uses must be in the tables below with a version no newer than that.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from tests.packaging.artifact_checks import NS, ova_read

OLDEST_HOST = (6, 7)  # ESXi 6.7 / vSphere API 6.7, as docs/hypervisors.md promises

# Virtual hardware versions and the first ESXi that runs them: VMware KB 1003746, "ESXi/ESX hosts
# and compatible virtual machine hardware versions".
VIRTUAL_HARDWARE_SINCE = {
    "vmx-13": (6, 5),
    "vmx-14": (6, 7),
    "vmx-15": (6, 7, 2),
    "vmx-17": (7, 0),
    "vmx-18": (7, 0, 1),
    "vmx-19": (7, 0, 2),
    "vmx-20": (8, 0),
    "vmx-21": (8, 0, 2),
}

# Guest OS identifiers (vim.vm.GuestOsDescriptor.GuestOsIdentifier) and the vSphere API release
# that introduced them: the vSphere Web Services API reference's "Since" notes; for the releases
# after 6.7, govmomi's generated table (vim25/types/enum.go, minAPIVersionForEnumValue
# ["VirtualMachineGuestOsIdentifier"]: other5xLinux64Guest 7.0.1.0, other6xLinux64Guest and
# debian12_64Guest 8.0.0.1).
GUEST_OS_SINCE = {
    "other3xLinux64Guest": (5, 5),
    "other4xLinux64Guest": (6, 7),
    "other5xLinux64Guest": (7, 0, 1, 0),
    "other6xLinux64Guest": (8, 0, 0, 1),
    "debian12_64Guest": (8, 0, 0, 1),
}


def declared_ids(ova: Path) -> tuple[str, str]:
    root = etree.fromstring(ova_read(ova, "lbappliance_0.0.1.ovf"))
    system = root.find(".//vssd:VirtualSystemType", NS)
    os_section = root.find(".//ovf:OperatingSystemSection", NS)
    assert system is not None and system.text and os_section is not None
    return system.text.strip(), os_section.get(f"{{{NS['vmw']}}}osType", "")


def test_every_vmware_id_exists_on_the_oldest_promised_host(packaged: Path) -> None:
    hardware, guest = declared_ids(packaged / "lbappliance_0.0.1-vmware.ova")
    for kind, value, table in (
        ("hardware version", hardware, VIRTUAL_HARDWARE_SINCE),
        ("guest OS id", guest, GUEST_OS_SINCE),
    ):
        for one in value.split():  # a VirtualSystemType may list several
            assert one in table, f"{kind} {one}: not in the table of this test; add it with its source"
            assert table[one] <= OLDEST_HOST, (
                f"{kind} {one} needs vSphere {'.'.join(map(str, table[one]))}, newer than the ESXi 6.7 the docs promise"
            )
