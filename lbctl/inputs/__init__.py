"""The one input engine: every input file is read, checked and documented through here.

``yamldoc`` reads the YAML (bounded, with lines, one reading of every scalar), ``engine`` walks it
against an input's table, ``types`` are the value types, ``addresses`` classifies IP addresses,
and ``problems`` is how a refusal reads.
"""

from .engine import (
    INVALID,
    Check,
    Cursor,
    Default,
    Field,
    InputKind,
    Invalid,
    ListOf,
    MapOf,
    NoDefault,
    Scope,
    Table,
    Type,
    describe,
    reference,
)
from .problems import FieldPath, InputInvalid, Problem, format_path

__all__ = [
    "INVALID",
    "Check",
    "Cursor",
    "Default",
    "Field",
    "FieldPath",
    "InputInvalid",
    "InputKind",
    "Invalid",
    "ListOf",
    "MapOf",
    "NoDefault",
    "Problem",
    "Scope",
    "Table",
    "Type",
    "describe",
    "format_path",
    "reference",
]
