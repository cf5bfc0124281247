"""builder.qemu without booting anything: the QEMU command line for each disk bus, NIC and
credential transport, the console watcher, and the VM lifecycle with `sleep` standing in for QEMU.

These command lines are what make the boot tests emulate each hypervisor's device models; a wrong
-device silently tests the wrong driver, so each one is checked here.
"""

from __future__ import annotations

import base64
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder import qemu
from builder.qemu import VM, ApplianceFailed, BootError, Nic, VMSpec


@pytest.fixture(autouse=True)
def fake_ovmf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """command() copies the OVMF variable store; a stand-in keeps the tests independent of ovmf."""
    vars_file = tmp_path / "OVMF_VARS_4M.fd"
    vars_file.write_bytes(b"\0" * 4096)
    monkeypatch.setattr(qemu, "OVMF_VARS", vars_file)


def make_vm(tmp_path: Path, **spec: object) -> VM:
    workdir = tmp_path / "vm"
    workdir.mkdir(exist_ok=True)
    return VM(VMSpec(disk=tmp_path / "disk.raw", accel="tcg", **spec), workdir)  # type: ignore[arg-type]


def option(argv: list[str], name: str) -> list[str]:
    """Every value given to `name` (e.g. all -device specs), in order."""
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]


def device_names(argv: list[str]) -> list[str]:
    return [d.split(",", 1)[0] for d in option(argv, "-device")]


# --- disks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bus, devices",
    [
        ("virtio", ["virtio-blk-pci"]),
        ("virtio-scsi", ["virtio-scsi-pci", "scsi-hd"]),
        ("pvscsi", ["pvscsi", "scsi-hd"]),
        ("sata", ["ide-hd"]),
        ("nvme", ["nvme"]),
    ],
)
def test_each_disk_bus_attaches_disk0_with_its_controller(tmp_path: Path, bus: str, devices: list[str]) -> None:
    argv = make_vm(tmp_path, disk_bus=bus, nics=[]).command()
    assert device_names(argv) == ["virtio-rng-pci", *devices]
    boot = [d for d in option(argv, "-device") if "drive=disk0" in d]
    assert len(boot) == 1 and boot[0].startswith(devices[-1] + ",") and "bootindex=1" in boot[0]
    assert f"file={tmp_path / 'disk.raw'},format=raw,if=none,id=disk0,snapshot=on,cache=unsafe" in option(
        argv, "-drive"
    )


def test_an_unknown_disk_bus_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="disk_bus 'ide'.*virtio, virtio-scsi"):
        make_vm(tmp_path, disk_bus="ide").command()


def test_disk_format_and_snapshot_off(tmp_path: Path) -> None:
    argv = make_vm(tmp_path, disk_format="vmdk", snapshot=False).command()
    assert any(d.endswith(",format=vmdk,if=none,id=disk0,snapshot=off,cache=unsafe") for d in option(argv, "-drive"))


def test_the_machine_is_uefi_q35_with_a_private_vars_copy(tmp_path: Path) -> None:
    vm = make_vm(tmp_path, cpus=3, memory_mib=1024)
    argv = vm.command()
    assert argv[0] == "qemu-system-x86_64"
    assert option(argv, "-machine") == ["q35"] and option(argv, "-smp") == ["3"] and option(argv, "-m") == ["1024"]
    vars_copy = vm.workdir / "vm-OVMF_VARS.fd"
    assert vars_copy.read_bytes() == qemu.OVMF_VARS.read_bytes()
    assert f"if=pflash,format=raw,unit=1,file={vars_copy}" in option(argv, "-drive")
    assert f"if=pflash,format=raw,unit=0,readonly=on,file={qemu.OVMF_CODE}" in option(argv, "-drive")
    assert f"file,id=serial0,path={vm.console_log}" in option(argv, "-chardev")


def test_extra_disks_and_cdrom(tmp_path: Path) -> None:
    config, iso = tmp_path / "config.img", tmp_path / "config.iso"
    argv = make_vm(tmp_path, extra_disks=[config], cdrom=iso, extra_devices=["pvscsi"]).command()
    drives = option(argv, "-drive")
    assert f"file={config},format=raw,if=none,id=extra1,readonly=on" in drives
    assert "virtio-blk-pci,drive=extra1" in option(argv, "-device")
    cdroms = [d for d in drives if "media=cdrom" in d]
    assert cdroms == [f"file={iso},format=raw,media=cdrom,readonly=on,if=none,id=cdrom0"]
    assert "ide-cd,drive=cdrom0,bus=ide.5" in option(argv, "-device")
    assert "pvscsi" in option(argv, "-device")


def test_no_cdrom_by_default(tmp_path: Path) -> None:
    argv = make_vm(tmp_path).command()
    assert not [d for d in option(argv, "-drive") if "media=cdrom" in d]
    assert "ide-cd" not in device_names(argv)


# --- NICs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, device", [("virtio", "virtio-net-pci"), ("vmxnet3", "vmxnet3"), ("e1000e", "e1000e"), ("e1000", "e1000")]
)
def test_each_nic_model(tmp_path: Path, model: str, device: str) -> None:
    argv = make_vm(tmp_path, nics=[Nic(model=model)]).command()
    assert f"{device},netdev=net0,mac=52:54:00:1b:00:00,id=nic0" in option(argv, "-device")


def test_nics_get_netdevs_and_macs_in_order(tmp_path: Path) -> None:
    """The appliance names eth0..eth3 by MAC order; the MACs must follow the NIC list."""
    nics = [Nic(model="vmxnet3"), Nic(model="e1000e"), Nic(), Nic(model="e1000")]
    argv = make_vm(tmp_path, nics=nics).command()
    netdevs = option(argv, "-netdev")
    assert [n.split(",")[:2] for n in netdevs] == [["user", f"id=net{n}"] for n in range(4)]
    nic_devices = [d for d in option(argv, "-device") if "netdev=" in d]
    assert [re.search(r"mac=([0-9a-f:]+)", d).group(1) for d in nic_devices] == [  # type: ignore[union-attr]
        f"52:54:00:1b:00:0{n}" for n in range(4)
    ]
    assert [d.split(",")[0] for d in nic_devices] == ["vmxnet3", "e1000e", "virtio-net-pci", "e1000"]
    assert all(f"netdev=net{n}," in d and d.endswith(f"id=nic{n}") for n, d in enumerate(nic_devices))


def test_user_nics_are_restricted_unless_they_carry_ssh(tmp_path: Path) -> None:
    vm = make_vm(tmp_path, nics=[Nic(ssh=True), Nic()])
    netdevs = option(vm.command(), "-netdev")
    assert vm.ssh_port is not None
    assert netdevs[0] == f"user,id=net0,restrict=off,hostfwd=tcp:127.0.0.1:{vm.ssh_port}-:22"
    assert netdevs[1] == "user,id=net1,restrict=on"


def test_a_tap_backend(tmp_path: Path) -> None:
    argv = make_vm(tmp_path, nics=[Nic(backend="tap:tap0"), Nic(backend="tap:lb-eth1")]).command()
    assert option(argv, "-netdev") == [
        "tap,id=net0,ifname=tap0,script=no,downscript=no",
        "tap,id=net1,ifname=lb-eth1,script=no,downscript=no",
    ]


@pytest.mark.parametrize(
    "nic, message",
    [
        (Nic(backend="bridge"), r"nics\[1\]\.backend 'bridge'"),
        (Nic(backend="tap0"), r"nics\[1\]\.backend 'tap0'"),
        (Nic(model="rtl8139"), r"nics\[1\]\.model 'rtl8139'"),
    ],
)
def test_a_bad_nic_is_refused_naming_it(tmp_path: Path, nic: Nic, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_vm(tmp_path, nics=[Nic(), nic]).command()


def test_link_down_is_not_on_the_command_line(tmp_path: Path) -> None:
    """QEMU has no option for a NIC that starts unplugged: start() sets it over QMP (tested below)."""
    up = make_vm(tmp_path, nics=[Nic(), Nic()]).command()
    down = make_vm(tmp_path, nics=[Nic(), Nic(link_up=False)]).command()
    assert option(up, "-netdev") == option(down, "-netdev") and option(up, "-device") == option(down, "-device")


# --- credentials --------------------------------------------------------------------------------

CREDENTIALS = {"lb.network": "hostname: lb1\n", "lb.admin.ssh-keys": "ssh-ed25519 AAAA test\n"}


def test_fw_cfg_credentials_are_files(tmp_path: Path) -> None:
    vm = make_vm(tmp_path, credentials=CREDENTIALS)
    fw_cfg = option(vm.command(), "-fw_cfg")
    assert len(fw_cfg) == 2
    for spec, (name, value) in zip(fw_cfg, CREDENTIALS.items(), strict=True):
        match = re.fullmatch(rf"name=opt/io\.systemd\.credentials/{re.escape(name)},file=(.+)", spec)
        assert match, spec
        assert Path(match.group(1)).read_text() == value
    assert "-smbios" not in vm.command()


def test_smbios_credentials_decode_back(tmp_path: Path) -> None:
    credentials = {**CREDENTIALS, "lb.site": "services:\n  - name: pacs, port 104\n"}  # a comma, too
    argv = make_vm(tmp_path, credentials=credentials, credential_transport="smbios").command()
    decoded = {}
    for spec in option(argv, "-smbios"):
        match = re.fullmatch(r"type=11,value=io\.systemd\.credential\.binary:([^=]+)=([A-Za-z0-9+/=]+)", spec)
        assert match, spec
        decoded[match.group(1)] = base64.b64decode(match.group(2)).decode()
    assert decoded == credentials
    assert "-fw_cfg" not in argv


def test_no_credentials_no_arguments(tmp_path: Path) -> None:
    argv = make_vm(tmp_path).command()
    assert "-fw_cfg" not in argv and "-smbios" not in argv


def test_an_unknown_credential_transport_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="credential_transport 'oem'"):
        make_vm(tmp_path, credentials=CREDENTIALS, credential_transport="oem").command()


# --- netns and acceleration ---------------------------------------------------------------------


def test_netns_wraps_qemu_and_ssh(tmp_path: Path) -> None:
    vm = make_vm(tmp_path, netns="lbtest0")
    vm.ssh_key = tmp_path / "id_ed25519"
    argv = vm.command()
    assert argv[:5] == ["ip", "netns", "exec", "lbtest0", "qemu-system-x86_64"]
    assert vm.ssh_argv("true")[:5] == ["ip", "netns", "exec", "lbtest0", "ssh"]
    assert make_vm(tmp_path).command()[0] == "qemu-system-x86_64"


def test_ssh_argv_needs_a_port_and_a_key(tmp_path: Path) -> None:
    vm = make_vm(tmp_path, nics=[Nic()])
    vm.command()
    vm.ssh_key = tmp_path / "id_ed25519"
    with pytest.raises(BootError, match="no SSH forwarding"):
        vm.ssh_argv("true")


def test_accel_args() -> None:
    assert qemu.accel_args("kvm") == ["-accel", "kvm", "-cpu", "host"]
    assert qemu.accel_args("tcg") == ["-accel", "tcg,thread=multi", "-cpu", "max"]


@pytest.fixture
def fresh_kvm_probe() -> Iterator[None]:
    qemu.kvm_usable.cache_clear()
    yield
    qemu.kvm_usable.cache_clear()


@pytest.mark.parametrize("usable", [False, True])
def test_auto_accel_follows_the_probe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, usable: bool) -> None:
    monkeypatch.setattr(qemu, "kvm_usable", lambda: usable)
    assert qemu.accel_args("auto") == qemu.accel_args("kvm" if usable else "tcg")
    argv = VM(VMSpec(disk=tmp_path / "disk.raw", accel="auto"), tmp_path).command()
    assert option(argv, "-accel") == (["kvm"] if usable else ["tcg,thread=multi"])


def test_kvm_probe_without_dev_kvm_runs_nothing(monkeypatch: pytest.MonkeyPatch, fresh_kvm_probe: None) -> None:
    monkeypatch.setattr(qemu.os, "access", lambda path, mode: False)
    monkeypatch.setattr(qemu.subprocess, "run", lambda *a, **k: pytest.fail("the probe ran QEMU"))
    assert qemu.kvm_usable() is False


@pytest.mark.parametrize("outcome, usable", [(33, True), (1, False), (0, False), ("timeout", False)])
def test_kvm_probe_trusts_only_the_debug_exit(
    monkeypatch: pytest.MonkeyPatch, fresh_kvm_probe: None, outcome: int | str, usable: bool
) -> None:
    """Only the boot sector's isa-debug-exit code (33) proves the guest ran its FPU/SSE code."""
    monkeypatch.setattr(qemu.os, "access", lambda path, mode: True)
    monkeypatch.setattr(qemu.shutil, "which", lambda name: "/usr/bin/" + name)
    seen: list[list[str]] = []

    def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        seen.append(argv)
        image = Path(next(a for a in argv if a.startswith("file=")).split(",")[0][5:]).read_bytes()
        assert len(image) == 512 and image.endswith(b"\x55\xaa")
        if not isinstance(outcome, int):
            raise subprocess.TimeoutExpired(argv, 20)
        return subprocess.CompletedProcess(argv, outcome, b"", b"")

    monkeypatch.setattr(qemu.subprocess, "run", run)
    assert qemu.kvm_usable() is usable
    assert qemu.kvm_usable() is usable and len(seen) == 1  # cached: probed once
    assert seen[0][:5] == ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host"]


def test_kvm_usable_answers_a_bool(fresh_kvm_probe: None) -> None:
    """The real probe on this host (a 512-byte boot sector, well under a second): yes or no, never an error."""
    assert isinstance(qemu.kvm_usable(), bool)


# --- console watching ---------------------------------------------------------------------------


@pytest.fixture
def console_vm(tmp_path: Path) -> Iterator[VM]:
    """A VM that was 'started': its console log exists and a real short-lived process stands in
    for QEMU."""
    vm = make_vm(tmp_path)
    vm.console_log.write_text("")
    vm.started = qemu.time.monotonic()
    vm.proc = subprocess.Popen(["sleep", "10"], start_new_session=True)
    yield vm
    vm.stop()


def write_console(vm: VM, text: str, after: float = 0.0) -> None:
    def append() -> None:
        with vm.console_log.open("a") as f:
            f.write(text)

    if after:
        timer = threading.Timer(after, append)
        timer.start()
    else:
        append()


def test_ready_returns_the_version(console_vm: VM) -> None:
    write_console(console_vm, "[  OK  ] Started lbappliance.service\r\nLBAPPLIANCE READY 0.1.0\r\n")
    assert console_vm.wait_ready(timeout=2) == "0.1.0"
    assert console_vm.version == "0.1.0" and console_vm.ready_seconds >= 0


def test_ready_written_later_is_seen(console_vm: VM) -> None:
    """The log grows while QEMU runs; the watcher must keep reading it, not look once."""
    write_console(console_vm, "booting...\n")
    write_console(console_vm, "LBAPPLIANCE READY 0.2.0\n", after=0.3)
    assert console_vm.wait_ready(timeout=5) == "0.2.0"


def test_failed_raises_appliance_failed_with_the_reason(console_vm: VM) -> None:
    write_console(console_vm, "LBAPPLIANCE FAILED network: eth0: bad address\r\nmore\n")
    with pytest.raises(ApplianceFailed) as exc:
        console_vm.wait_ready(timeout=2)
    assert exc.value.reason == "network: eth0: bad address"
    assert str(console_vm.console_log) in str(exc.value)


def test_a_kernel_panic_fails_fast(console_vm: VM) -> None:
    write_console(console_vm, "Kernel panic - not syncing: VFS: Unable to mount root fs\n")
    started = qemu.time.monotonic()
    with pytest.raises(BootError, match="kernel panic") as exc:
        console_vm.wait_ready(timeout=30)
    assert type(exc.value) is BootError
    assert qemu.time.monotonic() - started < 5


def test_qemu_exiting_is_a_boot_error(tmp_path: Path) -> None:
    vm = make_vm(tmp_path)
    vm.console_log.write_text("no READY here\n")
    vm.proc = subprocess.Popen(
        ["sh", "-c", "echo 'qemu: could not open disk' ; exit 1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    vm.proc.wait()
    with pytest.raises(BootError, match="QEMU exited with code 1") as exc:
        vm.wait_ready(timeout=30)
    assert "could not open disk" in str(exc.value)


def test_timeout_is_a_boot_error(console_vm: VM) -> None:
    write_console(console_vm, "still booting\n")
    started = qemu.time.monotonic()
    with pytest.raises(BootError, match=r"within 0 s"):
        console_vm.wait_ready(timeout=0.3)
    assert 0.3 <= qemu.time.monotonic() - started < 3
    assert console_vm.proc is not None and console_vm.proc.poll() is None  # the VM is left to the caller


def test_wait_for_any_pattern(console_vm: VM) -> None:
    write_console(console_vm, "login: \n")
    assert console_vm.wait_for(re.compile(r"(\w+): $", re.M), timeout=2).group(1) == "login"


STALL_LINE = "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n"


def test_an_rcu_stall_without_ready_is_restarted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hung guest (an emulator fault under TCG) is killed and booted once more; the second
    attempt's READY counts, and the stalled console is kept beside the new one."""
    monkeypatch.setattr(qemu, "STALL_GRACE_SECONDS", 0.3)
    vm = make_vm(tmp_path)
    boots: list[int] = []

    def command() -> list[str]:
        boots.append(len(boots))
        line = STALL_LINE if len(boots) == 1 else "LBAPPLIANCE READY 0.3.0\n"
        return ["sh", "-c", f"printf '{line}' >> {vm.console_log}; sleep 30"]

    monkeypatch.setattr(vm, "command", command)
    with vm:
        assert vm.wait_ready(timeout=20) == "0.3.0"
    assert len(boots) == 2
    kept = vm.console_log.with_name(f"{vm.console_log.stem}.stalled-1.log")
    assert "rcu_preempt detected stalls" in kept.read_text()


def test_a_second_stall_is_a_boot_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qemu, "STALL_GRACE_SECONDS", 0.3)
    vm = make_vm(tmp_path)
    monkeypatch.setattr(vm, "command", lambda: ["sh", "-c", f"printf '{STALL_LINE}' >> {vm.console_log}; sleep 30"])
    with vm, pytest.raises(qemu.GuestStalled, match="RCU stall"):
        vm.wait_ready(timeout=20)


def test_a_stall_that_recovers_is_not_an_error(console_vm: VM, monkeypatch: pytest.MonkeyPatch) -> None:
    """RCU stall reports also come from a slow (not hung) guest: READY within the grace counts."""
    monkeypatch.setattr(qemu, "STALL_GRACE_SECONDS", 5)
    write_console(console_vm, STALL_LINE)
    write_console(console_vm, "LBAPPLIANCE READY 0.4.0\n", after=0.5)
    assert console_vm.wait_ready(timeout=10) == "0.4.0"


# --- lifecycle, with `sleep` standing in for QEMU -----------------------------------------------


@pytest.fixture
def sleeping_vm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[VM, list[dict]]:
    """A VM whose 'QEMU' is `sleep 30` and whose QMP calls are recorded."""
    vm = make_vm(tmp_path, nics=[Nic(), Nic(link_up=False), Nic(), Nic(link_up=False)])
    monkeypatch.setattr(vm, "command", lambda: ["sleep", "30"])
    sent: list[dict] = []

    def qmp(*commands: dict) -> list[dict]:
        sent.extend(commands)
        return []

    monkeypatch.setattr(vm, "qmp", qmp)
    return vm, sent


def test_start_unplugs_link_down_nics_and_stop_kills(sleeping_vm: tuple[VM, list[dict]]) -> None:
    vm, sent = sleeping_vm
    vm.console_log.write_text("left over from the previous boot: LBAPPLIANCE READY 0.0.1\n")
    with vm:
        assert vm.proc is not None and vm.proc.poll() is None
        assert vm.console() == ""  # a fresh log for this boot
        assert (vm.workdir / "vm-qemu.cmdline").read_text() == "sleep 30\n"
        assert sent == [{"execute": "set_link", "arguments": {"name": f"nic{n}", "up": False}} for n in (1, 3)]
    assert vm.proc.poll() is not None


def test_boot_until_ready_stops_the_vm_when_it_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller gets no VM object on failure, so boot_until_ready itself must kill QEMU."""
    started: list[VM] = []
    original_start = VM.start

    def start(self: VM) -> VM:
        monkeypatch.setattr(self, "command", lambda: ["sleep", "30"])
        started.append(self)
        return original_start(self)

    monkeypatch.setattr(VM, "start", start)
    with pytest.raises(BootError, match="within"):
        qemu.boot_until_ready(VMSpec(disk=tmp_path / "disk.raw", accel="tcg"), tmp_path / "b", timeout=0.3)
    assert len(started) == 1 and started[0].proc is not None and started[0].proc.poll() is not None
