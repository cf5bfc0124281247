"""Fixtures of the network-namespace suite: the lab (four namespaces) and the real servers are
built once per session; every test gets its own appliance (state directory, HAProxy process).

Prerequisites missing on the machine fail the suite loudly (scripts/host-setup test installs
them); they are never skipped.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns.appliance import Appliance
from tests.netns.backends import Backends, start_backends
from tests.netns.netlab import Lab, missing_prerequisites, wait_until
from tests.netns.sites import full_site


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    problems = missing_prerequisites()
    if problems:
        pytest.fail(
            "network-namespace tests cannot run: "
            + "; ".join(problems)
            + " (scripts/host-setup test installs the tools)",
            pytrace=False,
        )
    lab = Lab(tmp_path_factory.mktemp("lab"))
    try:
        lab.build()
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="session")
def backends(lab: Lab) -> Iterator[Backends]:
    # Not below pytest's tmp dir: that is private to root, and slapd reads its files as nobody.
    # The processes stop with the lab (Lab.close stops every process it spawned).
    workdir = Path(tempfile.mkdtemp(prefix="lbt-servers-", dir="/tmp"))
    workdir.chmod(0o755)
    try:
        yield start_backends(lab, workdir)
    finally:
        lab.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def appliance(lab: Lab) -> Iterator[Appliance]:
    appliance = Appliance(lab)
    try:
        yield appliance
    finally:
        appliance.close()
        lab.sync_addresses(Path("/nonexistent"))  # drop this test's VIPs again


@pytest.fixture
def running(appliance: Appliance, backends: Backends) -> Appliance:
    """An appliance running the full site, every real server UP."""
    appliance.apply(full_site())
    appliance.start()

    waiting: list[str] = []

    def all_checked_and_up() -> bool:
        rows = [(s["name"], r) for s in appliance.status()["services"] for r in s["servers"]]
        waiting[:] = [
            f"{name}/{r['label']} {r['state']} {r['last_check']['status']} {r['last_check']['detail']}"
            for name, r in rows
            if r["state"] != "UP" or r["last_check"]["status"] not in ("L4OK", "L6OK", "L7OK", "PROCOK")
        ]
        return len(rows) == 18 and not waiting

    try:
        wait_until(all_checked_and_up, 20, "every real server UP after a passed check")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; not yet: {'; '.join(waiting)}") from None
    return appliance
