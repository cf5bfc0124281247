"""The hardware profile (hypervisors/profile.yaml) and the hypervisor profiles (hypervisors/<name>.yaml).

The appliance's virtual hardware is written down once, in profile.yaml. Each hypervisor adds
only its own <name>.yaml (disk format, device models, connect policy, boot-test stand-ins) and
one template <name>.<ext>.j2 that renders its descriptor. Two tables below, PROFILE_FIELDS and
HYPERVISOR_FIELDS, drive parsing, validation and the reference in docs/hypervisors.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from .. import ROOT, qemu
from . import formats
from .fields import Field, ProfileError, boolean, choice, integer, list_of, mapping, parse_fields, reference, text

HYPERVISORS_DIR = ROOT / "hypervisors"
PROFILE_FILE = "profile.yaml"
MAX_NICS = 10
NIC_NAME = text(r"eth\d", "a NIC name eth0..eth9")
MODULE_NAME = text(r"[a-z0-9_-]+", "a kernel module name")
BUNDLES = ("ova", "zip", "files")      # how an artifact is shipped; see bundles.py

PROFILE_FIELDS = (
    Field("product.name", text(r"[a-z][a-z0-9-]*", "a lower-case name (it starts every file name)"),
          "short name; files are `<name>_<version>...`"),
    Field("product.title", text(), "product name shown by the hypervisor (OVF Product, VM notes)"),
    Field("product.vendor", text(), "vendor shown by the hypervisor"),
    Field("product.annotation", text(), "description/notes given to the VM"),
    Field("product.url", text(r"https?://\S+", "an http(s) URL"), "product or documentation URL", default=""),
    Field("hardware.cpus", integer(1, 64), "virtual CPUs"),
    Field("hardware.memory_mib", integer(256, 1 << 20), "memory in MiB (static, no ballooning)"),
    Field("hardware.disk_gib", integer(1, 2048), "virtual disk size in GiB (the raw image is built to it)"),
    Field("hardware.nics", integer(1, MAX_NICS), "network adapters; the guest names them eth0.. in adapter order"),
    Field("hardware.connected_at_power_on", list_of(NIC_NAME), "NICs connected at power-on (default policy)",
          default=()),
    Field("hardware.serial_console", boolean, "give the VM a serial port (COM1/ttyS0 carries READY)",
          default=True),
)

HYPERVISOR_FIELDS = (
    Field("title", text(), "the platform's name in docs and progress output"),
    Field("descriptor", text(r"[a-z0-9-]+\.[a-z0-9]+\.j2", "a template file name `<name>.<ext>.j2`"),
          "the one template in hypervisors/ that renders the descriptor"),
    Field("bundle", choice(BUNDLES, "a bundle kind"),
          "ova: tar of descriptor, .mf, disk; zip: descriptor + disk; files: both side by side"),
    Field("disk.format", choice(formats.DISK_FORMATS, "a disk format"), "disk format (see formats.py)"),
    Field("disk.options", mapping, "converter options of that format", default={}),
    Field("disk_bus", text(), "disk controller the descriptor declares (platform's own name)"),
    Field("nic_model", text(), "NIC model the descriptor declares (platform's own name)"),
    Field("connected_at_power_on", list_of(NIC_NAME), "overrides hardware.connected_at_power_on", default=None),
    Field("guest_modules", list_of(MODULE_NAME), "kernel modules the platform needs in the initrd "
          "(checked in the UKI before packaging)", default=()),
    Field("vars", mapping, "platform constants the template uses (VM hardware version, bridges...)", default={}),
    Field("boot_test.disk_bus", choice(qemu.DISK_BUSES, "a QEMU disk bus of builder/qemu.py"),
          "QEMU disk bus of the boot test"),
    Field("boot_test.nic_model", choice(qemu.NIC_MODELS, "a QEMU NIC model of builder/qemu.py"),
          "QEMU NIC model of the boot test"),
    Field("boot_test.nic_driver", text(r"[a-z0-9_-]+", "a driver name"),
          "guest driver expected behind eth0..ethN in the boot test"),
    Field("boot_test.note", text(), "why these stand-ins (when they differ from the platform)", default=""),
)


@dataclass(frozen=True)
class Product:
    name: str
    title: str
    vendor: str
    annotation: str
    url: str


@dataclass(frozen=True)
class Hardware:
    cpus: int
    memory_mib: int
    disk_gib: int
    nics: int
    connected_at_power_on: tuple[str, ...]
    serial_console: bool

    @property
    def disk_bytes(self) -> int:
        return self.disk_gib * 2**30

    @property
    def nic_names(self) -> tuple[str, ...]:
        return tuple(f"eth{n}" for n in range(self.nics))


@dataclass(frozen=True)
class Nic:
    """One network adapter as a descriptor declares it."""
    index: int        # 0-based adapter order = the guest's ethN
    name: str         # eth0..
    connected: bool   # connected at power-on


@dataclass(frozen=True)
class BootTest:
    disk_bus: str
    nic_model: str
    nic_driver: str
    note: str


@dataclass(frozen=True)
class Hypervisor:
    name: str
    source: Path
    title: str
    template: Path
    bundle: str
    disk_format: str
    disk_options: Mapping[str, Any]
    disk_bus: str
    nic_model: str
    nics: tuple[Nic, ...]
    guest_modules: tuple[str, ...]
    vars: Mapping[str, Any]
    boot_test: BootTest

    @property
    def descriptor_suffix(self) -> str:
        """".ovf" for vmware.ovf.j2."""
        return "." + self.template.name.split(".")[-2]


@dataclass(frozen=True)
class Profiles:
    directory: Path
    product: Product
    hardware: Hardware
    hypervisors: tuple[Hypervisor, ...]

    def formats(self) -> dict[str, Mapping[str, Any]]:
        """{disk format: converter options} over the selected hypervisors: one conversion each."""
        return {hv.disk_format: hv.disk_options for hv in self.hypervisors}


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from None


def _check_nics(source: Path, key: str, names: tuple[str, ...], hardware_nics: int) -> None:
    for name in names:
        if int(name[3:]) >= hardware_nics:
            raise ProfileError(f"{source}: {key}: {name} does not exist; the profile has "
                               f"{hardware_nics} NICs (eth0..eth{hardware_nics - 1})")


def load_hardware(directory: Path = HYPERVISORS_DIR) -> tuple[Product, Hardware]:
    source = directory / PROFILE_FILE
    v = parse_fields(source, _load_yaml(source), PROFILE_FIELDS)
    product = Product(*(v[f"product.{k}"] for k in ("name", "title", "vendor", "annotation", "url")))
    hardware = Hardware(*(v[f"hardware.{k}"] for k in ("cpus", "memory_mib", "disk_gib", "nics",
                                                       "connected_at_power_on", "serial_console")))
    _check_nics(source, "hardware.connected_at_power_on", hardware.connected_at_power_on, hardware.nics)
    return product, hardware


def load_hypervisor(name: str, hardware: Hardware, directory: Path = HYPERVISORS_DIR) -> Hypervisor:
    source = directory / f"{name}.yaml"
    v = parse_fields(source, _load_yaml(source), HYPERVISOR_FIELDS)
    template = directory / v["descriptor"]
    if not template.name.startswith(f"{name}."):
        raise ProfileError(f"{source}: descriptor: {template.name} must be named {name}.<ext>.j2 "
                           "(each hypervisor owns exactly one template)")
    if not template.is_file():
        raise ProfileError(f"{source}: descriptor: {template} does not exist")
    fmt = formats.DISK_FORMATS[v["disk.format"]]
    try:
        options = formats.parse_options(fmt, v["disk.options"])
    except ValueError as exc:
        raise ProfileError(f"{source}: disk.options: {exc}") from None
    connected = v["connected_at_power_on"]
    if connected is None:
        connected = hardware.connected_at_power_on
    else:
        _check_nics(source, "connected_at_power_on", connected, hardware.nics)
    nics = tuple(Nic(n, f"eth{n}", f"eth{n}" in connected) for n in range(hardware.nics))
    return Hypervisor(
        name=name, source=source, title=v["title"], template=template, bundle=v["bundle"],
        disk_format=fmt.name, disk_options=options, disk_bus=v["disk_bus"], nic_model=v["nic_model"],
        nics=nics, guest_modules=v["guest_modules"], vars=v["vars"],
        boot_test=BootTest(v["boot_test.disk_bus"], v["boot_test.nic_model"], v["boot_test.nic_driver"],
                           v["boot_test.note"]))


def known_hypervisors(directory: Path = HYPERVISORS_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml") if p.name != PROFILE_FILE)


def load_profiles(hypervisors: str, directory: Path = HYPERVISORS_DIR) -> Profiles:
    """Profiles for "all" or a comma-separated list of hypervisor names (in the order given).

    Raises ValueError (a ProfileError) naming an unknown hypervisor and the known ones, or the
    file, field and reason of an invalid profile.
    """
    known = known_hypervisors(directory)
    if hypervisors.strip() == "all":
        names = known
    else:
        names = list(dict.fromkeys(n.strip() for n in hypervisors.split(",") if n.strip()))
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise ProfileError(f"unknown hypervisor {', '.join(map(repr, unknown)) or repr(hypervisors)}; "
                               f"known: {', '.join(known)} (or 'all')")
    product, hardware = load_hardware(directory)
    selected = tuple(load_hypervisor(n, hardware, directory) for n in names)
    # One conversion per format: hypervisors that share a format must agree on its options.
    first: dict[str, Hypervisor] = {}
    for hv in selected:
        other = first.setdefault(hv.disk_format, hv)
        if other.disk_options != hv.disk_options:
            raise ProfileError(f"{hv.source}: disk.options: {dict(hv.disk_options)} differ from "
                               f"{other.source.name}'s {dict(other.disk_options)} for the same format "
                               f"{hv.disk_format}; a format is converted once, so they must agree")
    return Profiles(directory, product, hardware, selected)


def reference_doc() -> str:
    """The field reference for docs/hypervisors.md (a test keeps the two in step)."""
    return ("#### hypervisors/profile.yaml\n\n" + reference(PROFILE_FIELDS)
            + "\n#### hypervisors/`<name>`.yaml\n\n" + reference(HYPERVISOR_FIELDS))
