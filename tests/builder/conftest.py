"""The build settings' environment, emptied for every test of the build tool.

Every test starts with none of the settings in its environment, so what the developer's shell
exports (a local mirror, a pinned snapshot) cannot change what a test sees.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from builder import settings


@pytest.fixture(autouse=True)
def clean_settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for env in settings.FIELDS:
        monkeypatch.delenv(env, raising=False)
    yield
