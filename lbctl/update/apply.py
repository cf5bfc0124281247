"""`lbctl update apply`: put a signed archive's version into the inactive slot, A/B.

The steps, in an order where every prefix leaves a disk that boots (the running version until the
last rename, the new one after it):

  1. verify   nothing is written: the checksum, the signature against the image's keys, product,
              version (no downgrade or same version without --allow-downgrade), minimum version,
              configuration format, the payloads' SHA-256, room in the slot and on the ESP
  2. free     the inactive slot: remove its old UKI (and any half-written one), label it _empty
  3. slot     decompress the root file system into it, flush, drop the cache, read it back and
              compare its SHA-256 with the signed manifest
  4. uki      decompress the UKI to EFI/Linux/<name>.efi.partial (systemd-boot loads only *.efi),
              flush, read back, compare
  5. label    the slot becomes lbroot_<version>, the name the new UKI's root=PARTLABEL= asks for
  6. install  rename the UKI to <name>+3.efi: from here systemd-boot boots it, three tries
  7. reboot   (or not, with --reboot-later)

A power cut before 6 boots the running version (no UKI names the new slot, or the slot's label
names no UKI); after 6 the new one, whose boot is blessed only once it is READY (lbctl.update.health)
and which systemd-boot gives up after three failed tries. The named fault points (LBCTL_UPDATE_FAULT,
for the power-cut tests) stop the apply at a step and wait to be killed: slot-write (half the slot
written, not flushed), slot-written, uki-write (half the UKI), relabelled (between the two renames),
uki-installed.

systemd-sysupdate 257 would do steps 3-6 from a local directory, but it writes and relabels in one
verb (no read-back before the slot goes live) and verifies nothing for local sources; see
docs/update.md.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..appliance import IMAGE_ID, RUN_DIR
from . import archive as arc
from . import minisign, state
from .disk import (
    EMPTY,
    ESP,
    PARTIAL_SUFFIX,
    ROOT_LABEL_PREFIX,
    TRIES,
    Disk,
    DiskError,
    Slot,
    booted_root_label,
    find_disk,
    version_of,
)

KEYS_DIR = Path(os.environ.get("LB_UPDATE_KEYS_DIR") or "/usr/lib/lbappliance/keys")
FAULT_ENV = "LBCTL_UPDATE_FAULT"
FAULT_POINTS = ("slot-write", "slot-written", "uki-write", "relabelled", "uki-installed")
ESP_MARGIN = 1 << 20  # bytes kept free on the ESP beyond the new UKI (FAT needs room to rename)
STEPS = 7


class UpdateRefused(Exception):
    """The archive must not be applied; nothing was written."""


class UpdateFailed(Exception):
    """Writing the update failed; the running version still boots (the message says what to do)."""


@dataclass
class Plan:
    archive: arc.Archive
    disk: Disk
    esp: ESP
    booted: Slot
    target: Slot  # the inactive slot
    downgrade: bool

    @property
    def version(self) -> str:
        return self.archive.manifest.version

    @property
    def booted_version(self) -> str:
        assert self.booted.version is not None
        return self.booted.version


# Who else hears the progress besides standard output (the web UI's update page), while apply runs.
_listener: Callable[[str], None] | None = None


def say(message: str) -> None:
    print(f"update: {message}", flush=True)
    if _listener is not None:
        _listener(message)


@contextmanager
def step(number: int, title: str) -> Iterator[None]:
    say(f"[{number}/{STEPS}] {title} ...")
    started = time.monotonic()
    yield
    say(f"[{number}/{STEPS}] {title}: done in {time.monotonic() - started:.1f} s")


def fault(point: str) -> None:
    """Stop here and wait to be killed, when the power-cut tests asked for this point."""
    if os.environ.get(FAULT_ENV) != point:
        return
    message = f"LBUPDATE FAULT POINT {point}: waiting to be killed\n"
    sys.stdout.write(message)
    sys.stdout.flush()
    try:
        with open(os.environ.get("LB_SERIAL_CONSOLE", "/dev/ttyS0"), "w") as console:
            console.write("\r\n" + message)
    except OSError:
        pass
    while True:
        time.sleep(3600)


@contextmanager
def exclusive() -> Iterator[None]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with (RUN_DIR / "update.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UpdateRefused("another update is running") from None
        yield


def verify(archive_path: Path, checksum_path: Path, allow_downgrade: bool = False) -> Plan:
    """Step 1: everything that can be checked before writing. Raises UpdateRefused."""
    try:
        keys = minisign.load_public_keys(KEYS_DIR)
    except minisign.MinisignError as exc:
        raise UpdateRefused(f"the image's release keys cannot be read: {exc}") from None
    if not keys:
        raise UpdateRefused(f"this image carries no release keys ({KEYS_DIR}): it cannot verify updates")
    try:
        label = booted_root_label()
        disk = Disk(find_disk(label))
        slots = disk.slots()
    except DiskError as exc:
        raise UpdateRefused(str(exc)) from None
    booted = next((s for s in slots if s.partition.label == label), None)
    if booted is None or booted.version is None:
        raise UpdateRefused(f"the booted root {label} is not one of the disk's two slots")
    target = next(s for s in slots if s is not booted)
    esp = ESP.from_env()
    try:
        archive = arc.open_verified(archive_path, checksum_path, keys)
    except arc.ArchiveError as exc:
        raise UpdateRefused(str(exc)) from None
    m = archive.manifest
    running = booted.version
    if m.product != IMAGE_ID:
        raise UpdateRefused(f"the archive is for {m.product!r}, this appliance is {IMAGE_ID!r}")
    new, old = arc.version_key(m.version), arc.version_key(running)
    if new == old:
        raise UpdateRefused(f"the archive is version {m.version}, which is running already")
    if new < old and not allow_downgrade:
        raise UpdateRefused(
            f"the archive is version {m.version}, older than the running {running} (--allow-downgrade to go back)"
        )
    if arc.version_key(running) < arc.version_key(m.min_version):
        raise UpdateRefused(
            f"version {m.version} applies to {m.min_version} or later; this appliance runs {running} "
            f"(apply an update to {m.min_version} first)"
        )
    try:
        found = state.config_format()
    except state.ConfigFormatError as exc:
        raise UpdateRefused(str(exc)) from None
    if found not in m.config_formats:
        raise UpdateRefused(
            f"version {m.version} reads configuration formats {', '.join(map(str, m.config_formats))}; "
            f"this appliance's configuration is format {found}"
        )
    booted_entry = esp.entry(running)
    if booted_entry is None:
        raise UpdateRefused(f"the ESP ({esp.dir}) has no UKI of the running version {running}")
    if booted_entry.state != "good":
        raise UpdateRefused(
            f"the running version {running} is still on trial ({booted_entry.path.name}); it is blessed once "
            "the appliance is READY, then update again"
        )
    if m.root.image_bytes > target.partition.size:
        raise UpdateRefused(
            f"the root file system is {m.root.image_bytes} bytes, slot {target.name} holds {target.partition.size}"
        )
    replaced = (target.version, m.version)
    freed = sum(e.path.stat().st_size for e in esp.entries() if e.version != running and e.version in replaced)
    freed += sum(p.stat().st_size for p in esp.partials())
    room = esp.free_bytes() + freed
    if m.uki.image_bytes + ESP_MARGIN > room:
        need = (m.uki.image_bytes + ESP_MARGIN) // 2**20
        raise UpdateRefused(f"the ESP has {room // 2**20} MiB free for the new UKI, which needs {need} MiB")
    return Plan(archive, disk, esp, booted, target, new < old)


def running_version() -> str:
    try:
        return version_of(booted_root_label()) or "unknown"
    except (DiskError, OSError):
        return "unknown"


def _copy_member(source: IO[bytes], size: int, sink: IO[bytes]) -> None:
    try:
        left = size
        while left:
            chunk = source.read(min(arc.CHUNK, left))
            if not chunk:
                break
            sink.write(chunk)
            left -= len(chunk)
    except BrokenPipeError:
        pass
    finally:
        try:
            sink.close()
        except BrokenPipeError:
            pass


def decompress_to(plan: Plan, payload: arc.Payload, out_fd: int, offset: int, half: Callable[[], None]) -> None:
    """Decompress a payload into out_fd at offset (zstd in a child, fed from the archive member);
    call half() once half the image is written. Raises UpdateFailed."""
    with plan.archive.member(payload.file) as member:
        proc = subprocess.Popen(["zstd", "-dc", *arc.ZSTD_ARGS], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        feeder = threading.Thread(target=_copy_member, args=(member, payload.bytes, proc.stdin), daemon=True)
        feeder.start()
        written, halfway = 0, False
        while chunk := proc.stdout.read(arc.CHUNK):
            if written + len(chunk) > payload.image_bytes:
                proc.kill()
                raise UpdateFailed(f"{payload.file} decompresses to more than the {payload.image_bytes} bytes signed")
            view = memoryview(chunk)
            while view:
                n = os.pwrite(out_fd, view, offset + written)
                view, written = view[n:], written + n
            if not halfway and written >= payload.image_bytes // 2:
                halfway = True
                half()
        rc = proc.wait()
        feeder.join()
    if rc != 0 or written != payload.image_bytes:
        raise UpdateFailed(
            f"{payload.file} did not decompress to the signed {payload.image_bytes} bytes (zstd exit {rc})"
        )
    os.fsync(out_fd)


def read_back(path: Path, offset: int, size: int) -> str:
    """SHA-256 of size bytes at offset, read from the device (its cached pages dropped first)."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, offset, size, os.POSIX_FADV_DONTNEED)
        left, at = size, offset
        while left:
            chunk = os.pread(fd, min(arc.CHUNK, left), at)
            if not chunk:
                break
            h.update(chunk)
            left, at = left - len(chunk), at + len(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def free_slot(plan: Plan) -> None:
    """Step 2: no UKI may name the inactive slot while it is written."""
    esp, running = plan.esp, plan.booted_version
    for partial in esp.partials():
        partial.unlink()
    for entry in esp.entries():
        if entry.version != running and entry.version in (plan.target.version, plan.version):
            say(f"removing {entry.path.name} (the version in slot {plan.target.name} it replaces)")
            entry.path.unlink()
    esp.sync_dir()
    esp.release()
    if plan.target.partition.label != EMPTY:
        plan.disk.relabel(plan.target, EMPTY)


def write_slot(plan: Plan) -> None:
    """Step 3. An apply that an earlier one interrupted after its slot was written and read back
    (a power cut, a reboot) reads the slot back instead of writing it again: the record of that
    earlier read-back (state.STAGED_FILE) only says where to look, the hash decides."""
    payload, start = plan.archive.manifest.root, plan.target.partition.start
    staged = state.staged()
    if staged == (plan.target.partition.number, payload.image_sha256):
        if read_back(plan.disk.device, start, payload.image_bytes) == payload.image_sha256:
            say(f"slot {plan.target.name} holds this root file system already (read back); not written again")
            return
    state.set_staged(None)  # durable before the slot is touched
    fd = os.open(plan.disk.device, os.O_WRONLY)
    try:
        decompress_to(plan, payload, fd, start, lambda: fault("slot-write"))
    finally:
        os.close(fd)
    if read_back(plan.disk.device, start, payload.image_bytes) != payload.image_sha256:
        raise UpdateFailed(
            f"slot {plan.target.name} read back differs from the signed root file system (a disk error?); "
            "it stays _empty and the running version is untouched"
        )
    state.set_staged((plan.target.partition.number, payload.image_sha256))


def write_uki(plan: Plan) -> Path:
    """Step 4: the UKI under a name systemd-boot does not load yet."""
    payload = plan.archive.manifest.uki
    partial = plan.esp.dir / f"{IMAGE_ID}_{plan.version}.efi{PARTIAL_SUFFIX}"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        decompress_to(plan, payload, fd, 0, lambda: fault("uki-write"))
    finally:
        os.close(fd)
    if read_back(partial, 0, payload.image_bytes) != payload.image_sha256:
        partial.unlink()
        raise UpdateFailed("the UKI read back from the ESP differs from the signed one (a disk error?)")
    plan.esp.release()
    return partial


def label_slot(plan: Plan) -> None:
    """Step 5."""
    plan.disk.relabel(plan.target, ROOT_LABEL_PREFIX + plan.version)


def install_uki(plan: Plan, partial: Path) -> None:
    """Step 6."""
    partial.rename(plan.esp.dir / f"{IMAGE_ID}_{plan.version}+{TRIES}.efi")
    plan.esp.sync_dir()
    if plan.downgrade:
        # systemd-boot prefers the newest version: set the running (newer) one aside as bad, so
        # that the older one boots. If the older one fails its tries too, the newest bad entry,
        # the one running now, is booted again.
        booted = plan.esp.entry(plan.booted_version)
        if booted is not None:
            booted.path.rename(booted.path.with_name(f"{IMAGE_ID}_{plan.booted_version}+0.efi"))
            plan.esp.sync_dir()
    plan.esp.release()


def apply(
    archive_path: Path,
    checksum_path: Path,
    allow_downgrade: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Plan:
    """Steps 1 to 6 (the caller reboots). Raises UpdateRefused (nothing written) or UpdateFailed.
    `progress` hears every line printed ("[3/6] write slot B ...", ...)."""
    global _listener
    with exclusive():
        _listener = progress
        try:
            return _apply(archive_path, checksum_path, allow_downgrade)
        finally:
            _listener = None


def _apply(archive_path: Path, checksum_path: Path, allow_downgrade: bool) -> Plan:
    with step(1, "verify the archive, its signature and its payloads"):
        try:
            plan = verify(archive_path, checksum_path, allow_downgrade)
        except UpdateRefused as exc:
            state.record(archive_path.name, running_version(), "refused", str(exc))
            raise
    m = plan.archive.manifest
    say(
        f"{m.product} {m.version} (signed by key {plan.archive.signed_by}) replaces "
        f"{plan.target.version or 'nothing'} in slot {plan.target.name}; "
        f"{plan.booted_version} keeps running in slot {plan.booted.name}"
    )
    try:
        with step(2, f"free slot {plan.target.name}"):
            free_slot(plan)
        with step(3, f"write slot {plan.target.name} ({m.root.image_bytes // 2**20} MiB) and read it back"):
            write_slot(plan)
        fault("slot-written")
        with step(4, f"write the UKI ({m.uki.image_bytes // 2**20} MiB) to the ESP and read it back"):
            partial = write_uki(plan)
        with step(5, f"label slot {plan.target.name} {ROOT_LABEL_PREFIX}{m.version}"):
            label_slot(plan)
        fault("relabelled")
        with step(6, f"install the UKI with {TRIES} boot tries"):
            install_uki(plan, partial)
        fault("uki-installed")
    except (UpdateFailed, DiskError, OSError) as exc:
        state.record(m.version, plan.booted_version, "failed", str(exc))
        raise UpdateFailed(f"{exc}; {plan.booted_version} still boots") from None
    state.set_staged(None)
    manifest_bytes = m.to_json()
    state.remember_manifest(m.version, manifest_bytes)
    state.record(m.version, plan.booted_version, "applied", f"waiting for the first boot of {m.version}")
    return plan
