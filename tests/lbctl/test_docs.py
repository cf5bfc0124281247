"""docs/lbctl.md carries the reference tables generated from the code; they must not drift."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lbctl.docs import checks_table, preset_table
from lbctl.schema import markdown_reference

DOC = Path(__file__).parents[2] / "docs" / "lbctl.md"
GENERATED = {"schema": markdown_reference, "preset": preset_table, "checks": checks_table}


def block(text: str, name: str) -> str:
    match = re.search(rf"<!-- BEGIN lbctl {name} -->\n(.*?)<!-- END lbctl {name} -->", text, re.S)
    assert match, f"docs/lbctl.md lacks the {name} block"
    return match.group(1)


@pytest.mark.parametrize("name", list(GENERATED))
def test_generated_block_is_current(name: str) -> None:
    assert block(DOC.read_text(), name) == GENERATED[name]() + "\n", \
        f"regenerate: .venv/bin/python tests/lbctl/test_docs.py"


def regenerate() -> None:
    text = DOC.read_text()
    for name, make in GENERATED.items():
        text = re.sub(rf"(<!-- BEGIN lbctl {name} -->\n).*?(<!-- END lbctl {name} -->)",
                      lambda m: m.group(1) + make() + "\n" + m.group(2), text, flags=re.S)
    DOC.write_text(text)


if __name__ == "__main__":
    regenerate()
