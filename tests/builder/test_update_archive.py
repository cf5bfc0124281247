"""`lbimage keys` and `lbimage update-archive` on small stand-in images: the key directory's
rules, rotation, reproducible archives listed in dist/manifest.json, and signing elsewhere."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from builder import keys, manifest, update
from builder.mkosi import BuiltImage
from lbctl.update import archive as arc
from lbctl.update.minisign import PublicKey, SecretKey
from tests.lbctl.update_lab import image


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BuiltImage:
    monkeypatch.setenv("LB_BUILD_DIR", str(tmp_path / "build"))
    dist = tmp_path / "dist"
    dist.mkdir()
    root, uki = tmp_path / "root.raw", tmp_path / "uki.efi"
    root.write_bytes(image("root", 4 << 20))
    uki.write_bytes(image("uki", 1 << 20))
    qcow2 = dist / "lbappliance_0.2.0.qcow2"
    qcow2.write_bytes(b"disk")
    entry = manifest.artifact_entry("kvm", "qcow2", 1 << 30, [manifest.file_entry(dist, qcow2)])
    manifest.write(dist, "lbappliance", "0.2.0", "2026-11-30T00:00:00Z", [entry])
    return BuiltImage("0.2.0", "", str(root), str(uki), "", 1 << 30, "digest", "2026-11-30T00:00:00Z", 1767225600)


def test_explicit_key_dir_must_hold_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LB_KEY_DIR", str(tmp_path / "release-keys"))
    with pytest.raises(keys.KeysError, match="a release build names a directory that holds its keys"):
        keys.ensure_for_build()
    made = keys.create(tmp_path / "release-keys")
    assert [m.split()[0] for m in made] == ["release", "next"]
    assert keys.create(tmp_path / "release-keys") == []  # never overwrites
    assert (tmp_path / "release-keys/release.key").stat().st_mode & 0o777 == 0o600
    trusted = keys.ensure_for_build().public_keys()
    assert len(trusted) == 2 and trusted[0] != trusted[1]


def test_rotation_moves_next_to_release(tmp_path: Path) -> None:
    directory = tmp_path / "k"
    keys.create(directory)
    old_next = PublicKey.parse((directory / "next.pub").read_text())
    old_release = PublicKey.parse((directory / "release.pub").read_text())
    keys.rotate(directory)
    kd = keys.KeyDir(directory)
    assert kd.public_keys()[0] == old_next
    signing = kd.signing_key()
    assert signing is not None and signing.public_key() == old_next
    assert old_release not in kd.public_keys()
    assert list((directory / "retired").glob("*/release.key"))


def test_archive_is_reproducible_and_listed(built: BuiltImage, tmp_path: Path) -> None:
    directory = tmp_path / "k"
    keys.create(directory)
    dist = tmp_path / "dist"
    archive, checksum = update.build(built, dist, keys.KeyDir(directory), level=3)
    assert archive.name == "lbappliance-0.2.0-update.tar"
    first = archive.read_bytes()
    shutil.rmtree(tmp_path / "build" / "update")  # compress again, from scratch
    update.build(built, dist, keys.KeyDir(directory), level=3)
    assert archive.read_bytes() == first
    assert checksum.read_text() == f"{arc.sha256_file(archive)}  {archive.name}\n"
    listed = manifest.load(dist)["update"]
    assert [f["path"] for f in listed["files"]] == [archive.name, checksum.name]
    assert manifest.verify(dist) == []
    opened = arc.open_verified(archive, checksum, keys.KeyDir(directory).public_keys())
    assert opened.manifest.version == "0.2.0" and opened.manifest.min_version == "0.1.0"
    checksum.write_text("0" * 64 + f"  {archive.name}\n")
    assert any("update" in p for p in manifest.verify(dist))


def test_signing_on_another_machine(built: BuiltImage, tmp_path: Path) -> None:
    """Only the public keys here: the manifest is written out, signed elsewhere with the real
    minisign tool, and the archive is assembled from that signature."""
    elsewhere = tmp_path / "offline"
    keys.create(elsewhere)
    here = tmp_path / "k"
    here.mkdir()
    for name in ("release.pub", "next.pub"):
        shutil.copyfile(elsewhere / name, here / name)
    dist = tmp_path / "dist"
    with pytest.raises(keys.KeysError, match="minisign -S -s release.key") as exc:
        update.build(built, dist, keys.KeyDir(here), level=3)
    pending = dist / "lbappliance-0.2.0-update.tar.manifest.json"
    assert pending.exists() and "lbappliance 0.2.0" in str(exc.value)
    signature = tmp_path / "manifest.minisig"
    if shutil.which("minisign"):
        subprocess.run(
            ["minisign", "-S", "-s", str(elsewhere / "release.key"), "-m", str(pending), "-x", str(signature)]
            + ["-t", "lbappliance 0.2.0"],
            check=True,
            input="",
            text=True,
        )
    else:
        secret = SecretKey.parse((elsewhere / "release.key").read_text())
        signature.write_text(secret.sign(pending.read_bytes(), "lbappliance 0.2.0"))
    archive, checksum = update.build(built, dist, keys.KeyDir(here), level=3, signature=signature)
    arc.open_verified(archive, checksum, keys.KeyDir(here).public_keys())
    wrong = SecretKey.generate().sign(pending.read_bytes(), "lbappliance 0.2.0")
    signature.write_text(wrong)
    with pytest.raises(keys.KeysError, match="does not trust"):
        update.build(built, dist, keys.KeyDir(here), level=3, signature=signature)


def test_no_keys_at_all_fails_before_compressing(built: BuiltImage, tmp_path: Path) -> None:
    with pytest.raises(keys.KeysError, match="no release key in"):
        update.build(built, tmp_path / "dist", keys.KeyDir(tmp_path / "empty"), level=3)
    assert not (tmp_path / "build" / "update").exists()
