"""Style is checked by tools, not hoped for: ruff (lint and format) and mypy, configured in
pyproject.toml, report nothing on the whole tree (lbctl, builder, tests, bench)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from builder import ROOT

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "argv",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool_reports_nothing(argv: list[str]) -> None:
    result = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout}{result.stderr}"
