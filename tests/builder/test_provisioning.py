"""builder.provision: the credentials and config disks that provision a test or local VM.

The appliance finds its config disk by the LBCONFIG label and reads one file per input, so both
media are checked with the tools a guest would use (blkid, mtools, xorriso), not with this module.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from builder import provision
from lbctl.boot.provision import INPUTS

# xorriso honours SOURCE_DATE_EPOCH (and exits on a malformed one): keep the caller's out.

NETWORK = "hostname: lb1\ninterfaces:\n  eth0: {address: 10.0.0.5/24}\n"
SITE = "services: []\n"


def blkid(path: Path, tag: str) -> str:
    return subprocess.run(
        ["blkid", "-p", "-o", "value", "-s", tag, str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_as_credentials_maps_every_key_to_its_credential_name() -> None:
    inputs = {i.key: f"text of {i.key}\n" for i in INPUTS}
    assert provision.as_credentials(inputs) == {i.credential: f"text of {i.key}\n" for i in INPUTS}
    assert provision.as_credentials({"network": NETWORK}) == {"lb.network": NETWORK}


def test_an_unknown_key_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(ValueError) as exc:
        provision.as_credentials({"network": NETWORK, "netwrok": NETWORK})
    message = str(exc.value)
    assert "['netwrok']" in message
    for i in INPUTS:
        assert repr(i.key) in message.split("known:", 1)[1]


def test_fat_config_disk(tmp_path: Path) -> None:
    disk = provision.make_config_disk({"network": NETWORK, "site": SITE}, tmp_path / "config.img")
    assert blkid(disk, "LABEL") == "LBCONFIG" and blkid(disk, "TYPE") == "vfat"
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}

    def mtype(name: str) -> str:
        return subprocess.run(
            ["mtype", "-i", str(disk), f"::/{name}"], capture_output=True, text=True, check=True, env=env
        ).stdout

    assert mtype("network.yaml") == NETWORK
    assert mtype("site.yaml") == SITE
    listing = subprocess.run(
        ["mdir", "-b", "-i", str(disk), "::/"], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert sorted(listing) == ["::/network.yaml", "::/site.yaml"]  # no leftovers, only the inputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.img"]  # the staging files are gone


def test_fat_config_disk_is_remade_not_appended(tmp_path: Path) -> None:
    """mkfs.vfat -C refuses an existing file: a second run must replace the first disk."""
    disk = tmp_path / "config.img"
    provision.make_config_disk({"network": NETWORK, "site": SITE}, disk)
    provision.make_config_disk({"network": "hostname: lb2\n"}, disk)
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    listing = subprocess.run(
        ["mdir", "-b", "-i", str(disk), "::/"], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert listing == ["::/network.yaml"]


def test_iso_config_disk(tmp_path: Path) -> None:
    disk = provision.make_config_disk(
        {"network": NETWORK, "admin-ssh-keys": "ssh-ed25519 AAAA x\n"}, tmp_path / "config.iso", fmt="iso"
    )
    assert blkid(disk, "LABEL") == "LBCONFIG" and blkid(disk, "TYPE") == "iso9660"
    for name, text in (("network.yaml", NETWORK), ("admin-ssh-keys", "ssh-ed25519 AAAA x\n")):
        out = tmp_path / f"out-{name}"
        subprocess.run(
            ["xorriso", "-indev", str(disk), "-osirrox", "on", "-extract", f"/{name}", str(out)],
            check=True,
            capture_output=True,
        )
        assert out.read_text() == text  # Rock Ridge keeps the full names ('.yaml', the dash)
    toc = subprocess.run(["xorriso", "-indev", str(disk), "-toc"], capture_output=True, text=True, check=True)
    offers = next(line for line in (toc.stdout + toc.stderr).splitlines() if line.startswith("ISO offers"))
    assert "Rock_Ridge" in offers and "Joliet" in offers


def test_iso_config_disk_is_remade(tmp_path: Path) -> None:
    disk = tmp_path / "config.iso"
    provision.make_config_disk({"network": NETWORK}, disk, fmt="iso")
    provision.make_config_disk({"site": SITE}, disk, fmt="iso")
    listing = subprocess.run(
        ["xorriso", "-indev", str(disk), "-lsl", "/"], capture_output=True, text=True, check=True
    ).stdout
    assert "site.yaml" in listing and "network.yaml" not in listing


def test_a_bad_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="config disk format 'vfat'"):
        provision.make_config_disk({"network": NETWORK}, tmp_path / "config.img", fmt="vfat")


def test_make_config_disk_checks_keys_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown provisioning inputs"):
        provision.make_config_disk({"sites": SITE}, tmp_path / "config.img")
    assert not (tmp_path / "config.img").exists()


@pytest.mark.parametrize("name", ["id_ed25519", "vm.key"])
def test_make_ssh_key_makes_an_ed25519_pair_once(tmp_path: Path, name: str) -> None:
    key, public = provision.make_ssh_key(tmp_path / "keys", name)
    assert key == tmp_path / "keys" / name
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(key)], capture_output=True, text=True, check=True)
    assert fingerprint.stdout.rstrip().endswith("lbimage-test (ED25519)")
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True)
    assert public.startswith("ssh-ed25519 ") and public.split()[:2] == derived.stdout.split()[:2]
    assert key.stat().st_mode & 0o077 == 0  # ssh refuses a readable private key
    assert provision.make_ssh_key(tmp_path / "keys", name) == (key, public)  # reused, not replaced
