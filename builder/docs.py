"""The reference blocks of the docs, generated from the tables that drive the code.

Each block sits between ``<!-- BEGIN generated NAME -->`` and ``<!-- END generated NAME -->`` in a
Markdown file; `lbimage docs` rewrites them and tests/test_docs.py fails when one is stale, so
what the docs say is what the code checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from . import ROOT


def _site() -> str:
    from lbctl.site.schema import SITE_KIND

    return SITE_KIND.reference()


def _network() -> str:
    from lbctl.boot.network import NETWORK_KIND

    return NETWORK_KIND.reference()


def _preset() -> str:
    from lbctl.docs import preset_table

    return preset_table("pacs")


def _checks() -> str:
    from lbctl.docs import checks_table

    return checks_table()


def _profiles() -> str:
    from .packaging.profiles import reference_doc

    return reference_doc()


def _settings() -> str:
    from .settings import SETTINGS

    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for f in SETTINGS.fields:
        default = f.default_text().removeprefix("default: ")
        lines.append(f"| `{f.key}` | {default} | {f.doc} |")
    return "\n".join(lines) + "\n"


def _inputs() -> str:
    from lbctl.boot.provision import INPUTS

    lines = ["| input | credential | file on the config disk | content |", "|---|---|---|---|"]
    lines += [f"| {i.key} | `{i.credential}` | `{i.disk_file}` | {i.summary} |" for i in INPUTS]
    return "\n".join(lines) + "\n"


# (file, block name, generator)
BLOCKS: tuple[tuple[str, str, Callable[[], str]], ...] = (
    ("docs/lbctl.md", "lbctl schema", _site),
    ("docs/lbctl.md", "lbctl network", _network),
    ("docs/lbctl.md", "lbctl preset", _preset),
    ("docs/lbctl.md", "lbctl checks", _checks),
    ("docs/hypervisors.md", "hypervisor profiles", _profiles),
    ("README.md", "build settings", _settings),
    ("README.md", "provisioning inputs", _inputs),
)


def pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- BEGIN generated {re.escape(name)} -->\n)(.*?)(<!-- END generated {re.escape(name)} -->)", re.S
    )


def current(path: str, name: str, root: Path = ROOT) -> str | None:
    """The block as the file has it now, or None if the file lacks its markers."""
    match = pattern(name).search((root / path).read_text())
    return match.group(2) if match else None


def _replacement(block: str) -> Callable[[re.Match[str]], str]:
    return lambda m: m.group(1) + block + m.group(3)


def regenerate(root: Path = ROOT) -> list[str]:
    """Rewrite every block; returns the files that changed."""
    changed = []
    for path in dict.fromkeys(p for p, _, _ in BLOCKS):
        text = (root / path).read_text()
        new = text
        for _, name, make in (b for b in BLOCKS if b[0] == path):
            if not pattern(name).search(new):
                raise ValueError(f"{path} lacks the markers of the generated block {name!r}")
            new = pattern(name).sub(_replacement(make() + "\n"), new)
        if new != text:
            (root / path).write_text(new)
            changed.append(path)
    return changed
