"""Unit tests of lbctl: no network, no running HAProxy (the host's haproxy binary checks configs)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def lbctl_env(tmp_path: Path) -> dict[str, str]:
    """lbctl's paths moved into tmp_path; nothing answers on the sockets (HAProxy not running)."""
    return {
        "LBCTL_STATE_DIR": str(tmp_path / "state"),
        "LBCTL_ADMIN_SOCKET": str(tmp_path / "admin.sock"),
        "LBCTL_MASTER_SOCKET": str(tmp_path / "master.sock"),
        "LB_NETWORKD_DIR": str(tmp_path / "networkd"),
        "LBCTL_OS_RELEASE": "/nonexistent",
    }
