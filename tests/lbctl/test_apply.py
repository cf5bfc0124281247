"""apply, rollback and init without a running HAProxy (the netns suite covers reloads): the
generation layout, the links, and that a failure changes nothing."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from lbctl.appliance import Paths
from lbctl.config import generations as state
from tests.lbctl.lbctl_cli import run_lbctl
from tests.lbctl.test_validate import BASE

CHANGED = BASE.replace("vip: 192.168.85.5", "vip: 192.168.85.6")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def link(env: dict, name: str) -> str | None:
    path = Path(env["LBCTL_STATE_DIR"]) / name
    return os.readlink(path) if path.is_symlink() else None


def test_apply_without_haproxy_running_puts_the_generation_in_place(tmp_path: Path, lbctl_env: dict) -> None:
    result = run_lbctl("apply", str(write(tmp_path, "a.yaml", BASE)), env=lbctl_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "applied generation 0001\nnote: HAProxy is not running; it starts with this configuration\n"
        "note: firewall ruleset checked, not loaded (not the appliance; LBCTL_FIREWALL=on loads it)\n"
    )
    state_dir = Path(lbctl_env["LBCTL_STATE_DIR"])
    assert link(lbctl_env, "current") == "generations/0001" and link(lbctl_env, "last-good") is None
    generation = state_dir / "generations" / "0001"
    assert sorted(str(p.relative_to(generation)) for p in generation.rglob("*") if p.is_file()) == [
        "floating-ips",
        "haproxy.cfg",
        "networkd/10-lb-eth0.network.d/50-lbctl-vips.conf",
        "passive-ips",
        "services.json",
        "site.yaml",
    ]
    assert (generation / "site.yaml").read_text() == BASE
    assert (state_dir / "server-state").read_text() == "1\n"
    # The drop-ins went to LB_NETWORKD_DIR, not to the host's /run/systemd/network.
    assert (Path(lbctl_env["LB_NETWORKD_DIR"]) / "10-lb-eth0.network.d" / "50-lbctl-vips.conf").exists()

    again = run_lbctl("apply", str(write(tmp_path, "a2.yaml", "# same, commented\n" + BASE)), env=lbctl_env)
    assert again.stdout.startswith("configuration unchanged (generation 0001)")

    changed = run_lbctl("apply", str(write(tmp_path, "b.yaml", CHANGED)), env=lbctl_env)
    assert changed.stdout.startswith("applied generation 0002")
    assert (link(lbctl_env, "current"), link(lbctl_env, "last-good")) == ("generations/0002", "generations/0001")
    dropin = Path(lbctl_env["LB_NETWORKD_DIR"]) / "10-lb-eth0.network.d" / "50-lbctl-vips.conf"
    assert "Address=192.168.85.6/32" in dropin.read_text()

    rollback = run_lbctl("rollback", env=lbctl_env)
    assert rollback.returncode == 0 and rollback.stdout.startswith("rolled back to generation 0001")
    assert (link(lbctl_env, "current"), link(lbctl_env, "last-good")) == ("generations/0001", "generations/0002")
    assert "Address=192.168.85.5/32" in dropin.read_text()

    listing = run_lbctl("generations", env=lbctl_env).stdout
    assert listing == "0001  current    DICOM\n0002  last-good  DICOM\n"


def test_haproxy_rejecting_the_configuration_changes_nothing(tmp_path: Path, lbctl_env: dict) -> None:
    assert run_lbctl("apply", str(write(tmp_path, "a.yaml", BASE)), env=lbctl_env).returncode == 0
    fake = write(tmp_path, "haproxy", "#!/bin/sh\necho '[ALERT]    (1) : config : something is wrong' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    result = run_lbctl("apply", str(write(tmp_path, "b.yaml", CHANGED)), env={**lbctl_env, "LBCTL_HAPROXY": str(fake)})
    assert result.returncode == 1
    assert result.stderr == (
        "error: HAProxy rejects the generated configuration (haproxy -c):\n"
        "  [ALERT]    (1) : config : something is wrong\n"
    )
    assert link(lbctl_env, "current") == "generations/0001" and link(lbctl_env, "last-good") is None
    generations = Path(lbctl_env["LBCTL_STATE_DIR"]) / "generations"
    assert sorted(p.name for p in generations.iterdir()) == ["0001"]  # no scratch left behind
    dropin = Path(lbctl_env["LB_NETWORKD_DIR"]) / "10-lb-eth0.network.d" / "50-lbctl-vips.conf"
    assert "Address=192.168.85.5/32" in dropin.read_text()


def test_missing_haproxy_binary_is_an_error_not_a_traceback(tmp_path: Path, lbctl_env: dict) -> None:
    result = run_lbctl(
        "apply", str(write(tmp_path, "a.yaml", BASE)), env={**lbctl_env, "LBCTL_HAPROXY": "/nonexistent/haproxy"}
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot run '/nonexistent/haproxy -c'")
    assert link(lbctl_env, "current") is None


def test_rollback_without_an_earlier_configuration(lbctl_env: dict) -> None:
    result = run_lbctl("rollback", env=lbctl_env)
    assert (result.returncode, result.stderr) == (
        1,
        "error: there is no earlier configuration to roll back to (no last-good generation)\n",
    )


def test_init_puts_the_empty_site_in_place_once(tmp_path: Path, lbctl_env: dict) -> None:
    first = run_lbctl("init", env=lbctl_env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("initial configuration (no services) in place as generation 0001")
    manifest = json.loads((Path(lbctl_env["LBCTL_STATE_DIR"]) / "current" / "services.json").read_text())
    assert manifest["services"] == []
    assert run_lbctl("init", env=lbctl_env).stdout == "a configuration is already in place\n"
    # After a site was applied, init leaves it alone too.
    run_lbctl("apply", str(write(tmp_path, "a.yaml", BASE)), env=lbctl_env)
    assert run_lbctl("init", env=lbctl_env).stdout == "a configuration is already in place\n"
    assert link(lbctl_env, "current") == "generations/0002"


def test_status_without_haproxy_is_unhealthy_and_says_why(lbctl_env: dict) -> None:
    result = run_lbctl("status", "--json", env=lbctl_env)
    assert result.returncode == 1
    status = json.loads(result.stdout)
    assert status["healthy"] is False and status["haproxy"] == {"running": False}
    assert status["problems"] == [
        f"HAProxy is not running (nothing answers on {lbctl_env['LBCTL_ADMIN_SOCKET']}: No such file or directory)"
    ]
    assert {"version", "healthy", "problems", "services"} <= set(status)


def test_server_command_checks_service_and_label(tmp_path: Path, lbctl_env: dict) -> None:
    run_lbctl("apply", str(write(tmp_path, "a.yaml", BASE)), env=lbctl_env)
    assert (
        run_lbctl("server", "drain", "SQL", "Server1", env=lbctl_env).stderr
        == "error: SQL: no such virtual service (configured: DICOM)\n"
    )
    assert (
        run_lbctl("server", "drain", "DICOM", "Server3", env=lbctl_env).stderr
        == "error: DICOM.Server3: no such real server (configured: Server1, Server2)\n"
    )
    result = run_lbctl("server", "drain", "DICOM", "Server1", env=lbctl_env)
    assert result.returncode == 1 and "HAProxy is not running" in result.stderr
    assert run_lbctl("server", "pause", "DICOM", "Server1", env=lbctl_env).returncode == 2  # click usage


def test_old_generations_are_pruned(tmp_path: Path) -> None:
    paths = Paths(
        state_dir=tmp_path, admin_socket=tmp_path / "a", master_socket=tmp_path / "m", os_release=tmp_path / "o"
    )
    for _ in range(state.KEEP_GENERATIONS + 5):
        generation = state.commit_generation(paths, state.scratch_generation(paths))
    state.point(paths.current, generation)
    first = state.numbered(paths)[0]
    state.point(paths.last_good, first)
    state.prune(paths)
    kept = state.numbered(paths)
    assert len(kept) == state.KEEP_GENERATIONS + 1 and kept[0] == first and kept[-1] == generation


@pytest.mark.parametrize(
    "command",
    [
        "validate",
        "render",
        "apply",
        "rollback",
        "init",
        "status",
        "server",
        "schema",
        "preset",
        "generations",
        "version",
    ],
)
def test_every_command_has_help(command: str) -> None:
    result = run_lbctl(command, "--help")
    assert result.returncode == 0 and result.stdout.startswith("Usage: ")
