"""The appliance's boot disk as the update sees it: the two root slots, and the UKIs on the ESP.

    partition 1  esp            systemd-boot, EFI/Linux/lbappliance_<version>[+LEFT[-DONE]].efi
    partition 2  lbroot_<ver>   root slot A (read-only; the UKI of <ver> names it)
    partition 3  lbroot_<ver>   root slot B, or "_empty"
    partition 4  lbdata         configuration, credentials, keys, logs (never touched by an update)

A slot's GPT label is its version ("lbroot_0.2.0", which the UKI's root=PARTLABEL= names) or
"_empty" (systemd-sysupdate's convention for a free slot). A UKI's name carries systemd-boot's
boot counter: "+3" is three tries left, "+0" is bad, no counter is good (blessed). Sources: the
Boot Loader Specification's "Boot counting", systemd-boot(7), sfdisk(8).

Paths come from the environment so that the host tests can run the update against a disk image
file and an ESP directory: LB_UPDATE_DISK, LB_ESP_DIR, LB_BOOTED_ROOT (the label the kernel
command line names).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..appliance import IMAGE_ID
from ..fileio import fsync_dir

ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"  # x86-64 root, Discoverable Partitions Specification
EMPTY = "_empty"
ROOT_LABEL_PREFIX = "lbroot_"
UKI_DIR = "EFI/Linux"
UKI_NAME = re.compile(rf"{IMAGE_ID}_(?P<version>\d+\.\d+\.\d+)(?:\+(?P<left>\d+)(?:-(?P<done>\d+))?)?\.efi")
PARTIAL_SUFFIX = ".partial"  # a UKI being written; systemd-boot loads only *.efi
TRIES = 3  # boot attempts a new version gets (systemd-boot's "+3")


class DiskError(RuntimeError):
    """The boot disk is not laid out as an A/B appliance disk (or cannot be read)."""


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes from the start of the disk
    size: int  # bytes
    label: str
    type: str


@dataclass(frozen=True)
class Slot:
    partition: Partition
    version: str | None  # None: "_empty" or a label that is no version

    @property
    def name(self) -> str:
        return "AB"[self.partition.number - 2] if self.partition.number in (2, 3) else str(self.partition.number)


@dataclass(frozen=True)
class BootEntry:
    path: Path
    version: str
    left: int | None  # tries left; None when the entry is blessed
    done: int | None

    @property
    def state(self) -> str:
        """good (blessed), bad (no tries left) or indeterminate (being tried)."""
        return "good" if self.left is None else "bad" if self.left == 0 else "indeterminate"


def booted_root_label() -> str:
    """The root label of the running system: the kernel command line's root=PARTLABEL=."""
    override = os.environ.get("LB_BOOTED_ROOT")
    if override:
        return override
    for arg in Path("/proc/cmdline").read_text().split():
        if arg.startswith("root=PARTLABEL="):
            return arg.removeprefix("root=PARTLABEL=")
    raise DiskError("the kernel command line names no root=PARTLABEL=; this is not a booted appliance")


def version_of(label: str) -> str | None:
    rest = label.removeprefix(ROOT_LABEL_PREFIX)
    return rest if label.startswith(ROOT_LABEL_PREFIX) and re.fullmatch(r"\d+\.\d+\.\d+", rest) else None


def find_disk(label: str) -> Path:
    """The whole-disk device holding the partition with this GPT label (from sysfs)."""
    override = os.environ.get("LB_UPDATE_DISK")
    if override:
        return Path(override)
    for uevent in Path("/sys/class/block").glob("*/uevent"):
        fields = dict(line.split("=", 1) for line in uevent.read_text().splitlines() if "=" in line)
        if fields.get("PARTNAME") == label and fields.get("DEVTYPE") == "partition":
            disk = uevent.parent.resolve().parent.name
            return Path("/dev") / disk
    raise DiskError(f"no partition labelled {label} (the booted root)")


class Disk:
    """The boot disk: its GPT read with sfdisk, its slots written at their byte offsets."""

    def __init__(self, device: Path):
        self.device = device

    def partitions(self) -> list[Partition]:
        result = subprocess.run(["sfdisk", "--json", str(self.device)], capture_output=True, text=True)
        if result.returncode != 0:
            raise DiskError(f"cannot read the partition table of {self.device}: {result.stderr.strip()}")
        table = json.loads(result.stdout)["partitiontable"]
        sector = int(table.get("sectorsize", 512))
        parts = []
        for p in table.get("partitions", []):
            number = int(re.search(r"(\d+)$", p["node"]).group(1))  # type: ignore[union-attr]
            start, size = p["start"] * sector, p["size"] * sector
            parts.append(Partition(number, start, size, p.get("name", ""), p["type"].upper()))
        return parts

    def slots(self) -> list[Slot]:
        slots = [Slot(p, version_of(p.label)) for p in self.partitions() if p.type == ROOT_TYPE]
        if len(slots) != 2:
            raise DiskError(f"{self.device} has {len(slots)} root partitions; an A/B appliance disk has two")
        return slots

    def relabel(self, slot: Slot, label: str) -> None:
        """Set a slot's GPT label (sfdisk rewrites both GPT copies; the kernel's view is not
        updated, the next boot's initrd reads the disk). Raises DiskError."""
        result = subprocess.run(
            ["sfdisk", "--no-reread", "--no-tell-kernel", "--part-label"]
            + [str(self.device), str(slot.partition.number), label],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise DiskError(f"cannot label partition {slot.partition.number} {label}: {result.stderr.strip()}")
        os.sync()


class ESP:
    """The EFI system partition's UKI directory (mounted at /efi on the appliance)."""

    def __init__(self, root: Path):
        self.root = root
        self.dir = root / UKI_DIR

    @classmethod
    def from_env(cls) -> ESP:
        return cls(Path(os.environ.get("LB_ESP_DIR") or "/efi"))

    def entries(self) -> list[BootEntry]:
        entries = []
        for path in sorted(self.dir.glob("*.efi")):
            match = UKI_NAME.fullmatch(path.name)
            if match:
                left, done = (None if g is None else int(g) for g in match.group("left", "done"))
                entries.append(BootEntry(path, match.group("version"), left, done))
        return entries

    def entry(self, version: str) -> BootEntry | None:
        return next((e for e in self.entries() if e.version == version), None)

    def partials(self) -> list[Path]:
        return sorted(self.dir.glob(f"*{PARTIAL_SUFFIX}"))

    def free_bytes(self) -> int:
        st = os.statvfs(self.dir)
        return st.f_bavail * st.f_frsize

    def release(self) -> None:
        """Unmount the ESP's file system now, not 30 s later when the automount idles: a FAT that
        is not mounted when the power goes is clean (no dirty bit) for the firmware and fsck."""
        try:
            mounts = Path("/proc/self/mounts").read_text().splitlines()
        except OSError:
            return
        if any(m.split()[1:3] == [str(self.root), "vfat"] for m in mounts if len(m.split()) > 2):
            subprocess.run(["umount", str(self.root)], check=False, capture_output=True)

    def sync_dir(self) -> None:
        fsync_dir(self.dir)
        os.sync()
