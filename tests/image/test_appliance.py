"""The appliance image, booted: what the foundation issue promises, checked inside the guest.

One appliance (the KVM qcow2 from dist/) is booted for the module with four NICs: eth0 on QEMU
user networking (SSH), eth1 on a TAP device in a network namespace where a real DICOM server
(dcmtk storescp) runs, eth2 and eth3 isolated. It is provisioned through systemd credentials
(fw_cfg) with an SSH key, a network file and a site file. Further boots check the config-disk
path (and that two instances differ), and that bad provisioning input fails with a reason.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from builder import provision, qemu
from builder.netns import Namespace
from lbctl.webui import tls
from tests.helpers import LOG_DIR, artifact, make_dicom_file, provisioned

SEGMENT = "10.201.0"  # the TAP segment between the namespace and the guest's eth1
HOST_SIDE, GUEST = f"{SEGMENT}.1", f"{SEGMENT}.2"
VIP, SNAT = f"{SEGMENT}.10", f"{SEGMENT}.11"
STORESCP_PORT = 11112

NETWORK = f"""\
hostname: lb-test
interfaces:
  eth0: {{dhcp: true}}
  eth1: {{address: {GUEST}/24}}
"""
SITE = f"""\
preset: pacs
snat_address: {SNAT}
interface: eth1
services:
  DICOM:
    vip: {VIP}
    servers:
      - {{label: Server1, address: {HOST_SIDE}, port: {STORESCP_PORT}}}
"""
# Management (SSH) only from QEMU's user network, where the test's own SSH comes from (10.0.2.2):
# the namespace on eth1 may reach the VIP but not SSH.
FIREWALL = "management_networks: [10.0.2.0/24]\n"
FIREWALL_RULES = """\
# a site rule as an integrator writes one: SNMP from the monitoring host, counted
chain input {
    ip saddr 10.201.0.1 udp dport 161 counter accept
}
"""


@pytest.fixture(scope="module")
def kvm_disk(manifest: dict, built_dist: Path) -> Path:
    return artifact(manifest, built_dist, "kvm", ".qcow2")


@pytest.fixture(scope="module")
def segment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Namespace, Path]]:
    """A namespace holding the TAP device for the guest's eth1 and a real DICOM server."""
    workdir = tmp_path_factory.mktemp("segment")
    (workdir / "received").mkdir()
    with Namespace("lbimg") as ns:
        ns.add_tap("tap0", f"{HOST_SIDE}/24")
        with (workdir / "storescp.log").open("w") as log:
            scp = ns.popen(
                ["/usr/bin/storescp", "-d", "-od", str(workdir / "received"), str(STORESCP_PORT)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield ns, workdir
        finally:
            scp.send_signal(signal.SIGTERM)
            scp.wait(10)


@pytest.fixture(scope="module")
def appliance(kvm_disk: Path, ssh_keypair: tuple[Path, str], segment: tuple[Namespace, Path]) -> Iterator[qemu.VM]:
    ns, workdir = segment
    spec = qemu.VMSpec(
        disk=kvm_disk,
        disk_format="qcow2",
        disk_bus="virtio",
        netns=ns.name,
        nics=[qemu.Nic(ssh=True), qemu.Nic(backend="tap:tap0"), qemu.Nic(), qemu.Nic()],
        credentials=provisioned(
            ssh_keypair[1], network=NETWORK, site=SITE, firewall=FIREWALL, **{"firewall-rules": FIREWALL_RULES}
        ),
    )
    vm = qemu.VM(spec, workdir / "vm", ssh_key=ssh_keypair[0], name="appliance")
    try:
        vm.start()
        vm.wait_ready(timeout=300)
        yield vm
    finally:
        vm.stop()
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        if vm.console_log.exists():
            shutil.copy(vm.console_log, LOG_DIR / "appliance-console.log")


def guest(vm: qemu.VM, command: str) -> str:
    return vm.ssh(command).stdout


def assert_firewall_before_haproxy(vm: qemu.VM) -> None:
    """This boot loaded the lockdown ruleset before HAProxy started."""
    journal = guest(vm, "journalctl -b -o cat -u lb-provision -u haproxy")
    loaded, started = journal.find("firewall ruleset loaded"), journal.find("Started haproxy.service")
    assert loaded >= 0 and started >= 0, journal
    assert loaded < started, "HAProxy started before the firewall was loaded"
    assert "10.0.2.0/24" in guest(vm, "nft list set inet lbappliance management_v4")


def test_ready_line_names_the_built_version(appliance: qemu.VM, manifest: dict) -> None:
    assert appliance.version == manifest["version"]
    assert guest(appliance, "lbctl version").strip() == manifest["version"]


def test_four_nics_named_eth0_to_eth3_in_adapter_order(appliance: qemu.VM) -> None:
    links = json.loads(guest(appliance, "ip -j link show"))
    macs = {link["ifname"]: link["address"] for link in links if link["ifname"] != "lo"}
    # QEMU gives NIC n the MAC 52:54:00:1b:00:0n, in the order the hypervisor lists the adapters.
    assert macs == {f"eth{n}": f"52:54:00:1b:00:{n:02x}" for n in range(4)}
    drivers = guest(appliance, "for i in 0 1 2 3; do basename $(readlink /sys/class/net/eth$i/device/driver); done")
    assert drivers.split() == ["virtio_net"] * 4


def test_appliance_software_is_installed_and_nothing_more(appliance: qemu.VM) -> None:
    assert "HAProxy version 3.0" in guest(appliance, "haproxy -v")
    assert "heartbeat" in guest(appliance, "systemctl cat heartbeat.service")
    for command in (
        "nft --version",
        "echoscu --version",
        "ip -V",
        "sshd -V 2>&1",
        "python3 -c 'import yaml, jinja2, click'",
        "systemctl is-active systemd-timesyncd",
    ):
        appliance.ssh(command)
    # No documentation, man pages or translations.
    assert guest(appliance, "ls /usr/share/man /usr/share/info 2>/dev/null | wc -l").strip() == "0"
    assert guest(appliance, "ls /usr/share/locale | wc -l").strip() == "0"
    assert guest(appliance, "find /usr/share/doc -type f ! -name copyright | wc -l").strip() == "0"


def test_disk_is_20_gib_with_a_b_slots_and_a_grown_data_partition(appliance: qemu.VM, manifest: dict) -> None:
    disk = json.loads(guest(appliance, "lsblk -J -b -o NAME,SIZE,PARTLABEL,MOUNTPOINTS /dev/vda"))["blockdevices"][0]
    assert disk["size"] == 20 * 2**30
    labels = [p["partlabel"] for p in disk["children"]]
    assert labels == ["esp", f"lbroot_{manifest['version']}", "_empty", "lbdata"]
    data = disk["children"][3]
    assert set(data["mountpoints"]) == {"/var/lib/lbappliance", "/var/log", "/var/lib/heartbeat"}
    # The booted slot is mounted read-only below the RAM overlay that is / (docs/update.md).
    assert disk["children"][1]["mountpoints"] == ["/run/lbroot/slot"]
    assert "ro" in guest(appliance, "findmnt -no OPTIONS /run/lbroot/slot").split(",")
    assert guest(appliance, "findmnt -no FSTYPE /").strip() == "overlay"
    assert data["size"] > 16 * 2**30, "the data partition did not grow into the disk"
    size = int(guest(appliance, "df --output=size -B1 /var/lib/lbappliance | tail -1"))
    assert size > 15 * 2**30, "the data file system did not grow with its partition"


def test_no_password_and_no_shipped_host_keys(appliance: qemu.VM) -> None:
    shadow = guest(appliance, "getent shadow root").split(":")[1]
    assert not shadow.startswith("$"), "root has a password although none was provisioned"
    assert guest(appliance, "ls /etc/ssh/ | grep -c ssh_host_ || true").strip() == "0"
    assert "ssh_host_ed25519_key" in guest(appliance, "ls /var/lib/lbappliance/ssh/")


def test_provisioned_network_and_site_are_applied(appliance: qemu.VM) -> None:
    assert guest(appliance, "hostname").strip() == "lb-test"
    addresses = guest(appliance, "ip -4 -o addr show dev eth1")
    for address in (f"{GUEST}/24", VIP, SNAT):
        assert address in addresses
    status = json.loads(appliance.ssh("lbctl status --json").stdout)
    assert status["healthy"] is True
    assert [s["name"] for s in status["services"]] == ["DICOM"]


def test_dicom_object_stored_through_the_dicom_vip(
    appliance: qemu.VM, segment: tuple[Namespace, Path], tmp_path: Path
) -> None:
    ns, workdir = segment
    sop_uid = make_dicom_file(tmp_path / "object.dcm", size_bytes=256 * 1024)
    result = ns.run(["/usr/bin/storescu", "-aec", "ANY-SCP", VIP, "104", str(tmp_path / "object.dcm")], timeout=120)
    assert result.returncode == 0, result.stderr
    received = [p.name for p in (workdir / "received").iterdir()]
    assert any(sop_uid in name for name in received), received
    # The real server saw the SNAT address, not the guest's own address on that segment.
    log = (workdir / "storescp.log").read_text()
    assert f"Association Received: {SNAT}" in log
    assert f"Association Received: {GUEST}" not in log


def test_firewall_is_loaded_before_haproxy_listens_and_follows_the_lockdown(
    appliance: qemu.VM, segment: tuple[Namespace, Path]
) -> None:
    """The ruleset is in force before HAProxy starts (provisioning loads it first), holds the
    provisioned site rule, and the lockdown keeps SSH from the namespace while the VIP answers."""
    assert_firewall_before_haproxy(appliance)
    assert "udp dport 161" in guest(appliance, "nft list table inet lbappliance")
    ns, _ = segment
    probe = (
        "import socket,sys; s=socket.socket(); s.settimeout(3); sys.exit(s.connect_ex((sys.argv[1], int(sys.argv[2]))))"
    )
    assert ns.run(["python3", "-c", probe, VIP, "104"], timeout=30).returncode == 0
    for port in (22, 9443, 8405):  # SSH, the web UI, HAProxy's metrics: management only
        assert ns.run(["python3", "-c", probe, GUEST, str(port)], timeout=30).returncode != 0, f"{port} open"
    status = guest(appliance, "lbctl firewall status")
    assert "10.0.2.0/24" in status


# In the guest: the certificate lb-webui serves on 9443 (once it listens), and the one it keeps.
SERVED_CERTIFICATE = """python3 -c '
import ssl, time
for _ in range(90):
    try:
        print(ssl.get_server_certificate(("127.0.0.1", 9443)), end=""); break
    except OSError:
        time.sleep(1)
'"""
KEPT_CERTIFICATE = "cat /var/lib/lbappliance/webui/tls/cert.pem"
FETCH = """python3 -c '
import ssl, sys, urllib.request
context = ssl._create_unverified_context()
print(urllib.request.urlopen(sys.argv[1], context=context, timeout=10).read().decode())
' """


def test_web_ui_serves_its_own_certificate_and_the_metrics(appliance: qemu.VM) -> None:
    """lb-webui (started by its socket at the first connection) serves HTTPS on 9443 with the
    certificate this instance made at its first boot (kept on the data partition, never in the
    image), asks for a password nobody set (there is no default), and the appliance gauges and
    HAProxy's exporter answer for Prometheus."""
    served = guest(appliance, SERVED_CERTIFICATE)
    assert "BEGIN CERTIFICATE" in served, guest(appliance, "journalctl -b -u lb-webui-cert -u lb-webui")
    assert tls.fingerprint(served.encode()) == tls.fingerprint(guest(appliance, KEPT_CERTIFICATE).encode())
    assert guest(appliance, "stat -c %a /var/lib/lbappliance/webui/tls/key.pem").strip() == "600"
    # Made at the first boot (lb-webui-cert.service), or by the first connection if that came first.
    journal = guest(appliance, "journalctl -b -u lb-webui-cert -u lb-webui")
    assert "made a self-signed certificate, SHA-256 fingerprint" in journal
    login = guest(appliance, FETCH + "https://127.0.0.1:9443/lbadmin/login")
    assert "No admin password is set on this appliance" in login
    gauges = guest(appliance, FETCH + "https://127.0.0.1:9443/metrics")
    version = guest(appliance, "lbctl version").strip()
    assert f'lbappliance_info{{version="{version}",slot="A"}} 1' in gauges
    assert "lbappliance_healthy 1" in gauges and "lbappliance_firewall_lockdown 1" in gauges
    exporter = guest(appliance, FETCH.replace("https", "http") + "http://127.0.0.1:8405/metrics")
    assert 'haproxy_server_status{proxy="DICOM",server="Server1",state="UP"} 1' in exporter
    assert "haproxy_process_start_time_seconds" in exporter


def test_address_rules_agree_between_the_guest_and_the_build_host(appliance: qemu.VM) -> None:
    """The guest's Python (3.13) classifies addresses as the host's does: the same engine runs
    in both, but the ipaddress module's tables changed between Python versions."""
    from lbctl.inputs import addresses

    samples = [
        "10.0.0.1", "127.0.0.1", "169.254.1.1", "224.0.0.1", "0.0.0.0", "255.255.255.255", "240.0.0.1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::1", "::", "::10.0.0.1", "fe80::1", "ff02::1", "2001:db8::1",
    ]  # fmt: skip
    script = (
        "import ipaddress as i, json, sys; from lbctl.inputs import addresses as a; "
        "print(json.dumps([a.special(i.ip_address(x)) for x in sys.argv[1:]]))"
    )
    in_guest = json.loads(guest(appliance, f"python3 -c '{script}' {' '.join(samples)}"))
    assert in_guest == [addresses.special(ipaddress.ip_address(x)) for x in samples]


def test_second_instance_from_config_disk_has_its_own_identity(
    appliance: qemu.VM, kvm_disk: Path, ssh_keypair: tuple[Path, str], start_vm, tmp_path: Path
) -> None:
    """A second copy, provisioned from an LBCONFIG ISO on a CD-ROM drive instead of credentials,
    gets its own machine-id and SSH host keys: neither is shipped in the image."""
    config_iso = provision.make_config_disk(
        {"admin-ssh-keys": ssh_keypair[1], "network": "hostname: lb-second\n"}, tmp_path / "lbconfig.iso", fmt="iso"
    )
    second = start_vm(qemu.VMSpec(disk=kvm_disk, disk_format="qcow2", cdrom=config_iso), name="second")
    assert guest(second, "hostname").strip() == "lb-second"
    identity = "cat /etc/machine-id; cat /var/lib/lbappliance/ssh/*.pub | cut -d' ' -f2"
    first_id, second_id = guest(appliance, identity).split(), guest(second, identity).split()
    assert len(first_id) == len(second_id) == 3  # machine-id, ed25519 and ECDSA host keys
    assert not set(first_id) & set(second_id)
    # And its own web UI certificate and key, for its own host name.
    first_cert, second_cert = guest(appliance, SERVED_CERTIFICATE), guest(second, SERVED_CERTIFICATE)
    assert "BEGIN CERTIFICATE" in second_cert
    assert tls.fingerprint(first_cert.encode()) != tls.fingerprint(second_cert.encode())
    subject = x509.load_pem_x509_certificate(second_cert.encode()).subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "lb-second"


def test_reboot_keeps_identity_configuration_and_vips(
    kvm_disk: Path, ssh_keypair: tuple[Path, str], start_vm, tmp_path: Path
) -> None:
    """The same disk booted again, its provisioning (a FAT config disk) still attached, re-applies
    nothing, keeps its machine-id and host keys, puts the VIP and SNAT addresses back on eth1
    (their networkd drop-ins live under /run, which every boot starts empty) and loads the
    lockdown again before HAProxy starts."""
    disk = tmp_path / "disk.qcow2"  # a writable overlay on the artifact, kept across both boots
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(kvm_disk), "-F", "qcow2", str(disk)], check=True
    )
    config_disk = provision.make_config_disk(
        {"admin-ssh-keys": ssh_keypair[1], "network": NETWORK, "site": SITE, "firewall": FIREWALL},
        tmp_path / "lbconfig.img",
    )
    spec = qemu.VMSpec(
        disk=disk, disk_format="qcow2", snapshot=False, nics=[qemu.Nic(ssh=True), qemu.Nic()], extra_disks=[config_disk]
    )
    identity = "cat /etc/machine-id /var/lib/lbappliance/ssh/*.pub"
    first = start_vm(spec, name="first-boot")
    before = guest(first, identity)
    first.poweroff()
    second = start_vm(spec, name="second-boot")
    assert guest(second, identity) == before
    assert "new or changed inputs: none" in guest(second, "journalctl -b -u lb-provision")
    addresses = guest(second, "ip -4 -o addr show dev eth1")
    for address in (f"{GUEST}/24", VIP, SNAT):
        assert address in addresses
    status = json.loads(second.ssh("lbctl status --json").stdout)
    assert status["healthy"] is True and [s["name"] for s in status["services"]] == ["DICOM"]
    assert_firewall_before_haproxy(second)  # the confirmed ruleset, loaded from the data partition


@pytest.mark.parametrize(
    "bad_input, transport, reason",
    [
        ({"site": SITE.replace(VIP, "10.201.0.300")}, "fw_cfg", "services.DICOM.vip"),
        (
            {"network": NETWORK.replace("{dhcp: true}", "{address: 10.9.0.5/24, gateway: 10.8.0.1}")},
            "fw_cfg",
            "interfaces.eth0.gateway",
        ),
        (
            {"admin-ssh-keys": "ssh-ed25519 AAAAnotakey root@nowhere\n"},
            "smbios",
            "lb.admin.ssh-keys: line 1: not a valid OpenSSH public key",
        ),
    ],
    ids=["malformed-site-file", "gateway-outside-subnet", "bad-ssh-key-over-smbios"],
)
def test_bad_provisioning_input_fails_with_its_reason(
    kvm_disk: Path, ssh_keypair: tuple[Path, str], start_vm, bad_input: dict, transport: str, reason: str
) -> None:
    inputs = {"admin-ssh-keys": ssh_keypair[1], **bad_input}
    vm = start_vm(
        qemu.VMSpec(
            disk=kvm_disk,
            disk_format="qcow2",
            credentials=provision.as_credentials(inputs),
            credential_transport=transport,
        ),
        name="bad",
        wait=False,
    )
    with pytest.raises(qemu.ApplianceFailed) as failure:
        vm.wait_ready(timeout=300)
    assert reason in failure.value.reason
