"""QEMU harness: boots an appliance disk, provisions it, waits for READY and runs commands over SSH.

Used by the tests and by `lbimage boot`. It picks KVM when KVM really works on this host and falls
back to TCG otherwise (on some nested hosts KVM guests die at their first FPU instruction), boots
UEFI with OVMF, and emulates the chosen disk bus and NIC model so that each hypervisor's disk
file boots with close device models. The VM is always killed on exit; its console log is kept.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import progress

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
READY = re.compile(r"LBAPPLIANCE READY (\S+)")
RCU_STALL = "rcu: INFO: rcu_preempt detected stalls"
STALL_GRACE_SECONDS = 90  # a stall report without READY this long after it is a hung guest
FAILED = re.compile(r"LBAPPLIANCE FAILED ([^\r\n]*)")

# Disk buses: how the boot disk is attached. Each maps to the guest driver it exercises.
DISK_BUSES = {
    "virtio": ["-device", "virtio-blk-pci,drive=disk0,bootindex=1"],  # virtio_blk
    "virtio-scsi": [
        "-device",
        "virtio-scsi-pci,id=scsi0",
        "-device",
        "scsi-hd,drive=disk0,bus=scsi0.0,bootindex=1",
    ],  # virtio_scsi
    "pvscsi": ["-device", "pvscsi,id=scsi0", "-device", "scsi-hd,drive=disk0,bus=scsi0.0,bootindex=1"],  # vmw_pvscsi
    "sata": ["-device", "ide-hd,drive=disk0,bus=ide.0,bootindex=1"],  # ahci (q35)
    "nvme": ["-device", "nvme,drive=disk0,serial=lbdisk0,bootindex=1"],  # nvme
}
NIC_MODELS = {"virtio": "virtio-net-pci", "vmxnet3": "vmxnet3", "e1000e": "e1000e", "e1000": "e1000"}


class BootError(RuntimeError):
    """The VM did not reach READY; the message says why and where the console log is."""


class GuestStalled(BootError):
    """The guest's kernel reported an RCU stall and made no progress after it.

    Seen here under TCG on a nested host (about one boot in 25): a vCPU's timer never fires,
    early in the kernel's boot, and the guest hangs. It is the emulator's, not the appliance's.
    """


class ApplianceFailed(BootError):
    """The appliance announced LBAPPLIANCE FAILED <reason>."""

    def __init__(self, reason: str, log: Path):
        super().__init__(f"appliance reported FAILED: {reason} (console log: {log})")
        self.reason = reason


@dataclass
class Nic:
    model: str = "virtio"
    backend: str = "user"  # "user" (slirp, isolated) or "tap:<ifname>" (inside the VM's netns)
    ssh: bool = False  # forward a host port to the guest's port 22 (user backend only)
    link_up: bool = True


@dataclass(frozen=True)
class DirectKernel:
    kernel: Path
    initrd: Path
    cmdline: str

    @classmethod
    def from_uki(cls, uki: Path, directory: Path) -> DirectKernel:
        """Split a UKI (a PE image) into the files QEMU's -kernel/-initrd take, plus its command
        line (the .linux, .initrd and .cmdline sections, as `objcopy --only-section` would)."""
        from .packaging.uki import pe_sections

        sections = pe_sections(uki.read_bytes())
        missing = {".linux", ".initrd", ".cmdline"} - set(sections)
        if missing:
            raise ValueError(f"{uki}: no {', '.join(sorted(missing))} section in the UKI")
        directory.mkdir(parents=True, exist_ok=True)
        kernel, initrd = directory / "vmlinuz", directory / "initrd"
        kernel.write_bytes(sections[".linux"])
        initrd.write_bytes(sections[".initrd"])
        return cls(kernel, initrd, sections[".cmdline"].rstrip(b"\0").decode().strip())


@dataclass
class VMSpec:
    disk: Path
    disk_format: str = "raw"  # raw, qcow2, vmdk, vhdx, vpc: what qemu reads
    disk_bus: str = "virtio"
    nics: list[Nic] = field(default_factory=lambda: [Nic(ssh=True)])
    cpus: int = 2
    memory_mib: int = 4096
    credentials: dict[str, str] = field(default_factory=dict)  # systemd credentials, by name
    credential_transport: str = "fw_cfg"  # "fw_cfg" (files, any size) or "smbios" (type 11 OEM strings)
    extra_disks: list[Path] = field(default_factory=list)  # e.g. an LBCONFIG config disk (raw)
    cdrom: Path | None = None  # an ISO on a SATA CD-ROM drive, e.g. an LBCONFIG config ISO
    extra_devices: list[str] = field(default_factory=list)  # more -device specs, e.g. "pvscsi" (a bare controller)
    netns: str | None = None  # run QEMU inside this network namespace (for TAP backends)
    snapshot: bool = True  # never write to the disk file under test
    accel: str = "auto"  # auto, kvm or tcg
    # Load this kernel, initrd and command line directly (QEMU's -kernel), for a disk on a
    # controller the firmware cannot boot from; the disk's own UKI split into its sections.
    direct_kernel: DirectKernel | None = None
    # The fifth byte of the NICs' MACs (52:54:00:1b:<this>:<NIC index>): two VMs on one segment
    # (an HA pair) need different ones.
    mac_group: int = 0


@functools.cache
def kvm_usable() -> bool:
    """True when a KVM guest can really run here, FPU included.

    /dev/kvm existing is not enough: on some nested hosts a KVM guest dies at its first x87/SSE
    instruction. The probe boots a 512-byte boot sector that runs fninit/fld1/SSE, then writes to
    QEMU's isa-debug-exit port; anything other than that exit within a few seconds means no.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or not shutil.which("qemu-system-x86_64"):
        return False
    code = bytes.fromhex(
        "fa"  # cli
        "0f20e0"
        "0d0006"
        "0f22e0"  # mov eax,cr4 ; or ax,0x600 (OSFXSR|OSXMMEXCPT) ; mov cr4,eax
        "0f20c0"
        "24fb"
        "0c02"
        "0f22c0"  # mov eax,cr0 ; and al,~EM ; or al,MP ; mov cr0,eax
        "dbe3"
        "d9e8"
        "d9e8"
        "dec1"  # fninit ; fld1 ; fld1 ; faddp
        "0f57c0"  # xorps xmm0,xmm0
        "b010"
        "e6f4"  # mov al,0x10 ; out 0xf4,al  -> qemu exits with (0x10<<1)|1 = 33
        "f4ebfd"
    )  # hlt ; jmp $-1
    sector = code.ljust(510, b"\x90") + b"\x55\xaa"
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "probe.img"
        image.write_bytes(sector)
        try:
            result = subprocess.run(
                [
                    "qemu-system-x86_64",
                    "-accel",
                    "kvm",
                    "-cpu",
                    "host",
                    "-m",
                    "32",
                    "-display",
                    "none",
                    "-no-reboot",
                    "-serial",
                    "none",
                    "-monitor",
                    "none",
                    "-device",
                    "isa-debug-exit,iobase=0xf4,iosize=0x04",
                    "-drive",
                    f"file={image},format=raw,if=floppy",
                ],
                capture_output=True,
                timeout=20,
            )
        except subprocess.TimeoutExpired:
            return False
    return result.returncode == 33


def accel_args(accel: str) -> list[str]:
    if accel == "auto":
        accel = "kvm" if kvm_usable() else "tcg"
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


class VM:
    """One appliance VM. Use as a context manager: the VM is killed on exit, whatever happens."""

    def __init__(self, spec: VMSpec, workdir: Path, ssh_key: Path | None = None, name: str = "vm"):
        self.spec = spec
        self.workdir = workdir
        self.name = name
        self.ssh_key = ssh_key
        self.console_log = workdir / f"{name}-console.log"
        self.qmp_socket = workdir / f"{name}-qmp.sock"
        self.ssh_port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.version: str | None = None
        self.started = 0.0

    # --- lifecycle ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        s = self.spec
        if s.disk_bus not in DISK_BUSES:
            raise ValueError(f"disk_bus {s.disk_bus!r}: expected one of {', '.join(DISK_BUSES)}")
        vars_copy = self.workdir / f"{self.name}-OVMF_VARS.fd"
        shutil.copyfile(OVMF_VARS, vars_copy)
        argv = [
            "qemu-system-x86_64",
            "-name",
            self.name,
            "-machine",
            "q35",
            *accel_args(s.accel),
            "-smp",
            str(s.cpus),
            "-m",
            str(s.memory_mib),
            "-display",
            "none",
            "-no-reboot",
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={vars_copy}",
            "-chardev",
            f"file,id=serial0,path={self.console_log}",
            "-serial",
            "chardev:serial0",
            "-qmp",
            f"unix:{self.qmp_socket},server=on,wait=off",
            "-monitor",
            "none",
            "-device",
            "virtio-rng-pci",
            "-drive",
            f"file={s.disk},format={s.disk_format},if=none,id=disk0,"
            f"snapshot={'on' if s.snapshot else 'off'},cache=unsafe",
            *DISK_BUSES[s.disk_bus],
        ]
        for n, extra in enumerate(s.extra_disks, 1):
            argv += [
                "-drive",
                f"file={extra},format=raw,if=none,id=extra{n},readonly=on",
                "-device",
                f"virtio-blk-pci,drive=extra{n}",
            ]
        if s.cdrom:
            # q35's built-in AHCI controller; its last port, clear of a SATA root disk.
            argv += [
                "-drive",
                f"file={s.cdrom},format=raw,media=cdrom,readonly=on,if=none,id=cdrom0",
                "-device",
                "ide-cd,drive=cdrom0,bus=ide.5",
            ]
        for device in s.extra_devices:
            argv += ["-device", device]
        if s.direct_kernel is not None:
            k = s.direct_kernel
            argv += ["-kernel", str(k.kernel), "-initrd", str(k.initrd), "-append", k.cmdline]
        for n, nic in enumerate(s.nics):
            if nic.model not in NIC_MODELS:
                raise ValueError(f"nics[{n}].model {nic.model!r}: expected one of {', '.join(NIC_MODELS)}")
            mac = f"52:54:00:1b:{s.mac_group:02x}:{n:02x}"
            if nic.backend == "user":
                netdev = f"user,id=net{n},restrict={'off' if nic.ssh else 'on'}"
                if nic.ssh:
                    self.ssh_port = free_port()
                    netdev += f",hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22"
            elif nic.backend.startswith("tap:"):
                netdev = f"tap,id=net{n},ifname={nic.backend[4:]},script=no,downscript=no"
            else:
                raise ValueError(f"nics[{n}].backend {nic.backend!r}: expected 'user' or 'tap:<ifname>'")
            argv += ["-netdev", netdev, "-device", f"{NIC_MODELS[nic.model]},netdev=net{n},mac={mac},id=nic{n}"]
        argv += self.credential_args()
        return in_netns(s.netns, argv)

    def credential_args(self) -> list[str]:
        """systemd credentials for the guest, as a hypervisor would pass them."""
        s = self.spec
        if s.credential_transport == "smbios":
            args = []
            for name, value in s.credentials.items():
                encoded = base64.b64encode(value.encode()).decode()
                args += ["-smbios", f"type=11,value=io.systemd.credential.binary:{name}={encoded}"]
            return args
        if s.credential_transport != "fw_cfg":
            raise ValueError(f"credential_transport {s.credential_transport!r}: expected 'fw_cfg' or 'smbios'")
        args = []
        for name, value in s.credentials.items():
            cred = self.workdir / f"{self.name}-cred-{name}"
            cred.write_text(value)
            args += ["-fw_cfg", f"name=opt/io.systemd.credentials/{name},file={cred}"]
        return args

    def start(self) -> VM:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.console_log.write_text("")
        argv = self.command()
        (self.workdir / f"{self.name}-qemu.cmdline").write_text(" ".join(argv) + "\n")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        for n, nic in enumerate(self.spec.nics):
            if not nic.link_up:
                self.qmp({"execute": "set_link", "arguments": {"name": f"nic{n}", "up": False}})
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)

    def poweroff(self, timeout: float = 180) -> None:
        """Shut the guest down cleanly (as an admin would) and wait for QEMU to exit."""
        self.ssh("systemctl --no-block poweroff", check=False, retry_for=0)
        assert self.proc is not None, "poweroff() of a VM that was never started"
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BootError(
                f"the guest did not power off within {timeout:.0f} s (console log: {self.console_log})"
            ) from None

    def __enter__(self) -> VM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- console -----------------------------------------------------------------------------

    def console(self) -> str:
        return self.console_log.read_text(errors="replace")

    def qemu_output(self) -> str:
        if self.proc and self.proc.poll() is not None and self.proc.stdout:
            return self.proc.stdout.read().decode(errors="replace")
        return ""

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        stalled_since: float | None = None
        while True:
            text = self.console()
            match = pattern.search(text)
            if match:
                return match
            failed = FAILED.search(text)
            if failed:
                raise ApplianceFailed(failed.group(1).strip(), self.console_log)
            if "Kernel panic - not syncing" in text:
                raise BootError(f"kernel panic before {pattern.pattern!r} (console log: {self.console_log})")
            if stalled_since is None and RCU_STALL in text:
                stalled_since = time.monotonic()
            if stalled_since is not None and time.monotonic() - stalled_since > STALL_GRACE_SECONDS:
                raise GuestStalled(
                    f"the guest kernel stalled (RCU stall, no {pattern.pattern!r} {STALL_GRACE_SECONDS} s after it; "
                    f"console log: {self.console_log})"
                )
            if self.proc and self.proc.poll() is not None:
                raise BootError(
                    f"QEMU exited with code {self.proc.returncode} before {pattern.pattern!r}: "
                    f"{self.qemu_output().strip()[-2000:]} (console log: {self.console_log})"
                )
            if time.monotonic() > deadline:
                raise BootError(f"no {pattern.pattern!r} within {timeout:.0f} s (console log: {self.console_log})")
            time.sleep(0.25)

    def wait_ready(self, timeout: float = 300, stall_retries: int = 1) -> str:
        """Wait for 'LBAPPLIANCE READY <version>'; raises ApplianceFailed on a FAILED line.

        A guest whose kernel hangs in an RCU stall (GuestStalled, an emulator fault) is killed and
        started once more; the stalled attempt's console log is kept beside the new one.
        """
        try:
            match = self.wait_for(READY, timeout)
        except GuestStalled as exc:
            if stall_retries <= 0:
                raise
            self.stop()
            kept = self.console_log.with_name(f"{self.console_log.stem}.stalled-{stall_retries}.log")
            self.console_log.replace(kept)
            progress.say(f"{self.name}: {exc}; starting it again (the stalled console is {kept})")
            self.start()
            return self.wait_ready(timeout, stall_retries - 1)
        self.version = match.group(1)
        self.ready_seconds = time.monotonic() - self.started
        return self.version

    # --- control -----------------------------------------------------------------------------

    def qmp(self, *commands: dict) -> list[dict]:
        """Send QMP commands (after the capabilities handshake) and return their answers."""
        import json

        deadline = time.monotonic() + 10
        while not self.qmp_socket.exists():
            if time.monotonic() > deadline:
                raise BootError(f"QMP socket {self.qmp_socket} did not appear")
            time.sleep(0.05)
        answers = []
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.qmp_socket))
            f = s.makefile("rw")
            json.loads(f.readline())  # greeting
            for cmd in ({"execute": "qmp_capabilities"}, *commands):
                f.write(json.dumps(cmd) + "\n")
                f.flush()
                while True:
                    reply = json.loads(f.readline())
                    if "return" in reply or "error" in reply:
                        break
                if "error" in reply:
                    raise BootError(f"QMP {cmd['execute']}: {reply['error'].get('desc')}")
                answers.append(reply)
        return answers[1:]

    def copy_to(self, local: Path, remote: str, timeout: float = 600) -> None:
        """Copy a file into the guest over SSH (cat > remote). Raises BootError with ssh's reason."""
        with local.open("rb") as f:
            result = subprocess.run(
                self.ssh_argv(f"cat > {shlex.quote(remote)}"), stdin=f, timeout=timeout, capture_output=True
            )
        if result.returncode != 0:
            raise BootError(f"copying {local} to the guest's {remote} failed: {result.stderr.decode(errors='replace')}")

    def ssh_argv(self, command: str) -> list[str]:
        if self.ssh_port is None or self.ssh_key is None:
            raise BootError("this VM has no SSH forwarding or no SSH key")
        return in_netns(
            self.spec.netns,
            [
                "ssh",
                "-i",
                str(self.ssh_key),
                "-p",
                str(self.ssh_port),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
                "root@127.0.0.1",
                command,
            ],
        )

    def ssh(
        self, command: str, check: bool = True, timeout: float = 120, retry_for: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the guest. Connection failures (exit 255) are retried for a while,
        since sshd may still be starting right after READY."""
        deadline = time.monotonic() + retry_for
        while True:
            result = subprocess.run(self.ssh_argv(command), capture_output=True, text=True, timeout=timeout)
            if result.returncode != 255 or time.monotonic() > deadline:
                break
            time.sleep(1)
        if check and result.returncode != 0:
            raise BootError(f"ssh {command!r} failed with {result.returncode}: {result.stderr.strip()}")
        return result


def boot_until_ready(
    spec: VMSpec, workdir: Path, ssh_key: Path | None = None, name: str = "vm", timeout: float = 300
) -> VM:
    """Start a VM and wait for READY, with progress. The caller owns stopping it."""
    vm = VM(spec, workdir, ssh_key=ssh_key, name=name)
    accel = "kvm" if spec.accel == "kvm" or (spec.accel == "auto" and kvm_usable()) else "tcg"
    with progress.step(
        f"boot {spec.disk.name} ({spec.disk_format}, {spec.disk_bus} disk, "
        f"{len(spec.nics)}x {spec.nics[0].model if spec.nics else 'no'} NIC, {accel})"
    ):
        vm.start()
        try:
            vm.wait_ready(timeout)
        except BaseException:
            vm.stop()
            raise
        progress.say(f"READY {vm.version} after {vm.ready_seconds:.1f} s")
    return vm
