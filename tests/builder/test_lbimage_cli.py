"""The lbimage command line: help texts, error exits and the root check, without building.

Errors must reach the user as one 'lbimage: error: ...' line and a non-zero exit, not a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from builder import cli, mkosi, qemu
from builder.cli import HYPERVISORS_HELP

HYPERVISORS = ("vmware", "hyperv", "kvm", "xen", "nutanix")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.cli, list(args))


@pytest.fixture
def no_mkosi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Make sure a test can never start a real build: mkosi fails the test instead."""

    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail("the test reached mkosi")

    monkeypatch.setattr(mkosi, "run_mkosi", refuse)
    monkeypatch.setattr(mkosi, "mkosi_version", refuse)
    monkeypatch.setenv("LB_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("LB_DIST_DIR", str(tmp_path / "dist"))
    monkeypatch.setenv("LB_CACHE_DIR", str(tmp_path / "cache"))


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("build", "package", "verify", "boot", "kvm-probe", "settings"):
        assert command in result.output


@pytest.mark.parametrize("command", ["build", "package"])
def test_build_and_package_help_name_the_hypervisors(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    flat = " ".join(result.output.split())  # click wraps the help text
    assert "(vmware,hyperv,kvm,xen,nutanix)" in flat and "--hypervisor" in flat
    assert all(hv in HYPERVISORS_HELP for hv in HYPERVISORS)


def test_boot_help_offers_the_disk_buses_and_nic_models() -> None:
    flat = " ".join(invoke("boot", "--help").output.split())
    assert all(bus in flat for bus in qemu.DISK_BUSES) and all(nic in flat for nic in qemu.NIC_MODELS)


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("lbimage, version ")


def test_verify_of_a_missing_directory(tmp_path: Path) -> None:
    result = invoke("verify", str(tmp_path / "nodist"))
    assert result.exit_code == 2
    assert "does not exist" in result.output and "nodist" in result.output


def test_verify_of_an_empty_directory(tmp_path: Path) -> None:
    result = invoke("verify", str(tmp_path))
    assert result.exit_code == 1
    assert f"FAIL {tmp_path / 'manifest.json'}: missing" in result.stderr
    assert "every file present" not in result.output


def test_verify_of_an_unreadable_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{")
    result = invoke("verify", str(tmp_path))
    assert result.exit_code == 1 and "manifest.json: unreadable" in result.stderr


def test_build_with_an_invalid_setting_stops_before_mkosi(monkeypatch: pytest.MonkeyPatch, no_mkosi: None) -> None:
    monkeypatch.setenv("LB_MIRROR", "ftp://x")
    result = invoke("build", "--hypervisor", "kvm")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("lbimage: error: LB_MIRROR='ftp://x': ")
    assert "Traceback" not in result.output


def test_build_with_an_unknown_hypervisor(no_mkosi: None) -> None:
    result = invoke("build", "--hypervisor", "kvm,virtualbox")
    assert result.exit_code == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith("lbimage: error: ") and "virtualbox" in last


def test_package_without_a_build(no_mkosi: None) -> None:
    result = invoke("package", "--hypervisor", "kvm")
    assert result.exit_code == 1
    assert "no built image; run 'lbimage build'" in result.stderr


def test_boot_without_a_build_or_disk(no_mkosi: None) -> None:
    result = invoke("boot")
    assert result.exit_code == 1 and "no built image; pass --disk" in result.stderr


@pytest.mark.parametrize("usable, text", [(True, "kvm: usable"), (False, "kvm: not usable here")])
def test_kvm_probe(monkeypatch: pytest.MonkeyPatch, usable: bool, text: str) -> None:
    monkeypatch.setattr(qemu, "kvm_usable", lambda: usable)
    result = invoke("kvm-probe")
    assert result.exit_code == 0 and result.output.startswith(text)


@pytest.mark.parametrize("command", ["build", "boot"])
def test_main_refuses_build_and_boot_without_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sys, "argv", ["lbimage", command, "--help"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 1
    assert (
        capsys.readouterr().err
        == "lbimage: error: mkosi and QEMU need root here; run as root (e.g. 'sudo make image')\n"
    )


@pytest.mark.parametrize(
    "euid, argv", [(1000, ["lbimage", "verify", "--help"]), (1000, ["lbimage"]), (0, ["lbimage", "build", "--help"])]
)
def test_main_lets_the_rest_through(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], euid: int, argv: list[str]
) -> None:
    """verify and the help need no root; root may build."""
    monkeypatch.setattr(cli.os, "geteuid", lambda: euid)
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out, err = capsys.readouterr()
    assert "need root" not in err
    assert exc.value.code in (0, 2) and "Usage: lbimage" in out + err
