"""Offline updates in QEMU, from the v1 image and a v2 archive built by the test from this tree.

One appliance disk goes through all of it, in order (each test starts from v1 READY):
  1. seven archives are refused, each with its reason, and slot B, the GPT and the ESP are
     byte-identical afterwards;
  2. the power is cut (SIGKILL to QEMU) at every named step of an apply: each time the disk's
     GPT and ESP are sound and it boots v1 (the cuts at random moments are bench/update's loop);
  3. the power is cut right after the UKI install of a v2 whose HAProxy cannot start: it boots v2,
     is not READY, marks itself bad and reboots, and v1 comes back and says why;
  4. the good v2 is applied and the appliance reboots into it: READY 0.2.0 with its site,
     credentials, SSH host keys, firewall rules and logs, blessed once READY.
The long random power-cut loop is bench/update.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.mkosi import BuiltImage
from tests.helpers import LOG_DIR
from tests.image import updates
from tests.image.updates import V2, Appliance

POINTS_BEFORE_INSTALL = ("slot-write", "slot-written", "uki-write", "relabelled")


@pytest.fixture(scope="module")
def v2(built_image: BuiltImage) -> tuple[Path, Path]:
    _, archive, checksum = updates.build_v2()
    return archive, checksum


@pytest.fixture(scope="module")
def appliance(
    built_image: BuiltImage, ssh_keypair: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Appliance]:
    lab = Appliance(Path(built_image.raw), tmp_path_factory.mktemp("update"), *ssh_keypair)
    try:
        assert lab.boot() == "0.1.0"
        yield lab
    finally:
        if lab.vm is not None:
            lab.vm.stop()
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        for log in lab.workdir.glob("boot*-console.log"):
            log.replace(LOG_DIR / f"update-{log.name}")


def guest_state(lab: Appliance) -> str:
    """Slot B, the partition table and every file on the ESP, hashed in the guest."""
    return lab.ssh(
        "sha256sum /dev/vda3; sfdisk --dump /dev/vda; cd /efi && find . -type f | sort | xargs sha256sum", timeout=300
    )


def test_refused_archives_write_nothing(appliance: Appliance, v2: tuple[Path, Path]) -> None:
    before = guest_state(appliance)
    appliance.upload(*v2)
    refusals = updates.refusals(v2[0])
    assert len(refusals) == 7
    for r in refusals:
        for name, data in r.uploads.items():
            appliance.put(name, data)
        appliance.ssh(f"cd {updates.GUEST_DIR} && {r.prepare}")
        result = appliance.vm.ssh(  # type: ignore[union-attr]
            f"lbctl update apply {updates.GUEST_DIR}/{r.archive} {updates.GUEST_DIR}/{r.checksum} --reboot-later",
            check=False,
            timeout=300,
        )
        assert result.returncode == 1, f"{r.name}: {result.stdout}"
        assert "update refused, nothing was written" in result.stderr and r.reason in result.stderr, (r.name, result)
        assert "Traceback" not in result.stderr
        made = [f for f in (r.archive, r.checksum, *r.uploads) if f not in (v2[0].name, v2[1].name)]
        appliance.ssh(f"cd {updates.GUEST_DIR} && rm -f {' '.join(made)}")
    assert guest_state(appliance) == before
    status = json.loads(appliance.ssh("lbctl update status --json"))
    assert status["last"]["outcome"] == "refused" and "otherbox" in status["last"]["reason"]


def test_power_cut_at_every_step_boots_v1(appliance: Appliance, v2: tuple[Path, Path]) -> None:
    broken = updates.broken_v2(updates.BuiltImage.load(updates.WORK / "build" / "image.json"), v2[0])  # type: ignore[arg-type]
    remote = appliance.upload(*broken)[0]
    for point in POINTS_BEFORE_INSTALL:
        appliance.apply_until(remote, point)
        labels = appliance.check_disk()
        assert labels[0] == "esp" and labels[1] == "lbroot_0.1.0", (point, labels)
        assert appliance.boot() == "0.1.0", point
        # The cut apply left no UKI of 0.2.0 that systemd-boot would load.
        assert not appliance.ssh("ls /efi/EFI/Linux/ | grep -v '^lbappliance_0.1.0.efi$' | grep '\\.efi$' || true")


def test_rollback_when_new_haproxy_cannot_start(appliance: Appliance) -> None:
    remote = f"{updates.GUEST_DIR}/lbappliance-{V2}-update.tar"
    appliance.apply_until(remote, "uki-installed")
    labels = appliance.check_disk()
    assert labels[2] == f"lbroot_{V2}"
    assert appliance.boot() == "0.1.0"
    assert any("rolled back" in e for e in appliance.events), "0.2.0 was never tried"
    status = json.loads(appliance.ssh("lbctl update status --json"))
    slots = {s["name"]: s for s in status["slots"]}
    assert slots["A"]["booted"] and slots["B"]["version"] == V2 and slots["B"]["boot_state"] == "bad"
    assert status["last"]["outcome"] == "rolled back"
    assert "haproxy.service failed" in status["last"]["reason"], status["last"]


def test_apply_and_reboot_into_v2_keeps_everything(appliance: Appliance, v2: tuple[Path, Path]) -> None:
    keep = (
        "cat /var/lib/lbappliance/ssh/*.pub /etc/machine-id; lbctl status --json | python3 -c "
        '\'import json,sys; print([s["name"] for s in json.load(sys.stdin)["services"]])\'; '
        "nft list chain inet lbappliance site-input | grep -c 'udp dport 161'"
    )
    before = appliance.ssh(keep)
    boots_before = len(appliance.ssh("journalctl --list-boots").splitlines())
    remote_archive, _ = appliance.upload(*v2)
    result = appliance.vm.ssh(f"lbctl update apply {remote_archive}", check=False, timeout=600)  # type: ignore[union-attr]
    assert "rebooting into it" in result.stdout, result.stdout + result.stderr
    appliance.wait_exit()
    assert appliance.boot() == V2
    assert appliance.ssh(keep) == before
    assert len(appliance.ssh("journalctl --list-boots").splitlines()) > boots_before
    appliance.ssh("systemctl is-active systemd-bless-boot.service")
    status = json.loads(appliance.ssh("lbctl update status --json"))
    slots = {s["name"]: s for s in status["slots"]}
    assert slots["B"]["booted"] and slots["B"]["version"] == V2 and slots["B"]["boot_state"] == "good"
    assert slots["A"]["version"] == "0.1.0" and slots["A"]["boot_state"] == "good"
    assert status["last"]["outcome"] == "installed"
    assert "ro" in appliance.ssh("findmnt -no OPTIONS /run/lbroot/slot").split(",")
