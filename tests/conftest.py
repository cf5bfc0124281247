"""Shared fixtures.

Tests under tests/image/ get the `image` marker (they need the built image and boot it in QEMU),
tests under tests/netns/ the `netns` marker (root and network namespaces, no image). `make
test-fast` deselects `image`.

The image is built once per session (`lbimage build`, which itself skips mkosi when nothing
changed), and every VM a test starts is killed at teardown; console logs of VMs whose test failed
are kept under build/test-logs/.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from builder import ROOT, provision, qemu, settings
from builder.mkosi import BuiltImage
from tests.helpers import LOG_DIR

VENV_BIN = Path(sys.executable).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts[0] == "image":
            item.add_marker(pytest.mark.image)
        elif parts[0] == "netns":
            item.add_marker(pytest.mark.netns)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome: Any = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash.setdefault(FAILED_KEY, report.failed)


FAILED_KEY = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def built_dist() -> Path:
    """dist/ with every hypervisor's artifact and manifest.json, built once per session."""
    dist = settings.path("LB_DIST_DIR")
    log = ROOT / "build" / "test-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        result = subprocess.run([str(VENV_BIN / "lbimage"), "build"], stdout=f, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        pytest.fail(
            f"lbimage build failed (exit {result.returncode}); log: {log}\n"
            + "\n".join(log.read_text().splitlines()[-30:])
        )
    return dist


@pytest.fixture(scope="session")
def manifest(built_dist: Path) -> dict:
    return json.loads((built_dist / "manifest.json").read_text())


@pytest.fixture(scope="session")
def built_image(built_dist: Path) -> BuiltImage:
    image = BuiltImage.load(settings.path("LB_BUILD_DIR") / "image.json")
    assert image is not None, "lbimage build left no build/image.json"
    return image


@pytest.fixture(scope="session")
def ssh_keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(private key path, public key line) provisioned into every test VM."""
    return provision.make_ssh_key(tmp_path_factory.mktemp("ssh"))


@pytest.fixture
def start_vm(
    request: pytest.FixtureRequest, tmp_path: Path, ssh_keypair: tuple[Path, str]
) -> Iterator[Callable[..., qemu.VM]]:
    """start_vm(spec, name=..., wait=True) boots a VM (waiting for READY unless wait=False).
    Every VM is killed at teardown; failed tests keep their console logs in build/test-logs/."""
    vms: list[qemu.VM] = []

    def start(spec: qemu.VMSpec, name: str = "vm", wait: bool = True, timeout: float = 300) -> qemu.VM:
        vm = qemu.VM(spec, tmp_path / name, ssh_key=ssh_keypair[0], name=name)
        vms.append(vm)
        vm.start()
        if wait:
            vm.wait_ready(timeout)
        return vm

    yield start
    failed = request.node.stash.get(FAILED_KEY, True)
    for vm in vms:
        vm.stop()
        if failed and vm.console_log.exists():
            LOG_DIR.mkdir(parents=True, exist_ok=True)
            shutil.copy(vm.console_log, LOG_DIR / f"{request.node.name}-{vm.name}-console.log")
