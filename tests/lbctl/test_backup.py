"""lbctl backup and restore through the real command line: a round trip, every kind of bad backup
refused with one line naming the member and nothing changed, a pair's backup held until join, and
the pair's files checked before they are written (a restored member of a running pair is tested
with two VMs in tests/image/test_pair.py)."""

from __future__ import annotations

import gzip
import io
import json
import os
import socket
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.lbctl.lbctl_cli import run_lbctl
from tests.lbctl.test_apply import CHANGED, link, write
from tests.lbctl.test_validate import BASE


@pytest.fixture
def env(tmp_path: Path, lbctl_env: dict[str, str]) -> dict[str, str]:
    return {**lbctl_env, "LB_DATA_DIR": str(tmp_path / "data"), "LB_RUN_DIR": str(tmp_path / "run")}


def applied(tmp_path: Path, env: dict[str, str], text: str = BASE) -> None:
    result = run_lbctl("apply", str(write(tmp_path, "site.yaml", text)), env=env)
    assert result.returncode == 0, result.stderr


def current_site(env: dict[str, str]) -> str:
    return (Path(env["LBCTL_STATE_DIR"]) / "current" / "site.yaml").read_text()


def archive(tmp_path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    path = tmp_path / "crafted.backup"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
            tar.addfile(info)
    return path


META = json.dumps({"format": "lbappliance-backup-1"}).encode()


def test_backup_and_restore_round_trip(tmp_path: Path, env: dict[str, str]) -> None:
    applied(tmp_path, env)
    backup = tmp_path / "node.backup"
    made = run_lbctl("backup", str(backup), env=env)
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600  # it can hold the cluster key
    with tarfile.open(backup) as tar:
        assert sorted(tar.getnames()) == ["backup.json", "site.yaml"]
    applied(tmp_path, env, CHANGED)
    restored = run_lbctl("restore", str(backup), env=env)
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout == "restored: site applied as generation 0003\n"
    assert current_site(env) == BASE
    assert link(env, "last-good") == "generations/0002"  # the restore can be rolled back


def test_backup_with_nothing_applied_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    result = run_lbctl("backup", str(tmp_path / "x"), env=env)
    assert result.returncode == 1
    assert result.stderr == "error: nothing to back up: no site was applied on this appliance\n"
    assert not (tmp_path / "x").exists()


BAD_BACKUPS = {
    "foreign member": (
        {"backup.json": META, "site.yaml": BASE.encode(), "../etc/passwd": b"x"},
        None,
        "member '../etc/passwd' is not part of a backup",
    ),
    "symlink member": ({"backup.json": META}, "site.yaml", "member 'site.yaml' is not a regular file"),
    "no format": ({"site.yaml": BASE.encode()}, None, "not a backup of this appliance"),
    "no site": ({"backup.json": META}, None, "member 'site.yaml' is missing"),
    "invalid site": (
        {"backup.json": META, "site.yaml": BASE.replace("vip: 192.168.85.5", "vip: 192.168.85.256").encode()},
        None,
        "backup member site.yaml: services.DICOM.vip: '192.168.85.256' is not an IPv4 or IPv6 address (line 5)",
    ),
    "invalid rules": (
        {"backup.json": META, "site.yaml": BASE.encode(), "firewall/site-rules.nft": b"chain input {\n"},
        None,
        "backup member firewall/site-rules.nft: line 1: site rules: the chain input block opened on line 1 is not "
        "closed",
    ),
}


@pytest.mark.parametrize("case", BAD_BACKUPS, ids=list(BAD_BACKUPS))
def test_a_bad_backup_is_refused_and_changes_nothing(tmp_path: Path, env: dict[str, str], case: str) -> None:
    members, symlink, expected = BAD_BACKUPS[case]
    applied(tmp_path, env, CHANGED)
    result = run_lbctl("restore", str(archive(tmp_path, members, symlink)), env=env)
    assert result.returncode == 1
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert current_site(env) == CHANGED and link(env, "current") == "generations/0001"


def test_a_file_that_is_not_an_archive_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    result = run_lbctl("restore", str(write(tmp_path, "site.yaml", BASE)), env=env)
    assert result.returncode == 1 and "not a readable backup" in result.stderr


# --- the HA pair's files ----------------------------------------------------------------------


def pair_files(text_of_authorized_keys: str | None = None) -> dict[str, bytes]:
    """A pair's backup members for this host (the node name must be this host's)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from lbctl.cluster.pairing import _openssh_private as openssh_private
    from lbctl.cluster.pairing import cluster_yaml
    from tests.lbctl.test_cluster import HOST_KEY, cluster

    node = cluster().node
    config = cluster(node=type(node)(socket.gethostname(), node.addresses))
    return {
        "cluster/cluster.yaml": cluster_yaml(config).encode(),
        "cluster/id_ed25519": openssh_private(Ed25519PrivateKey.generate()),
        "cluster/authorized_keys": (
            text_of_authorized_keys
            if text_of_authorized_keys is not None
            else f'restrict,command="/usr/bin/lbctl cluster receive" {HOST_KEY} lbappliance-cluster\n'
        ).encode(),
    }


@pytest.fixture
def pair_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "LBCTL_HEARTBEAT": "off"}


def test_a_pairs_backup_restored_is_held_until_join(tmp_path: Path, pair_env: dict[str, str]) -> None:
    applied(tmp_path, pair_env, CHANGED)
    crafted = archive(tmp_path, {"backup.json": META, "site.yaml": BASE.encode(), **pair_files()})
    result = run_lbctl("restore", str(crafted), env=pair_env)
    assert result.returncode == 0, result.stderr
    assert "heartbeat held until 'lbctl cluster join'" in result.stdout
    cluster_dir = Path(pair_env["LB_DATA_DIR"]) / "cluster"
    assert (cluster_dir / "hold").exists()
    # authorized_keys is written anew from the key it names, never copied.
    assert (cluster_dir / "authorized_keys").read_text().count("\n") == 1
    assert current_site(pair_env) == BASE


TWO_LINES = (
    'restrict,command="/usr/bin/lbctl cluster receive" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5'
    "C9okWi0dh2l9GKJl lbappliance-cluster\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9"
    "GKJl\n"
)
BAD_PAIR_BACKUPS = {
    "key files without a pair": (
        {"cluster/authorized_keys": b"ssh-ed25519 AAAA\n"},
        "without cluster/cluster.yaml they belong to no pair",
    ),
    "a second authorized key": (
        pair_files(TWO_LINES),
        "backup member cluster/authorized_keys: not the one line of the peer's cluster key",
    ),
    "a broken private key": (
        {**pair_files(), "cluster/id_ed25519": b"garbage"},
        "backup member cluster/id_ed25519: not an unencrypted OpenSSH Ed25519 private key",
    ),
}


@pytest.mark.parametrize("case", BAD_PAIR_BACKUPS, ids=list(BAD_PAIR_BACKUPS))
def test_a_bad_pair_backup_is_refused_and_writes_nothing(tmp_path: Path, pair_env: dict[str, str], case: str) -> None:
    members, expected = BAD_PAIR_BACKUPS[case]
    applied(tmp_path, pair_env, CHANGED)
    crafted = archive(tmp_path, {"backup.json": META, "site.yaml": BASE.encode(), **members})
    result = run_lbctl("restore", str(crafted), env=pair_env)
    assert result.returncode == 1 and expected in result.stderr, result.stderr
    assert not (Path(pair_env["LB_DATA_DIR"]) / "cluster").exists()
    assert current_site(pair_env) == CHANGED


def test_a_huge_tar_header_in_a_small_backup_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    """A few hundred KB of gzip can unpack to a tar header of gigabytes: the whole archive is
    bounded unpacked, headers included."""
    bomb = tmp_path / "bomb.backup"
    with gzip.open(bomb, "wb") as f:
        f.write(b"\0" * (64 << 20))
    result = run_lbctl("restore", str(bomb), env=env)
    assert result.returncode == 1 and "larger than 8 MiB unpacked" in result.stderr


def test_unpair_asked_by_the_secondary_keeps_the_primarys_services(tmp_path: Path, pair_env: dict[str, str]) -> None:
    from lbctl.cluster.pairing import cluster_yaml
    from tests.lbctl.test_cluster import cluster

    applied(tmp_path, pair_env)
    cluster_dir = Path(pair_env["LB_DATA_DIR"]) / "cluster"
    cluster_dir.mkdir(parents=True)
    (cluster_dir / "cluster.yaml").write_text(cluster_yaml(cluster(role="primary")))
    answer = subprocess.run(
        [sys.executable, "-m", "lbctl", "cluster", "receive"],
        input='{"op": "unpair"}',
        capture_output=True,
        text=True,
        env={**os.environ, **pair_env},
        timeout=60,
    )
    assert json.loads(answer.stdout) == {"ok": True}, answer
    assert not (cluster_dir / "cluster.yaml").exists()
    assert current_site(pair_env) == BASE  # the primary still serves DICOM
