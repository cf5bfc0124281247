"""lbctl's one jinja2 environment: every file the appliance generates comes from a template here.

Templates live in ``lbctl/templates/``, one per generated file. The environment is strict
(an undefined name is an error) and guards every line-oriented output: a value that would put a
line break or another control character into a generated file stops the rendering
(:class:`RenderError`), whatever the input checks let through. Values that are meant to carry
such text are quoted by a filter of their output format (``haproxy_string``) or are JSON
(``tojson``); filters mark what they made safe. The quoting rules themselves are in quoting.py.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jinja2
from markupsafe import Markup

from . import quoting
from .appliance import TEMPLATES_DIR

UNSAFE_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class RenderError(Exception):
    """A value cannot be written into a generated file as it is (an appliance defect)."""


def _guard(value: Any) -> Any:
    if isinstance(value, Markup):
        return value
    text = value if isinstance(value, str) else str(value) if value is not None else ""
    if UNSAFE_IN_LINE.search(text):
        raise RenderError(
            f"refusing to write {text!r} into a generated file: it holds a line break or control character"
        )
    return value


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        finalize=_guard,
    )
    env.filters["haproxy_string"] = lambda text: Markup(quoting.haproxy_string(text))
    env.filters["host"] = quoting.host
    env.filters["endpoint"] = quoting.endpoint
    env.filters["nft_family"] = quoting.nft_family
    env.filters["nft_line"] = lambda line: Markup(quoting.nft_site_line(line))
    env.filters["nft_block"] = lambda lines: Markup(quoting.nft_site_block(lines))
    return env


def render(template: str, **context: Any) -> str:
    """Render `template` (a path below lbctl/templates/) with `context`."""
    return environment().get_template(template).render(**context)
