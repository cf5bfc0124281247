"""The docs carry reference blocks generated from the code's tables; they must not drift."""

from __future__ import annotations

import pytest

from builder import docs


@pytest.mark.parametrize("path, name", [(p, n) for p, n, _ in docs.BLOCKS], ids=[n for _, n, _ in docs.BLOCKS])
def test_generated_block_is_current(path: str, name: str) -> None:
    make = next(m for p, n, m in docs.BLOCKS if (p, n) == (path, name))
    assert docs.current(path, name) == make() + "\n", f"{path}: block {name!r} is stale; run '.venv/bin/lbimage docs'"
