"""Fixtures of the packaging tests: the synthetic inputs of synthetic.py, and a packaged dist/.

- `packaged`: the real hypervisors/ profiles packaged from those into a dist/ once per session.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from builder.mkosi import BuiltImage
from builder.packaging import load_profiles, package
from builder.packaging.profiles import HYPERVISORS_DIR
from tests.packaging.synthetic import all_guest_modules, make_built, make_raw, make_uki


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inputs")


@pytest.fixture(scope="session")
def synthetic_raw(inputs: Path) -> Path:
    return make_raw(inputs / "disk.raw")


@pytest.fixture(scope="session")
def synthetic_uki(inputs: Path) -> Path:
    return make_uki(inputs / "uki.efi", all_guest_modules())


@pytest.fixture(scope="session")
def built(inputs: Path, synthetic_raw: Path, synthetic_uki: Path) -> BuiltImage:
    return make_built(inputs, synthetic_raw, synthetic_uki)


@pytest.fixture(scope="session")
def packaged(built: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/ with all five hypervisors packaged from the synthetic image by the real profiles."""
    dist = tmp_path_factory.mktemp("dist")
    package(built, load_profiles("all"), dist)
    return dist


@pytest.fixture
def profile_dir(tmp_path: Path) -> Path:
    """A copy of hypervisors/ that a test may change."""
    return Path(shutil.copytree(HYPERVISORS_DIR, tmp_path / "hypervisors"))
