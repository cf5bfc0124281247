"""The one renderer: every file lbimage generates comes from a jinja2 template through here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2


def render(template: Path, **context: Any) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template.parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # "x.ovf.j2" counts as .ovf: the templates carry .j2.
        autoescape=jinja2.select_autoescape(enabled_extensions=("xml", "ovf", "xml.j2", "ovf.j2")),
    )
    return env.get_template(template.name).render(**context)


def write(template: Path, target: Path, **context: Any) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(template, **context))
    return target
