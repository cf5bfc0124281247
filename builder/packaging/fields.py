"""Declarative YAML fields: one table per file kind drives parsing, validation and the docs.

A `Field` names a dotted key ("hardware.cpus"), a parser that turns the YAML value into the
Python value or raises `ValueError(reason)`, a default (or REQUIRED) and a help line. `parse_fields`
walks a YAML mapping against such a table and reports every problem as
"<file>: <field>: <reason>", so a typo in hypervisors/*.yaml says where it is and why it is wrong.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

Parser = Callable[[Any], Any]


class ProfileError(ValueError):
    """A profile file is wrong; the message names the file, the field and the reason."""


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Field:
    key: str                 # dotted path in the YAML file, e.g. "boot_test.nic_model"
    parse: Parser            # YAML value -> Python value; raises ValueError(reason)
    help: str                # one line for docs/hypervisors.md
    default: Any = REQUIRED
    kind: str = ""           # the value's shape, for the docs ("integer 1-64", ...)


# --- value parsers (each returns a parser; the closure carries the limits) -----------------------

def integer(low: int, high: int) -> Parser:
    def parse(value: Any) -> int:
        # bool is an int in Python; "cpus: yes" is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} is not an integer")
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range {low}..{high}")
        return value
    parse.kind = f"integer {low}-{high}"  # type: ignore[attr-defined]
    return parse


def text(pattern: str | None = None, what: str = "") -> Parser:
    regex = re.compile(pattern) if pattern else None

    def parse(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{value!r} is not a non-empty string")
        if regex and not regex.fullmatch(value):
            raise ValueError(f"{value!r} is not {what or 'matching ' + pattern}")
        return value
    parse.kind = what or "string"  # type: ignore[attr-defined]
    return parse


def choice(values: Iterable[str], what: str = "") -> Parser:
    allowed = sorted(values)

    def parse(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not {what or 'a known value'}; expected one of {', '.join(allowed)}")
        return value
    parse.kind = "one of " + ", ".join(allowed)  # type: ignore[attr-defined]
    return parse


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


boolean.kind = "true or false"  # type: ignore[attr-defined]


def list_of(item: Parser, unique: bool = True) -> Parser:
    def parse(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ValueError(f"{value!r} is not a list")
        items = []
        for n, element in enumerate(value):
            try:
                items.append(item(element))
            except ValueError as exc:
                raise ValueError(f"item {n}: {exc}") from None
        if unique and len(set(items)) != len(items):
            raise ValueError(f"{value!r} lists an item twice")
        return tuple(items)
    parse.kind = f"list of {getattr(item, 'kind', 'values')}"  # type: ignore[attr-defined]
    return parse


def mapping(value: Any) -> dict[str, Any]:
    """A free-form mapping of scalars (template variables, converter options)."""
    if not isinstance(value, dict):
        raise ValueError(f"{value!r} is not a mapping")
    for key, element in value.items():
        if not isinstance(key, str):
            raise ValueError(f"key {key!r} is not a string")
        if not isinstance(element, (str, int, float, bool)):
            raise ValueError(f"{key}: {element!r} is not a string, number or boolean")
    return dict(value)


mapping.kind = "mapping of names to strings, numbers or booleans"  # type: ignore[attr-defined]


# --- walking a file against a table ----------------------------------------------------------------

def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return REQUIRED
        node = node[part]
    return node


def _unknown_keys(data: Mapping[str, Any], fields: Iterable[Field], prefix: str = "") -> list[str]:
    """Keys in the file that no field names (a typo would otherwise be silently ignored)."""
    keys = {f.key for f in fields}
    unknown = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if dotted in keys:
            continue                     # a leaf field (its value may itself be a mapping)
        if any(k.startswith(dotted + ".") for k in keys) and isinstance(value, dict):
            unknown += _unknown_keys(value, fields, dotted + ".")
        else:
            unknown.append(dotted)
    return unknown


def parse_fields(source: Path, data: Any, fields: Iterable[Field]) -> dict[str, Any]:
    """Parse `data` (a loaded YAML document) against `fields`: {dotted key: value}.

    Raises ProfileError listing every problem, each as "<file>: <field>: <reason>".
    """
    fields = list(fields)
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: the file must hold a YAML mapping, not {type(data).__name__}")
    problems = [f"{source}: {key}: unknown field (known: {', '.join(f.key for f in fields)})"
                for key in _unknown_keys(data, fields)]
    values: dict[str, Any] = {}
    for f in fields:
        raw = _lookup(data, f.key)
        if raw is REQUIRED:
            if f.default is REQUIRED:
                problems.append(f"{source}: {f.key}: missing ({f.help})")
                continue
            values[f.key] = f.default
            continue
        try:
            values[f.key] = f.parse(raw)
        except ValueError as exc:
            problems.append(f"{source}: {f.key}: {exc}")
    if problems:
        raise ProfileError("\n".join(problems))
    return values


def reference(fields: Iterable[Field]) -> str:
    """The Markdown table of a file's fields, as docs/hypervisors.md carries it."""
    lines = ["| field | value | default | meaning |", "|---|---|---|---|"]
    for f in fields:
        if f.default is REQUIRED:
            default = "required"
        elif f.default is None:
            default = "inherited"
        elif f.default in ((), {}):
            default = "empty"
        else:
            default = f"`{json.dumps(f.default)}`"
        kind = f.kind or getattr(f.parse, "kind", "")
        lines.append(f"| `{f.key}` | {kind} | {default} | {f.help} |")
    return "\n".join(lines) + "\n"
