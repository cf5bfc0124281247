"""The offline-update lab: a v1 appliance on a raw copy of the built disk that keeps what its
reboots and power cuts leave, the v2 archive built from the same tree (`LB_VERSION=0.2.0`, the shipped
`lbimage build` and `lbimage update-archive`), archives that must be refused, and a v2 whose
HAProxy cannot start. tests/image/test_update.py and bench/update use it.

A power cut is SIGKILL to QEMU: what the guest had not flushed to its virtual disk is lost, what
QEMU had written stays (the model of update-notes.md). After each cut the disk is checked from
the host before it boots again: both GPT copies valid and every slot label complete (sfdisk), and
the ESP clean (fsck.fat -n).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from builder import ROOT, keys, qemu
from builder.mkosi import BuiltImage
from lbctl.update import archive as arc
from lbctl.update.minisign import SecretKey
from tests.helpers import provisioned

V2 = "0.2.0"
WORK = ROOT / "build" / "update-test"
VENV_BIN = Path(sys.executable).parent
TEST_LEVEL = 9  # zstd level of the test archives (the release's 19 only makes them smaller)
GUEST_DIR = "/var/lib/lbappliance/update/incoming"
ESP_START_MIB, ESP_MIB = 1, 256

NETWORK = "hostname: lb-update\ninterfaces:\n  eth0: {dhcp: true}\n  eth1: {address: 10.202.0.2/24}\n"
SITE = """\
preset: pacs
snat_address: 10.202.0.11
interface: eth1
services:
  DICOM:
    vip: 10.202.0.10
    servers:
      - {label: Server1, address: 10.202.0.1, port: 11112}
"""
FIREWALL = "management_networks: [10.0.2.0/24]\n"
FIREWALL_RULES = "# kept across updates\nchain input {\n    ip saddr 10.202.0.1 udp dport 161 counter accept\n}\n"
LABEL = re.compile(r"esp|lbdata|_empty|lbroot_\d+\.\d+\.\d+")


def lbimage(*args: str, env: dict[str, str], log: Path) -> None:
    with log.open("a") as f:
        result = subprocess.run([str(VENV_BIN / "lbimage"), *args], env=env, stdout=f, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(
            f"lbimage {' '.join(args)} failed; log: {log}\n" + "\n".join(log.read_text().splitlines()[-20:])
        )


def build_v2(level: int = TEST_LEVEL) -> tuple[BuiltImage, Path, Path]:
    """The next version from this tree, with `make image update-archive LB_VERSION=0.2.0`'s commands."""
    env = {**os.environ, "LB_VERSION": V2, "LB_BUILD_DIR": str(WORK / "build"), "LB_DIST_DIR": str(WORK / "dist")}
    WORK.mkdir(parents=True, exist_ok=True)
    log = WORK / "build.log"
    log.write_text("")
    lbimage("build", "--hypervisor", "kvm", env=env, log=log)
    lbimage("update-archive", "--level", str(level), env=env, log=log)
    built = BuiltImage.load(WORK / "build" / "image.json")
    assert built is not None
    archive = WORK / "dist" / f"lbappliance-{V2}-update.tar"
    return built, archive, archive.with_name(archive.name + ".sha256")


def signing_key() -> SecretKey:
    key = keys.key_dir().signing_key()
    assert key is not None, "the build's key directory has no release.key"
    return key


def variant(
    name: str,
    good: Path,
    *,
    manifest_changes: dict | None = None,
    key: SecretKey | None = None,
    root: tuple[Path, Path] | None = None,
) -> tuple[Path, Path]:
    """Another archive from the good one's payloads: a changed manifest, another signing key, or
    another root (image, zstd), signed and with a matching checksum file."""
    opened = arc.open_verified(good, good.with_name(good.name + ".sha256"), [signing_key().public_key()])
    work = WORK / "variants" / name
    work.mkdir(parents=True, exist_ok=True)
    members = {}
    for member in (arc.ROOT, arc.UKI):
        path = work / member
        with opened.member(member) as f, path.open("wb") as out:
            payload = opened.manifest.root if member == arc.ROOT else opened.manifest.uki
            out.write(f.read(payload.bytes))
        members[member] = path
    m = opened.manifest
    if root is not None:
        image, compressed = root
        members[arc.ROOT] = compressed
        m = arc.Manifest(**{**m.__dict__, "root": arc.payload_of(image, compressed, arc.ROOT)})
    if manifest_changes:
        m = arc.Manifest(**{**m.__dict__, **manifest_changes})
    signature = (key or signing_key()).sign(m.to_json(), m.trusted_comment)
    target = work / f"{m.product}-{m.version}-update.tar"
    arc.write(target, m, signature, members[arc.ROOT], members[arc.UKI], 1767225600)
    checksum = target.with_name(target.name + ".sha256")
    checksum.write_text(arc.checksum_text(arc.sha256_file(target), target.name))
    return target, checksum


def broken_v2(built: BuiltImage, good: Path) -> tuple[Path, Path]:
    """v2 whose HAProxy cannot start (a drop-in ExecStartPre=/bin/false in its root file system)."""
    work = WORK / "variants" / "broken-root"  # not variant()'s directory: it extracts payloads there
    work.mkdir(parents=True, exist_ok=True)
    image = work / "root.raw"
    subprocess.run(["cp", "--sparse=always", built.root_partition, str(image)], check=True)
    dropin = work / "99-broken.conf"
    dropin.write_text("[Service]\nExecStartPre=/bin/false\n")
    commands = "mkdir /etc/systemd/system/haproxy.service.d\n"
    commands += f"write {dropin} /etc/systemd/system/haproxy.service.d/99-broken.conf\n"
    subprocess.run(["debugfs", "-w", "-f", "-", str(image)], input=commands, text=True, check=True, capture_output=True)
    check = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    compressed = work / arc.ROOT
    arc.compress(image, compressed, level=3)
    return variant("broken", good, root=(image, compressed))


# Run in the guest: the good archive with another manifest and signature (the payloads are the
# same), and its checksum file. Uploading only the two small files keeps the test short.
ASSEMBLE = """
import hashlib, io, sys, tarfile
good, manifest, signature, out = sys.argv[1:]
with tarfile.open(good) as src, tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as dst:
    for member in src.getmembers():
        replaced = {"manifest.json": manifest, "manifest.json.minisig": signature}.get(member.name)
        if replaced:
            data = open(replaced, "rb").read()
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
        else:
            dst.addfile(member, src.extractfile(member))
digest = hashlib.sha256(open(out, "rb").read()).hexdigest()
open(out + ".sha256", "w").write(digest + "  " + out.rsplit("/", 1)[-1] + "\\n")
"""


@dataclass
class Refusal:
    """An archive the appliance must refuse, made in the guest from the uploaded good one."""

    name: str
    reason: str  # what the refusal must say
    prepare: str  # a shell command run in GUEST_DIR that makes archive and checksum
    archive: str  # file names in GUEST_DIR
    checksum: str
    uploads: dict[str, bytes] = field(default_factory=dict)  # small files put in GUEST_DIR first


def refusals(good: Path) -> list[Refusal]:
    """The seven archives that must be refused: corrupt, truncated, another key, a wrong checksum
    file, a downgrade, the same version, another product."""
    name, size = good.name, good.stat().st_size
    opened = arc.open_verified(good, good.with_name(name + ".sha256"), [signing_key().public_key()])
    out = [
        Refusal(
            "corrupt",
            "the archive is damaged or incomplete",
            f"cp {name} corrupt.tar && python3 -c \"f = open('corrupt.tar', 'r+b'); f.seek({size // 2}); "
            f'b = f.read(1); f.seek({size // 2}); f.write(bytes([b[0] ^ 32]))"',
            "corrupt.tar",
            f"{name}.sha256",
        ),
        Refusal(
            "truncated",
            "the archive is damaged or incomplete",
            f"head -c {size // 2} {name} > truncated.tar",
            "truncated.tar",
            f"{name}.sha256",
        ),
        Refusal(
            "wrong-checksum",
            "the checksum belongs to another archive",
            f"echo '{'0' * 64}  {name}' > wrong.sha256",
            name,
            "wrong.sha256",
        ),
    ]
    other_key = SecretKey.generate()
    for label, changes, key, reason in (
        ("other-key", {}, other_key, f"signed with key {other_key.public_key().id}"),
        ("downgrade", {"version": "0.0.9", "min_version": "0.0.1"}, None, "older than the running 0.1.0"),
        ("same-version", {"version": "0.1.0"}, None, "which is running already"),
        ("other-product", {"product": "otherbox"}, None, "the archive is for 'otherbox'"),
    ):
        m = arc.Manifest(**{**opened.manifest.__dict__, **changes})
        body = m.to_json()
        signature = (key or signing_key()).sign(body, m.trusted_comment).encode()
        out.append(
            Refusal(
                label,
                reason,
                f"python3 -c '{ASSEMBLE}' {name} {label}.json {label}.minisig {label}.tar",
                f"{label}.tar",
                f"{label}.tar.sha256",
                {f"{label}.json": body, f"{label}.minisig": signature},
            )
        )
    return out


# What fsck.fat -n says of a FAT that was mounted when the power went, and nothing worse: Linux
# sets the volume's dirty flag (byte 65 of a FAT32 boot sector) while it is mounted, so the boot
# sector then differs from its backup in that byte. systemd-fsck clears it at the next mount.
DIRTY_ONLY = (
    "fsck.fat ",
    "There are differences between boot sector and its backup.",
    "This is mostly harmless. Differences: (offset:original/backup)",
    "  65:01/00",
    "  Not automatically fixing this.",
    "Dirty bit is set. Fs was not properly unmounted and some data may be corrupt.",
    " Automatically removing dirty bit.",
    "Leaving filesystem unchanged.",
)


def only_dirty(report: str) -> bool:
    """fsck.fat -n found nothing but the dirty flag of a file system that was mounted."""
    lines = [line for line in report.splitlines() if line.strip()]
    summary = re.compile(r"\S+: \d+ files, \d+/\d+ clusters")
    return any(line.startswith("Dirty bit") for line in lines) and all(
        line.startswith(DIRTY_ONLY) or summary.fullmatch(line) for line in lines
    )


def disk_state(disk: Path, work: Path) -> tuple[list[str], str]:
    """(the slot labels, fsck.fat's verdict) of a powered-off raw disk, read from the host.

    Raises AssertionError when a GPT copy is invalid, a label is half-written, or the ESP is
    damaged (anything beyond the dirty flag of a FAT that was mounted).
    """
    verify = subprocess.run(["sfdisk", "--verify", str(disk)], capture_output=True, text=True)
    assert verify.returncode == 0 and "problem" not in verify.stdout.lower(), verify.stdout + verify.stderr
    dump = subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True, check=True).stdout
    labels = [p.get("name", "") for p in json.loads(dump)["partitiontable"]["partitions"]]
    assert all(LABEL.fullmatch(label) for label in labels), f"a half-written label: {labels}"
    work.mkdir(parents=True, exist_ok=True)
    esp = work / "esp.raw"
    with disk.open("rb") as f:
        f.seek(ESP_START_MIB << 20)
        esp.write_bytes(f.read(ESP_MIB << 20))
    fsck = subprocess.run(["fsck.fat", "-n", str(esp)], capture_output=True, text=True)
    assert fsck.returncode == 0 or only_dirty(fsck.stdout), f"the ESP is damaged:\n{fsck.stdout}{fsck.stderr}"
    esp.unlink()
    return labels, fsck.stdout.strip().splitlines()[-1]


@dataclass
class Appliance:
    """One appliance's disk across boots: each boot is a new QEMU process on the same overlay."""

    base: Path  # the v1 raw disk (build/mkosi/lbappliance_<version>.raw)
    workdir: Path
    ssh_key: Path
    public_key: str
    boots: int = 0
    vm: qemu.VM | None = None
    events: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A raw copy of the v1 disk, not a qcow2 overlay: the power is cut by SIGKILL, and a qcow2
        # whose metadata QEMU had not written (cache=unsafe ignores the guest's flushes) could
        # come back with clusters the guest had flushed missing or shared. A raw file keeps
        # exactly what QEMU wrote, which is the model: the guest's unflushed writes are lost.
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.disk = self.workdir / "disk.raw"
        self.disk.unlink(missing_ok=True)
        subprocess.run(["cp", "--sparse=always", "--reflink=auto", str(self.base), str(self.disk)], check=True)
        inputs = {"network": NETWORK, "site": SITE, "firewall": FIREWALL, "firewall-rules": FIREWALL_RULES}
        self.spec = qemu.VMSpec(
            disk=self.disk,
            disk_format="raw",
            snapshot=False,
            nics=[qemu.Nic(ssh=True), qemu.Nic()],
            credentials=provisioned(self.public_key, **inputs),
        )

    def start(self) -> qemu.VM:
        self.boots += 1
        self.vm = qemu.VM(self.spec, self.workdir, ssh_key=self.ssh_key, name=f"boot{self.boots:02d}")
        self.vm.start()
        return self.vm

    def boot(self, timeout: float = 600) -> str:
        """Boot until READY, through a failing trial boot that rolls back (the console says
        FAILED, the guest reboots and QEMU exits, -no-reboot). Returns the READY version."""
        vm = self.start()
        try:
            return vm.wait_ready(timeout)
        except qemu.ApplianceFailed:
            assert vm.proc is not None
            vm.proc.wait(timeout=timeout)  # the health gate marks the entry bad and reboots
            self.events.append(f"boot {self.boots}: FAILED, rolled back: {vm.console()[-600:]!r}")
            return self.boot(timeout)

    def ssh(self, command: str, timeout: float = 600) -> str:
        assert self.vm is not None
        return self.vm.ssh(command, timeout=timeout).stdout

    def upload(self, *files: Path) -> list[str]:
        assert self.vm is not None
        self.ssh(f"mkdir -p {GUEST_DIR}")
        remote = []
        for f in files:
            target = f"{GUEST_DIR}/{f.name}"
            self.vm.copy_to(f, target)
            remote.append(target)
        return remote

    def put(self, name: str, data: bytes) -> None:
        """A small file into GUEST_DIR."""
        assert self.vm is not None
        subprocess.run(self.vm.ssh_argv(f"cat > {GUEST_DIR}/{name}"), input=data, check=True, capture_output=True)

    def apply_until(self, archive: str, point: str | None, kill_after: float | None = None) -> float:
        """Run `lbctl update apply` and cut the power at a fault point, or kill_after seconds
        after it started. Returns the seconds the apply ran."""
        assert self.vm is not None
        fault = f"LBCTL_UPDATE_FAULT={point} " if point else ""
        proc = subprocess.Popen(
            self.vm.ssh_argv(f"{fault}lbctl update apply {archive} --reboot-later"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started = time.monotonic()
        try:
            if point:
                self.vm.wait_for(re.compile(rf"LBUPDATE FAULT POINT {re.escape(point)}"), timeout=600)
            else:
                assert kill_after is not None
                time.sleep(kill_after)
        finally:
            self.cut_power()
            proc.kill()
            proc.wait()
        return time.monotonic() - started

    def cut_power(self) -> None:
        assert self.vm is not None
        self.vm.stop()  # SIGKILL to QEMU's process group

    def wait_exit(self, timeout: float = 300) -> None:
        assert self.vm is not None and self.vm.proc is not None
        self.vm.proc.wait(timeout=timeout)

    def check_disk(self) -> list[str]:
        labels, _ = disk_state(self.disk, self.workdir / "disk-check")
        return labels
