"""lbctl update against a disk image file: the signature format, the archive's checks, the
refusals that write nothing, the order of the steps (each fault point leaves a bootable disk),
downgrades, and the status report. The power cuts themselves are cut in QEMU
(tests/image/test_update.py); here the kill only stops the process."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from lbctl.update import archive as arc
from lbctl.update import minisign
from lbctl.update.minisign import MinisignError, PublicKey, SecretKey
from tests.lbctl.lbctl_cli import run_lbctl
from tests.lbctl.update_lab import SLOT_BYTES, Lab, image

# --- minisign ---------------------------------------------------------------------------------


def test_signature_round_trip_and_tampering() -> None:
    key = SecretKey.generate()
    message = b"manifest bytes\n" * 100
    sig = key.sign(message, "lbappliance 0.2.0")
    signer, comment = minisign.verify(message, sig, [key.public_key()])
    assert signer == key.public_key() and comment == "lbappliance 0.2.0"
    for i in (0, len(message) // 2, len(message) - 1):
        tampered = bytearray(message)
        tampered[i] ^= 1
        with pytest.raises(MinisignError, match="does not match the signed file"):
            minisign.verify(bytes(tampered), sig, [key.public_key()])
    lines = sig.splitlines()
    lines[2] = "trusted comment: lbappliance 0.9.0"
    with pytest.raises(MinisignError, match="trusted comment"):
        minisign.verify(message, "\n".join(lines) + "\n", [key.public_key()])
    other = SecretKey.generate()
    with pytest.raises(MinisignError, match=f"signed with key {key.public_key().id}, which this appliance does not"):
        minisign.verify(message, sig, [other.public_key()])
    for garbage in ("", "hello\n", "untrusted comment: x\n!!!\ntrusted comment: y\nzzz\n"):
        with pytest.raises(MinisignError):
            minisign.verify(message, garbage, [key.public_key()])


def test_secret_key_file_round_trip() -> None:
    key = SecretKey.generate()
    again = SecretKey.parse(key.text())
    assert again == key
    assert PublicKey.parse(key.public_key().text()) == key.public_key()
    damaged = key.text().splitlines()
    raw = bytearray(__import__("base64").b64decode(damaged[1]))
    raw[70] ^= 1
    damaged[1] = __import__("base64").b64encode(bytes(raw)).decode()
    with pytest.raises(MinisignError, match="checksum"):
        SecretKey.parse("\n".join(damaged))


@pytest.mark.skipif(shutil.which("minisign") is None, reason="minisign is installed by scripts/host-setup test")
def test_minisign_tool_agrees(tmp_path: Path) -> None:
    """Debian's minisign verifies our signatures, signs with our key files, and we verify it."""
    key = SecretKey.generate()
    (tmp_path / "k.key").write_text(key.text())
    (tmp_path / "k.pub").write_text(key.public_key().text())
    message = tmp_path / "manifest.json"
    message.write_bytes(b'{"version": "0.2.0"}\n')
    (tmp_path / "manifest.json.minisig").write_text(key.sign(message.read_bytes(), "lbappliance 0.2.0"))
    ours = subprocess.run(
        ["minisign", "-V", "-p", str(tmp_path / "k.pub"), "-m", str(message)], capture_output=True, text=True
    )
    assert ours.returncode == 0, ours.stderr
    assert "lbappliance 0.2.0" in ours.stdout
    (tmp_path / "manifest.json.minisig").unlink()
    theirs = subprocess.run(
        ["minisign", "-S", "-s", str(tmp_path / "k.key"), "-m", str(message), "-t", "lbappliance 0.2.0"],
        capture_output=True,
        text=True,
        input="",
    )
    assert theirs.returncode == 0, theirs.stderr
    signer, comment = minisign.verify(
        message.read_bytes(), (tmp_path / "manifest.json.minisig").read_text(), [key.public_key()]
    )
    assert comment == "lbappliance 0.2.0"
    message.write_bytes(b'{"version": "0.3.0"}\n')
    tampered = subprocess.run(
        ["minisign", "-V", "-p", str(tmp_path / "k.pub"), "-m", str(message)], capture_output=True
    )
    assert tampered.returncode != 0


# --- the archive and the apply ------------------------------------------------------------------


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


def apply(lab: Lab, archive: Path, checksum: Path | None = None, *extra: str, booted: str = "lbroot_0.1.0"):
    args = ["update", "apply", str(archive), *([str(checksum)] if checksum else []), "--reboot-later", *extra]
    return run_lbctl(*args, env=lab.env(booted))


def test_apply_writes_slot_and_uki_and_reports(lab: Lab) -> None:
    archive, checksum = lab.archive("0.2.0")
    result = apply(lab, archive, checksum)
    assert result.returncode == 0, result.stderr
    assert "[3/7] write slot B" in result.stdout and "0.2.0 is installed in slot B" in result.stdout
    assert lab.labels() == ["esp", "lbroot_0.1.0", "lbroot_0.2.0", "lbdata"]
    assert lab.slot_bytes(3) == image("root 0.2.0", SLOT_BYTES)
    assert sorted(lab.esp_files()) == ["lbappliance_0.1.0.efi", "lbappliance_0.2.0+3.efi"]
    uki = (lab.esp / "EFI/Linux/lbappliance_0.2.0+3.efi").read_bytes()
    assert uki == image("uki 0.2.0", (1 << 20) + 12345)
    status = json.loads(run_lbctl("update", "status", "--json", env=lab.env()).stdout)
    assert status["booted_version"] == "0.1.0"
    slots = {s["name"]: s for s in status["slots"]}
    assert slots["A"]["booted"] and slots["A"]["boot_state"] == "good"
    assert slots["B"]["version"] == "0.2.0" and slots["B"]["tries_left"] == 3 and slots["B"]["config_formats"] == [1]
    assert status["last"]["outcome"] == "applied" and status["last"]["from"] == "0.1.0"
    # The first boot of 0.2.0 (booted from slot B, its UKI on trial) and its rollback.
    text = run_lbctl("update", "status", env=lab.env("lbroot_0.2.0")).stdout
    assert "running 0.2.0" in text and "on trial" in text
    (lab.esp / "EFI/Linux/lbappliance_0.2.0+3.efi").rename(lab.esp / "EFI/Linux/lbappliance_0.2.0+0-3.efi")
    text = run_lbctl("update", "status", env=lab.env()).stdout
    assert "rolled back" in text and "did not become READY in 3 tries" in text, text


def test_archive_is_reproducible(lab: Lab, tmp_path: Path) -> None:
    first, _ = lab.archive("0.2.0")
    kept = tmp_path / "first.tar"
    shutil.copyfile(first, kept)
    second, _ = lab.archive("0.2.0")
    assert kept.read_bytes() == second.read_bytes()
    with tarfile.open(second) as tar:
        assert tuple(tar.getnames()) == arc.MEMBERS
        assert {(m.uid, m.gid, m.mode, m.mtime) for m in tar.getmembers()} == {(0, 0, 0o644, 1767225600)}


def refused(lab: Lab, archive: Path, checksum: Path | None, reason: str, *extra: str, booted: str = "lbroot_0.1.0"):
    before = lab.snapshot()
    result = apply(lab, archive, checksum, *extra, booted=booted)
    assert result.returncode == 1, result.stdout
    assert "update refused, nothing was written" in result.stderr and reason in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert lab.snapshot() == before, "a refused update changed the disk or the ESP"
    last = json.loads((lab.data / "update/last.json").read_text())
    assert last["outcome"] == "refused" and reason in last["reason"]


def test_refused_corrupt(lab: Lab) -> None:
    archive, checksum = lab.archive("0.2.0")
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x40
    archive.write_bytes(bytes(data))
    refused(lab, archive, checksum, "the archive is damaged or incomplete")


def test_refused_truncated(lab: Lab) -> None:
    archive, checksum = lab.archive("0.2.0")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 3])
    refused(lab, archive, checksum, "the archive is damaged or incomplete")


def test_refused_truncated_with_matching_checksum(lab: Lab) -> None:
    """A checksum made of the truncated file: the tar or payload checks catch it."""
    archive, checksum = lab.archive("0.2.0")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data.rstrip(b"\0")) - 10])  # into the last payload, not the tar's padding
    checksum.write_text(arc.checksum_text(arc.sha256_file(archive), archive.name))
    refused(lab, archive, checksum, "truncated")


def test_refused_other_key(lab: Lab) -> None:
    other = SecretKey.generate()
    archive, checksum = lab.archive("0.2.0", key=other)
    refused(lab, archive, checksum, f"signed with key {other.public_key().id}, which this appliance does not trust")


def test_refused_wrong_checksum_file(lab: Lab) -> None:
    archive, _ = lab.archive("0.2.0")
    _, other_checksum = lab.archive("0.3.0")
    refused(lab, archive, other_checksum, "the checksum belongs to another archive")
    not_a_checksum = lab.tmp / "notes.txt"
    not_a_checksum.write_text("see attached\n")
    refused(lab, archive, not_a_checksum, "is not a checksum file")


def test_refused_downgrade_and_same_version(lab: Lab) -> None:
    archive, checksum = lab.archive("0.1.0")
    refused(lab, archive, checksum, "which is running already")
    refused(lab, archive, checksum, "which is running already", "--allow-downgrade")
    older, older_sum = lab.archive("0.0.9", min_version="0.0.1")
    refused(lab, older, older_sum, "older than the running 0.1.0 (--allow-downgrade to go back)")


def test_refused_other_product(lab: Lab) -> None:
    archive, checksum = lab.archive("0.2.0", product="otherbox")
    refused(lab, archive, checksum, "the archive is for 'otherbox', this appliance is 'lbappliance'")


def test_refused_replayed_signature_and_comment(lab: Lab) -> None:
    """A manifest signed with a trusted comment that names another version."""
    archive, checksum = lab.archive("0.2.0", comment="lbappliance 0.1.5")
    refused(lab, archive, checksum, "does not name this manifest")


def test_refused_min_version_config_format_room(lab: Lab) -> None:
    archive, checksum = lab.archive("0.3.0", min_version="0.2.0")
    refused(lab, archive, checksum, "applies to 0.2.0 or later; this appliance runs 0.1.0")
    archive, checksum = lab.archive("0.2.0", config_formats=(2,))
    refused(lab, archive, checksum, "reads configuration formats 2; this appliance's configuration is format 1")
    archive, checksum = lab.archive("0.2.1", root_bytes=SLOT_BYTES + 4096)
    refused(lab, archive, checksum, f"slot B holds {SLOT_BYTES}")


def test_refused_while_running_version_on_trial(lab: Lab) -> None:
    (lab.esp / "EFI/Linux/lbappliance_0.1.0.efi").rename(lab.esp / "EFI/Linux/lbappliance_0.1.0+2-1.efi")
    archive, checksum = lab.archive("0.2.0")
    refused(lab, archive, checksum, "is still on trial")


def test_refused_without_checksum_file(lab: Lab) -> None:
    archive, checksum = lab.archive("0.2.0")
    checksum.unlink()
    result = apply(lab, archive)
    assert result.returncode == 1 and "no checksum file" in result.stderr


def test_manifest_problems_name_the_field() -> None:
    good = json.loads(
        arc.Manifest(
            1,
            "lbappliance",
            "0.2.0",
            "0.1.0",
            (1,),
            arc.Payload(arc.ROOT, 1, "0" * 64, 2, "1" * 64),
            arc.Payload(arc.UKI, 1, "0" * 64, 2, "1" * 64),
        ).to_json()
    )
    assert arc.MANIFEST_KIND.parse_bytes(json.dumps(good).encode()).version == "0.2.0"
    for change, reason in (
        ({"version": "2"}, "version"),
        ({"min_version": "0.3.0"}, "min_version: is newer than the version itself"),
        ({"root": {**good["root"], "sha256": "xyz"}}, "root.sha256"),
        ({"uki": {**good["uki"], "file": arc.ROOT}}, "uki: must name uki.efi.zst"),
        ({"config_formats": []}, "config_formats"),
        ({"format": 2}, "format"),
    ):
        with pytest.raises(arc.InputInvalid) as exc:
            arc.MANIFEST_KIND.parse_bytes(json.dumps({**good, **change}).encode())
        assert reason in " ".join(exc.value.lines()), exc.value.lines()


# --- the order of the steps -----------------------------------------------------------------------


def bootable(lab: Lab, versions: dict[str, bytes]) -> str:
    """The version systemd-boot would start, after checking that every entry it could start
    finds its slot with exactly the signed image (or the original one for 0.1.0)."""
    labels = lab.labels()
    entries = [n for n in lab.esp_files() if n.endswith(".efi")]
    assert not [n for n in lab.esp_files() if not n.endswith((".efi", ".partial"))]
    good = []
    for name in entries:
        version = name.removeprefix("lbappliance_").split("+")[0].removesuffix(".efi")
        tries = name.split("+")[1].split("-")[0].removesuffix(".efi") if "+" in name else None
        if tries == "0":
            continue
        assert f"lbroot_{version}" in labels, f"{name} names a slot that is not labelled"
        if version != "0.1.0":
            assert lab.slot_bytes(2 + labels[1:3].index(f"lbroot_{version}")) == versions[version]
        good.append(version)
    assert good, "no entry systemd-boot could start"
    return max(good, key=arc.version_key)


@pytest.mark.parametrize("point", ["slot-write", "slot-written", "uki-write", "relabelled", "uki-installed"])
def test_every_fault_point_leaves_a_bootable_disk(lab: Lab, point: str) -> None:
    archive, checksum = lab.archive("0.2.0")
    env = {**__import__("os").environ, **lab.env(), "LBCTL_UPDATE_FAULT": point}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lbctl", "update", "apply", str(archive), str(checksum), "--reboot-later"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if f"FAULT POINT {point}" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert any(f"FAULT POINT {point}" in line for line in seen), "".join(seen)
    expected = "0.2.0" if point == "uki-installed" else "0.1.0"
    assert bootable(lab, {"0.2.0": image("root 0.2.0", SLOT_BYTES)}) == expected
    # A second apply after the cut finishes the job (or is refused as the same version, when the
    # new one would boot already: it is the running one then).
    result = apply(lab, archive, checksum)
    if expected == "0.1.0":
        assert result.returncode == 0, result.stderr
        resumed = "holds this root file system already (read back); not written again" in result.stdout
        assert resumed == (point in ("slot-written", "uki-write", "relabelled")), result.stdout
        assert sorted(lab.esp_files()) == ["lbappliance_0.1.0.efi", "lbappliance_0.2.0+3.efi"]
    assert bootable(lab, {"0.2.0": image("root 0.2.0", SLOT_BYTES)}) == "0.2.0"


def test_next_update_replaces_the_older_slot_and_downgrade(lab: Lab) -> None:
    v2, v2sum = lab.archive("0.2.0")
    assert apply(lab, v2, v2sum).returncode == 0
    # 0.2.0 booted and was blessed; 0.3.0 goes into slot A, replacing 0.1.0 and its UKI.
    (lab.esp / "EFI/Linux/lbappliance_0.2.0+3.efi").rename(lab.esp / "EFI/Linux/lbappliance_0.2.0.efi")
    v3, v3sum = lab.archive("0.3.0")
    result = apply(lab, v3, v3sum, booted="lbroot_0.2.0")
    assert result.returncode == 0, result.stderr
    assert "removing lbappliance_0.1.0.efi" in result.stdout
    assert lab.labels()[1:3] == ["lbroot_0.3.0", "lbroot_0.2.0"]
    assert sorted(lab.esp_files()) == ["lbappliance_0.2.0.efi", "lbappliance_0.3.0+3.efi"]
    # Back from 0.2.0 to 0.1.0 on purpose: 0.2.0's entry is set aside so that 0.1.0 boots.
    (lab.esp / "EFI/Linux/lbappliance_0.3.0+3.efi").rename(lab.esp / "EFI/Linux/lbappliance_0.3.0+0-3.efi")
    v1, v1sum = lab.archive("0.1.0")
    refused(lab, v1, v1sum, "older than the running 0.2.0", booted="lbroot_0.2.0")
    result = apply(lab, v1, v1sum, "--allow-downgrade", booted="lbroot_0.2.0")
    assert result.returncode == 0, result.stderr
    assert sorted(lab.esp_files()) == ["lbappliance_0.1.0+3.efi", "lbappliance_0.2.0+0.efi"]
    assert bootable(lab, {"0.1.0": image("root 0.1.0", SLOT_BYTES)}) == "0.1.0"


def test_keys_directory_problems(lab: Lab) -> None:
    archive, checksum = lab.archive("0.2.0")
    (lab.keys / "release.pub").write_text("garbage\n")
    refused(lab, archive, checksum, "the image's release keys cannot be read")
    (lab.keys / "release.pub").unlink()
    refused(lab, archive, checksum, "carries no release keys")


def test_sha256_of_images_matches_manifest(lab: Lab) -> None:
    archive, _ = lab.archive("0.2.0")
    with tarfile.open(archive) as tar:
        f = tar.extractfile(arc.MANIFEST)
        assert f is not None
        manifest = json.loads(f.read())
    assert manifest["root"]["image_sha256"] == hashlib.sha256(image("root 0.2.0", SLOT_BYTES)).hexdigest()


def test_resume_reads_back_and_rewrites_a_changed_slot(lab: Lab) -> None:
    """An apply cut after its slot was read back records it; the next one trusts the hash only."""
    archive, checksum = lab.archive("0.2.0")
    env = {**__import__("os").environ, **lab.env(), "LBCTL_UPDATE_FAULT": "slot-written"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lbctl", "update", "apply", str(archive), str(checksum), "--reboot-later"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "FAULT POINT" in line:
            break
    proc.kill()
    proc.wait()
    assert json.loads((lab.data / "update/staged.json").read_text())["partition"] == 3
    with lab.disk.open("r+b") as f:  # the slot changed behind the record's back
        f.seek(13 * (1 << 20) + 4096)
        f.write(b"not the signed image")
    result = apply(lab, archive, checksum)
    assert result.returncode == 0, result.stderr
    assert "not written again" not in result.stdout
    assert lab.slot_bytes(3) == image("root 0.2.0", SLOT_BYTES)
    assert not (lab.data / "update/staged.json").exists()
