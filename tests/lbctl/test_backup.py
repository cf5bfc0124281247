"""lbctl backup and restore on one node, through the real command line: a round trip, and every
kind of bad backup refused with one line naming the member, nothing changed. (A restored member
of an HA pair, held until join, is tested with two VMs in tests/image/test_pair.py.)"""

from __future__ import annotations

import io
import json
import os
import stat
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
