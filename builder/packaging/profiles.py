"""The hardware profile (hypervisors/profile.yaml) and the hypervisor profiles (hypervisors/<name>.yaml).

The appliance's virtual hardware is written down once, in profile.yaml. Each hypervisor adds
only its own <name>.yaml (disk format, device models, connect policy, boot-test stand-ins) and
one template <name>.<ext>.j2 that renders its descriptor. Two tables below, PROFILE_FIELDS and
HYPERVISOR_FIELDS, drive parsing, validation and the reference in docs/hypervisors.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lbctl.inputs import (
    Cursor,
    Default,
    Field,
    InputInvalid,
    InputKind,
    Invalid,
    ListOf,
    Table,
    Type,
    describe,
    engine,
    reference,
)
from lbctl.inputs.types import Boolean, Choice, Integer, ScalarMapping, Text

from .. import ROOT, qemu
from . import formats

HYPERVISORS_DIR = ROOT / "hypervisors"
PROFILE_FILE = "profile.yaml"
MAX_NICS = 10
NIC_NAME = Text(r"eth\d", "a NIC name eth0..eth9")
MODULE_NAME = Text(r"[a-z0-9_-]+", "a kernel module name")
BUNDLES = ("ova", "zip", "files")  # how an artifact is shipped; see bundles.py


class ProfileError(ValueError):
    """A profile file is wrong; the message names the file, the field, the reason and the line."""


class DiskOptions(Type[dict[str, Any]]):
    """The converter options of the disk format given beside them (disk.format)."""

    kind = "converter options of that format (see formats.py)"

    def parse(self, value: object, at: Cursor) -> dict[str, Any]:
        fmt_name = at.scope.get("format") if at.scope else None
        if fmt_name is None:
            return engine.INVALID  # the format is wrong, and reported
        fmt = formats.DISK_FORMATS[fmt_name]
        if not isinstance(value, dict):
            raise Invalid(f"must be a mapping of {fmt.name} converter options, not {describe(value)}")
        unknown = [k for k in value if k not in {f.key for f in fmt.options.fields}]
        if unknown:
            raise Invalid(
                f"{unknown[0]!r} is not an option of {fmt.name} (known: {', '.join(f.key for f in fmt.options.fields)})"
            )
        return fmt.options.parse(value, at)


PRODUCT = Table(
    (
        Field(
            "name",
            Text(r"[a-z][a-z0-9-]*", "a lower-case name (it starts every file name)"),
            "short name; files are `<name>_<version>...`",
            required=True,
        ),
        Field("title", Text(), "product name shown by the hypervisor (OVF Product, VM notes)", required=True),
        Field("vendor", Text(), "vendor shown by the hypervisor", required=True),
        Field("annotation", Text(max_length=1000), "description/notes given to the VM", required=True),
        Field("url", Text(r"https?://\S+", "an http(s) URL"), "product or documentation URL", default=""),
    )
)
HARDWARE = Table(
    (
        Field("cpus", Integer(1, 64), "virtual CPUs", required=True),
        Field("memory_mib", Integer(256, 1 << 20, "MiB"), "memory in MiB (static, no ballooning)", required=True),
        Field(
            "disk_gib",
            Integer(1, 2048, "GiB"),
            "virtual disk size in GiB (the raw image is built to it)",
            required=True,
        ),
        Field(
            "nics",
            Integer(1, MAX_NICS),
            "network adapters; the guest names them eth0.. in adapter order",
            required=True,
        ),
        Field(
            "connected_at_power_on",
            ListOf(NIC_NAME, unique=True),
            "NICs connected at power-on (default policy)",
            default=(),
        ),
        Field("serial_console", Boolean(), "give the VM a serial port (COM1/ttyS0 carries READY)", default=True),
    )
)
PROFILE_FIELDS = Table(
    (
        Field("product", PRODUCT, "the product", required=True),
        Field("hardware", HARDWARE, "the virtual hardware", required=True),
    ),
    title="hypervisors/profile.yaml",
)

HYPERVISOR_FIELDS = Table(
    (
        Field("title", Text(), "the platform's name in docs and progress output", required=True),
        Field(
            "descriptor",
            Text(r"[a-z0-9-]+\.[a-z0-9]+\.j2", "a template file name `<name>.<ext>.j2`"),
            "the one template in hypervisors/ that renders the descriptor",
            required=True,
        ),
        Field(
            "bundle",
            Choice(BUNDLES, "a bundle kind"),
            "ova: tar of descriptor, .mf, disk; zip: descriptor + disk; files: both side by side",
            required=True,
        ),
        Field(
            "disk",
            Table(
                (
                    Field(
                        "format",
                        Choice(tuple(formats.DISK_FORMATS), "a disk format"),
                        "disk format (see formats.py)",
                        required=True,
                    ),
                    Field("options", DiskOptions(), "converter options of that format", default={}),
                )
            ),
            "the disk file",
            required=True,
        ),
        Field("disk_bus", Text(), "disk controller the descriptor declares (platform's own name)", required=True),
        Field("nic_model", Text(), "NIC model the descriptor declares (platform's own name)", required=True),
        Field(
            "connected_at_power_on",
            ListOf(NIC_NAME, unique=True),
            "overrides hardware.connected_at_power_on",
            default=Default(lambda s: None, "inherited"),
        ),
        Field(
            "guest_modules",
            ListOf(MODULE_NAME, unique=True),
            "kernel modules the platform needs in the initrd (checked in the UKI before packaging)",
            default=(),
        ),
        Field(
            "vars",
            ScalarMapping(),
            "platform constants the template uses (VM hardware version, bridges...)",
            default={},
        ),
        Field(
            "boot_test",
            Table(
                (
                    Field(
                        "disk_bus",
                        Choice(tuple(qemu.DISK_BUSES), "a QEMU disk bus of builder/qemu.py"),
                        "QEMU disk bus of the boot test",
                        required=True,
                    ),
                    Field(
                        "nic_model",
                        Choice(tuple(qemu.NIC_MODELS), "a QEMU NIC model of builder/qemu.py"),
                        "QEMU NIC model of the boot test",
                        required=True,
                    ),
                    Field(
                        "nic_driver",
                        Text(r"[a-z0-9_-]+", "a driver name"),
                        "guest driver expected behind eth0..ethN in the boot test",
                        required=True,
                    ),
                    Field(
                        "firmware_boot",
                        Boolean(),
                        "the firmware (OVMF) boots the disk; false: OVMF has no boot driver for this "
                        "controller, so QEMU loads the disk's own UKI (kernel, initrd, command line) and the "
                        "boot proves the initrd finds its root there",
                        default=True,
                    ),
                    Field(
                        "note",
                        Text(max_length=2000),
                        "why these stand-ins (when they differ from the platform)",
                        default="",
                    ),
                )
            ),
            "how the artifact is boot-tested in QEMU",
            required=True,
        ),
    ),
    title="hypervisors/`<name>`.yaml",
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

    index: int  # 0-based adapter order = the guest's ethN
    name: str  # eth0..
    connected: bool  # connected at power-on


@dataclass(frozen=True)
class BootTest:
    disk_bus: str
    nic_model: str
    nic_driver: str
    firmware_boot: bool
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
        """ ".ovf" for vmware.ovf.j2."""
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


def _read(path: Path, table: Table) -> Any:
    """A profile file parsed by its table; ProfileError with every problem, each naming the file."""
    try:
        return InputKind(path.name, f"hypervisors/{path.name}", table).read(str(path))
    except InputInvalid as exc:
        raise ProfileError(
            "\n".join(line if line.startswith(f"{path}:") else f"{path}: {line}" for line in exc.lines())
        ) from None


def _check_nics(source: Path, key: str, names: tuple[str, ...], hardware_nics: int) -> None:
    for name in names:
        if int(name[3:]) >= hardware_nics:
            raise ProfileError(
                f"{source}: {key}: {name} does not exist; the profile has "
                f"{hardware_nics} NICs (eth0..eth{hardware_nics - 1})"
            )


def load_hardware(directory: Path = HYPERVISORS_DIR) -> tuple[Product, Hardware]:
    source = directory / PROFILE_FILE
    v = _read(source, PROFILE_FIELDS)
    product = Product(**v["product"])
    hardware = Hardware(**v["hardware"])
    _check_nics(source, "hardware.connected_at_power_on", hardware.connected_at_power_on, hardware.nics)
    return product, hardware


def load_hypervisor(name: str, hardware: Hardware, directory: Path = HYPERVISORS_DIR) -> Hypervisor:
    source = directory / f"{name}.yaml"
    v = _read(source, HYPERVISOR_FIELDS)
    template = directory / v["descriptor"]
    if not template.name.startswith(f"{name}."):
        raise ProfileError(
            f"{source}: descriptor: {template.name} must be named {name}.<ext>.j2 "
            "(each hypervisor owns exactly one template)"
        )
    if not template.is_file():
        raise ProfileError(f"{source}: descriptor: {template} does not exist")
    fmt = formats.DISK_FORMATS[v["disk"]["format"]]
    options = v["disk"]["options"]
    connected = v["connected_at_power_on"]
    if connected is None:
        connected = hardware.connected_at_power_on
    else:
        _check_nics(source, "connected_at_power_on", connected, hardware.nics)
    nics = tuple(Nic(n, f"eth{n}", f"eth{n}" in connected) for n in range(hardware.nics))
    return Hypervisor(
        name=name,
        source=source,
        title=v["title"],
        template=template,
        bundle=v["bundle"],
        disk_format=fmt.name,
        disk_options=options,
        disk_bus=v["disk_bus"],
        nic_model=v["nic_model"],
        nics=nics,
        guest_modules=v["guest_modules"],
        vars=v["vars"],
        boot_test=BootTest(**v["boot_test"]),
    )


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
            raise ProfileError(
                f"unknown hypervisor {', '.join(map(repr, unknown)) or repr(hypervisors)}; "
                f"known: {', '.join(known)} (or 'all')"
            )
    product, hardware = load_hardware(directory)
    selected = tuple(load_hypervisor(n, hardware, directory) for n in names)
    # One conversion per format: hypervisors that share a format must agree on its options.
    first: dict[str, Hypervisor] = {}
    for hv in selected:
        other = first.setdefault(hv.disk_format, hv)
        if other.disk_options != hv.disk_options:
            raise ProfileError(
                f"{hv.source}: disk.options: {dict(hv.disk_options)} differ from "
                f"{other.source.name}'s {dict(other.disk_options)} for the same format "
                f"{hv.disk_format}; a format is converted once, so they must agree"
            )
    return Profiles(directory, product, hardware, selected)


def reference_doc() -> str:
    """The field reference for docs/hypervisors.md (a test keeps the two in step)."""
    return reference(PROFILE_FIELDS) + reference(HYPERVISOR_FIELDS)
