"""The build settings' environment, emptied for a test (used by the modules that read settings).

Every test that reads settings starts with none of them in its environment, so what the
developer's shell exports (a local mirror, a pinned snapshot) cannot change what a test sees.

Notes on this directory's layout:
- it is tests/lbimage, not tests/builder: pytest puts tests/ on sys.path for tests/conftest.py,
  and a tests/builder directory there would shadow the real `builder` package (as an empty
  namespace package) for the whole suite;
- it has no conftest.py on purpose: tests/packaging does `from conftest import ...`, which breaks
  whenever another directory's conftest is loaded after it (`pytest tests/packaging tests/X`).
  A module imports the fixture instead: `clean_settings_env = settings_env.clean_settings_env`.
"""
from __future__ import annotations

from typing import Iterator

import pytest

from builder import settings


@pytest.fixture(autouse=True)
def clean_settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for env in settings.SETTINGS:
        monkeypatch.delenv(env, raising=False)
    yield
