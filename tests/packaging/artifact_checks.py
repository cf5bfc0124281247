"""Readers and checks for shipped descriptors, used by the tests on every artifact.

The DMTF schema catches malformed OVF, not wrong OVF: a dangling Parent or ResourceType 99
validates fine. `ovf_problems` checks what an import depends on, against the hardware profile.
The other readers parse the xl config and the PowerShell script field by field.
"""

from __future__ import annotations

import ast
import re
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

from lxml import etree

from builder.packaging.profiles import Hardware

NS = {
    "ovf": "http://schemas.dmtf.org/ovf/envelope/1",
    "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData",
    "vssd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData",
    "vmw": "http://www.vmware.com/schema/ovf",
}
CONTROLLER_TYPES = {"5", "6", "20"}  # IDE, SCSI, SATA/NVMe ("other storage")
OVF = f"{{{NS['ovf']}}}"
VMW = f"{{{NS['vmw']}}}"
MF_LINE = re.compile(r"SHA256\(([^()]+)\)= ([0-9a-f]{64})")


def ova_members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def ova_read(path: Path, name: str) -> bytes:
    with tarfile.open(path) as tar:
        member = tar.extractfile(name)
        if member is None:
            raise KeyError(name)
        return member.read()


def read_mf(text: str) -> dict[str, str]:
    """{file: sha256} from an OVF manifest; every line must be exactly `SHA256(file)= hex`."""
    sums = {}
    for n, line in enumerate(text.splitlines(), 1):
        match = MF_LINE.fullmatch(line)
        if not match:
            raise ValueError(f".mf line {n} is not 'SHA256(<file>)= <hex>': {line!r}")
        sums[match.group(1)] = match.group(2)
    return sums


def _ovf(element: etree._Element, attribute: str, default: str | None = None) -> str | None:
    return element.get(OVF + attribute, default)


def _text(item: etree._Element, field: str) -> str | None:
    node = item.find(f"rasd:{field}", NS)
    return None if node is None else (node.text or "").strip()


def ovf_problems(
    ovf: bytes, hardware: Hardware, connected: list[bool], file_sizes: dict[str, int], disk_virtual_size: int
) -> list[str]:
    """What is wrong with an OVF descriptor as an import of this hardware profile ([] if nothing).

    connected: the expected connect-at-power-on flag of each NIC, in order; file_sizes: the real
    size of every file the OVA carries besides the .ovf and .mf.
    """
    root = etree.fromstring(ovf)
    problems = []
    if root.tag != OVF + "Envelope":
        return [f"root element is {root.tag}, not an Envelope in the OVF 1.x namespace"]
    files = {_ovf(f, "id"): f for f in root.findall("ovf:References/ovf:File", NS)}
    for file_id, f in files.items():
        href, size = _ovf(f, "href"), _ovf(f, "size")
        if href not in file_sizes:
            problems.append(f"File {file_id} names {href!r}, which the package does not carry")
        elif size is None or int(size) != file_sizes[href]:
            problems.append(f"File {file_id} ({href}) says size {size}, the file has {file_sizes[href]} bytes")
    disks = {}
    for d in root.findall("ovf:DiskSection/ovf:Disk", NS):
        disk_id = _ovf(d, "diskId")
        disks[disk_id] = d
        if _ovf(d, "fileRef") not in files:
            problems.append(f"Disk {disk_id} refers to unknown file {_ovf(d, 'fileRef')!r}")
        units = _ovf(d, "capacityAllocationUnits", "byte")
        capacity = int(_ovf(d, "capacity", "0") or "0")
        if units != "byte":
            problems.append(f"Disk {disk_id}: capacityAllocationUnits {units!r}, expected byte")
        elif capacity != disk_virtual_size or capacity != hardware.disk_bytes:
            problems.append(
                f"Disk {disk_id}: capacity {capacity} bytes; the disk file has {disk_virtual_size}, "
                f"the profile asks for {hardware.disk_bytes}"
            )
    networks = {_ovf(n, "name") for n in root.findall("ovf:NetworkSection/ovf:Network", NS)}
    systems = root.findall("ovf:VirtualSystem", NS)
    if len(systems) != 1:
        return problems + [f"{len(systems)} VirtualSystems, expected 1"]
    items = systems[0].findall("ovf:VirtualHardwareSection/ovf:Item", NS)
    ids = [_text(i, "InstanceID") for i in items]
    for instance, count in Counter(ids).items():
        if count > 1:
            problems.append(f"InstanceID {instance} is used by {count} items")
    types = {_text(i, "InstanceID"): _text(i, "ResourceType") for i in items}
    counts = Counter(types.values())
    expected = {"3": 1, "4": 1, "17": 1, "10": hardware.nics}
    if hardware.serial_console:
        expected["21"] = 1
    for resource, n in expected.items():
        if counts[resource] != n:
            problems.append(f"{counts[resource]} items of ResourceType {resource}, expected {n}")
    if sum(counts[t] for t in CONTROLLER_TYPES) < 1:
        problems.append("no disk controller item")
    for item in items:
        rtype, instance = _text(item, "ResourceType"), _text(item, "InstanceID")
        parent = _text(item, "Parent")
        if parent is not None and types.get(parent) not in CONTROLLER_TYPES:
            problems.append(f"item {instance}: Parent {parent} is not a controller")
        if rtype == "17":
            if parent is None:
                problems.append(f"disk item {instance} has no Parent controller")
            host = _text(item, "HostResource") or ""
            if host.removeprefix("ovf:/disk/") not in disks:
                problems.append(f"disk item {instance}: HostResource {host!r} names no Disk")
        if rtype == "3" and _text(item, "VirtualQuantity") != str(hardware.cpus):
            problems.append(f"CPU item: {_text(item, 'VirtualQuantity')} CPUs, profile says {hardware.cpus}")
        if rtype == "4" and (_text(item, "VirtualQuantity"), _text(item, "AllocationUnits")) != (
            str(hardware.memory_mib),
            "byte * 2^20",
        ):
            problems.append(
                f"memory item: {_text(item, 'VirtualQuantity')} {_text(item, 'AllocationUnits')}, "
                f"profile says {hardware.memory_mib} byte * 2^20"
            )
        if rtype == "10" and _text(item, "Connection") not in networks:
            problems.append(f"NIC item {instance}: Connection {_text(item, 'Connection')!r} not in NetworkSection")
    flags = [_text(i, "AutomaticAllocation") for i in items if _text(i, "ResourceType") == "10"]
    if flags != ["true" if c else "false" for c in connected]:
        problems.append(f"NIC AutomaticAllocation {flags}, expected {['true' if c else 'false' for c in connected]}")
    config = {
        c.get(VMW + "key"): c.get(VMW + "value")
        for c in systems[0].findall("ovf:VirtualHardwareSection/vmw:Config", NS)
    }
    if config.get("firmware") != "efi":
        problems.append(f"firmware is {config.get('firmware')!r}, not efi")
    if config.get("bootOptions.efiSecureBootEnabled") != "false":
        problems.append("Secure Boot is not set off (the image boots an unsigned UKI)")
    return problems


def xl_config(text: str) -> dict[str, Any]:
    """Parse an xl.cfg: `key = value` with numbers, "strings" and [lists], # comments."""
    cleaned = "\n".join(_strip_comment(line) for line in text.splitlines())
    settings = {}
    for match in re.finditer(
        r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\[.*?\]|"[^"]*"|[^\s\n]+)', cleaned, re.MULTILINE | re.DOTALL
    ):
        settings[match.group(1)] = ast.literal_eval(match.group(2))
    return settings


def _strip_comment(line: str) -> str:
    quoted = False
    for n, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == "#" and not quoted:
            return line[:n]
    return line


def xl_spec(spec: str) -> dict[str, str]:
    """'type=vif, bridge=x' -> {'type': 'vif', 'bridge': 'x'} (xl's disk and vif specs)."""
    return dict(part.strip().split("=", 1) for part in spec.split(",") if "=" in part)


def powershell_commands(text: str) -> list[tuple[str, dict[str, str]]]:
    """The cmdlet calls of a script as (cmdlet, {-Parameter: value}), comment blocks skipped.

    Good enough for straight-line scripts like ours: one call per line; a (sub-expression) and a
    'quoted string' are one argument each.
    """
    text = re.sub(r"<#.*?#>", "", text, flags=re.DOTALL)
    calls = []
    for line in text.splitlines():
        stripped = line.strip()
        match = re.search(r"(?:^|=\s*|\|\s*)([A-Z][a-z]+-[A-Za-z]+)\s*(.*)$", stripped)
        if not match or stripped.startswith("#"):
            continue
        params: dict[str, str] = {}
        key = None
        for token in _powershell_tokens(match.group(2)):
            if re.fullmatch(r"-[A-Za-z]+", token):
                key = token
                params[key] = ""
            elif key is not None:
                params[key] = token
                key = None
        calls.append((match.group(1), params))
    return calls


def _powershell_tokens(arguments: str) -> list[str]:
    tokens, current, depth, quote = [], "", 0, ""
    for char in arguments:
        if quote:
            current += char
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
            current += char
        elif char == "(":
            depth += 1
            current += char
        elif char == ")":
            depth -= 1
            current += char
        elif char.isspace() and depth == 0:
            if current:
                tokens.append(current)
            current = ""
        elif char == "|" and depth == 0:
            break  # the rest is another cmdlet
        else:
            current += char
    if current:
        tokens.append(current)
    # 'single-quoted' is literal in PowerShell, with '' for a quote.
    return [t[1:-1].replace("''", "'") if len(t) > 1 and t[0] == t[-1] == "'" else t for t in tokens]
