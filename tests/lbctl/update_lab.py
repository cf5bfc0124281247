"""A disk image file laid out like the appliance's (ESP, slot A, slot B, data), an ESP directory
and signed archives with small payloads: `lbctl update` runs against them as on the appliance
(LB_UPDATE_DISK, LB_ESP_DIR, LB_BOOTED_ROOT move it there), without a VM."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from lbctl.update import archive as arc
from lbctl.update.disk import ROOT_TYPE
from lbctl.update.minisign import SecretKey

MIB = 1 << 20
SLOT_BYTES = 8 * MIB
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


def make_disk(path: Path, booted: str = "lbroot_0.1.0") -> None:
    """A 40 MiB GPT disk: 1 esp (4 MiB), 2 slot A (the booted label), 3 slot B (_empty), 4 lbdata."""
    with path.open("wb") as f:
        f.truncate(40 * MIB)
    table = (
        "label: gpt\n"
        f"size=4MiB, type={ESP_TYPE}, name=esp\n"
        f"size=8MiB, type={ROOT_TYPE}, name={booted}\n"
        f"size=8MiB, type={ROOT_TYPE}, name=_empty\n"
        "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=lbdata\n"
    )
    subprocess.run(["sfdisk", "--quiet", str(path)], input=table, text=True, check=True)


def image(seed: str, size: int) -> bytes:
    """Deterministic, compressible bytes (a root file system stand-in)."""
    block = hashlib.sha256(seed.encode()).digest() * 64
    return (block + bytes(len(block))) * (size // (2 * len(block))) + bytes(size % (2 * len(block)))


@dataclass
class Lab:
    tmp: Path
    key: SecretKey = field(default_factory=SecretKey.generate)

    def __post_init__(self) -> None:
        self.disk = self.tmp / "disk.img"
        self.esp = self.tmp / "esp"
        self.keys = self.tmp / "keys"
        self.data = self.tmp / "data"
        make_disk(self.disk)
        (self.esp / "EFI/Linux").mkdir(parents=True)
        (self.esp / "EFI/Linux/lbappliance_0.1.0.efi").write_bytes(image("uki 0.1.0", MIB))
        self.keys.mkdir()
        (self.keys / "release.pub").write_text(self.key.public_key().text())
        self.data.mkdir()

    def env(self, booted: str = "lbroot_0.1.0") -> dict[str, str]:
        return {
            "LB_UPDATE_DISK": str(self.disk),
            "LB_ESP_DIR": str(self.esp),
            "LB_BOOTED_ROOT": booted,
            "LB_UPDATE_KEYS_DIR": str(self.keys),
            "LB_DATA_DIR": str(self.data),
            "LB_RUN_DIR": str(self.tmp / "run"),
            "LB_SERIAL_CONSOLE": os.devnull,
        }

    def archive(
        self,
        version: str,
        *,
        product: str = "lbappliance",
        min_version: str = "0.1.0",
        config_formats: tuple[int, ...] = (1,),
        key: SecretKey | None = None,
        root_bytes: int = SLOT_BYTES,
        comment: str | None = None,
    ) -> tuple[Path, Path]:
        """A signed archive and its checksum file in tmp/<version>-<product>/."""
        out = self.tmp / f"{version}-{product}-{(key or self.key).public_key().id}"
        out.mkdir(exist_ok=True)
        root, uki = out / "root.raw", out / "uki.efi"
        root.write_bytes(image(f"root {version}", root_bytes))
        uki.write_bytes(image(f"uki {version}", MIB + 12345))
        arc.compress(root, out / arc.ROOT, level=3)
        arc.compress(uki, out / arc.UKI, level=3)
        manifest = arc.Manifest(
            arc.FORMAT,
            product,
            version,
            min_version,
            config_formats,
            arc.payload_of(root, out / arc.ROOT, arc.ROOT),
            arc.payload_of(uki, out / arc.UKI, arc.UKI),
        )
        signature = (key or self.key).sign(manifest.to_json(), comment or manifest.trusted_comment)
        target = out / f"{product}-{version}-update.tar"
        arc.write(target, manifest, signature, out / arc.ROOT, out / arc.UKI, 1767225600)
        checksum = target.with_name(target.name + ".sha256")
        checksum.write_text(arc.checksum_text(arc.sha256_file(target), target.name))
        return target, checksum

    def slot_bytes(self, number: int) -> bytes:
        start = {2: 5 * MIB, 3: 13 * MIB}[number]  # sfdisk aligns the first partition at 1 MiB
        with self.disk.open("rb") as f:
            f.seek(start)
            return f.read(SLOT_BYTES)

    def labels(self) -> list[str]:
        out = subprocess.run(["sfdisk", "--json", str(self.disk)], capture_output=True, text=True, check=True).stdout
        import json

        return [p.get("name", "") for p in json.loads(out)["partitiontable"]["partitions"]]

    def esp_files(self) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((self.esp / "EFI/Linux").iterdir())}

    def snapshot(self) -> tuple[str, list[str], dict[str, str]]:
        """What an apply must not change when it refuses: slot B, the labels, the ESP."""
        return hashlib.sha256(self.slot_bytes(3)).hexdigest(), self.labels(), self.esp_files()
