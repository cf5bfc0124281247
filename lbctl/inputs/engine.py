"""The one input engine: a declarative table per input drives parsing, validation, defaults and docs.

Every file the appliance or the build tool reads is described by a :class:`Table`: one
:class:`Field` per key, each with a value type (``types.py``), whether it is required, where its
default comes from, and what it means. Nested levels are tables too (a :class:`Table` as a
field's type, or a :class:`ListOf` / :class:`MapOf` of one). Checks that involve more than one
value are functions attached to the table whose values they compare, and run once that level is
parsed, on the values that parsed.

    kind = InputKind("site", "the site file", SITE)
    site = kind.parse_text(text)          # the model, or InputInvalid with every problem

The same table prints its reference (:func:`reference`), which docs/lbctl.md, docs/hypervisors.md
and `lbctl schema` carry: what is documented is what is checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from . import yamldoc
from .problems import FieldPath, InputInvalid, Problem
from .yamldoc import Document

T = TypeVar("T")


class Invalid(Exception):
    """A value is wrong. The message is the reason; the engine adds the field path and the line."""


class NoDefault(Exception):
    """Raised by a default function: the value has no default after all (it is missing)."""


class _InvalidValue:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _InvalidValue()  # what a type returns after it reported its problems itself


def describe(value: object) -> str:
    """How an input value reads in a message: its text, and its kind when that is the surprise."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a true/false value)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return repr(shown)
    return f"{value!r} ({type(value).__name__})"


# --- where a value is, while it is parsed ----------------------------------------------------------


@dataclass
class Scope:
    """The values parsed so far at one level, and the level around it (for defaults and checks)."""

    values: dict[str, Any]
    key: str | int | None = None  # this level's key in the level around it
    outer: Scope | None = None

    @property
    def parent(self) -> Scope:
        """The level around this one; LookupError at the top (a default then has no value)."""
        if self.outer is None:
            raise LookupError("no enclosing level")
        return self.outer

    @property
    def index(self) -> int:
        """This level's position in its list (0, 1, ...); LookupError if it is not a list item."""
        if not isinstance(self.key, int):
            raise LookupError("not a list item")
        return self.key

    @property
    def root(self) -> Scope:
        scope = self
        while scope.outer is not None:
            scope = scope.outer
        return scope

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


@dataclass
class Report:
    """Collects the problems of one input, each with its line from the document."""

    doc: Document
    problems: list[Problem] = field(default_factory=list)
    context: Mapping[str, Any] = field(default_factory=dict)  # facts from outside the file

    def add(self, path: FieldPath, reason: str) -> None:
        self.problems.append(Problem(path, reason, self.doc.line(path)))


@dataclass
class Cursor:
    """A position in the document being parsed: report problems here or below."""

    report: Report
    path: FieldPath
    scope: Scope | None  # the level this position is in (None above the top level)

    def problem(self, reason: str, *below: str | int) -> None:
        self.report.add(self.path + below, reason)

    def child(self, key: str | int, scope: Scope | None = None) -> Cursor:
        return Cursor(self.report, self.path + (key,), scope or self.scope)

    @property
    def context(self) -> Mapping[str, Any]:
        return self.report.context

    def given(self, *below: str | int) -> bool:
        """The file gives this value (rather than a default filling it in, or nothing)."""
        return self.path + below in self.report.doc.lines

    def problems_below(self) -> int:
        n = len(self.path)
        return sum(1 for p in self.report.problems if p.path[:n] == self.path)


# --- types ------------------------------------------------------------------------------------


class Type(Generic[T]):
    """A value type: parse() returns the value or raises Invalid(reason).

    `kind` is the value column of the reference ("1 … 65535", "IP address").
    """

    kind: str = "value"

    def parse(self, value: object, at: Cursor) -> T:
        raise NotImplementedError

    def nested(self) -> Iterator[tuple[str, Table]]:
        """Tables below this type, with the path suffix that reaches them (for the reference)."""
        return iter(())


@dataclass(frozen=True)
class Default:
    """Where an absent value comes from: a function of the scope, described for the docs."""

    compute: Callable[[Scope], Any]
    doc: str


@dataclass(frozen=True)
class Field:
    key: str
    type: Type[Any]
    doc: str
    required: bool = False
    default: Any = None  # a plain value, a Default, or None (no value)

    def default_text(self) -> str:
        if self.required:
            return "required"
        if isinstance(self.default, Default):
            return f"default: {self.default.doc}"
        if self.default is None:
            return "optional"
        if isinstance(self.default, bool):
            return f"default: {str(self.default).lower()}"
        if self.default in ("", {}, ()):
            return "default: none"
        if isinstance(self.default, (tuple, list)):
            return "default: " + (", ".join(map(str, self.default)) or "none")
        return f"default: {self.default}"


Check = Callable[[Scope, Cursor], None]


@dataclass(frozen=True)
class Table(Type[Any]):
    """A mapping with a fixed set of keys; its value is `build(values)` (a dict by default)."""

    fields: tuple[Field, ...]
    title: str = ""
    checks: tuple[Check, ...] = ()
    build: Callable[[Scope], Any] | None = None
    what: str = ""  # how the mapping reads in "must be a mapping of ..."

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "mapping"

    def field(self, key: str) -> Field:
        return next(f for f in self.fields if f.key == key)

    def parse(self, value: object, at: Cursor) -> Any:
        if not isinstance(value, dict):
            keys = self.what or ", ".join(f.key for f in self.fields[:4]) + (", ..." if len(self.fields) > 4 else "")
            raise Invalid(f"must be a mapping of {keys}, not {describe(value)}")
        before = at.problems_below()
        incomplete = False  # a default could not be computed: its source is reported elsewhere
        scope = Scope({}, at.path[-1] if at.path else None, at.scope)
        known = {f.key for f in self.fields}
        for key in value:
            if key not in known:
                at.problem(f"unknown key (expected one of {', '.join(f.key for f in self.fields)})", key)
        for f in self.fields:
            here = at.child(f.key, scope)
            if f.key not in value:
                if f.required:
                    here.problem(f"missing: {f.doc}")
                    continue
                if isinstance(f.default, Default):
                    try:
                        scope.values[f.key] = f.default.compute(scope)
                    except NoDefault as exc:
                        here.problem(f"missing: {exc}" if str(exc) else f"missing: {f.doc}")
                    except (LookupError, AttributeError, TypeError):
                        incomplete = True
                elif f.default is not None:
                    scope.values[f.key] = f.default
                continue
            parsed = parse_value(f.type, value[f.key], here)
            if parsed is INVALID:
                incomplete = True
            else:
                scope.values[f.key] = parsed
        for check in self.checks:
            check(scope, at)
        if incomplete or at.problems_below() > before:
            return INVALID
        return self.build(scope) if self.build else dict(scope.values)

    def nested(self) -> Iterator[tuple[str, Table]]:
        yield "", self


def parse_value(type_: Type[Any], value: object, at: Cursor) -> Any:
    """Parse one value; an Invalid becomes a problem at `at`, and the value INVALID."""
    try:
        return type_.parse(value, at)
    except Invalid as exc:
        at.problem(str(exc))
        return INVALID


@dataclass(frozen=True)
class ListOf(Type[tuple[Any, ...]]):
    """A list of values of one type; `empty` is the reason an empty (or null) list is refused."""

    item: Type[Any]
    empty: str | None = None
    max_items: int | None = None
    item_kind: str = ""
    # Checks across the items (unique names, ...); gets every item, INVALID for those that failed.
    items_check: Callable[[list[Any], Cursor], None] | None = None
    unique: bool = False  # no item may be given twice

    @property
    def kind(self) -> str:  # type: ignore[override]
        return f"list of {self.item_kind or self.item.kind}"

    def parse(self, value: object, at: Cursor) -> tuple[Any, ...]:
        if value is None and self.empty is not None:
            raise Invalid(f"is empty; {self.empty}")
        if not isinstance(value, list):
            raise Invalid(f"must be a list{' of ' + self.item_kind if self.item_kind else ''}, not {describe(value)}")
        if not value and self.empty is not None:
            raise Invalid(f"lists nothing; {self.empty}")
        if self.max_items is not None and len(value) > self.max_items:
            raise Invalid(f"lists {len(value)} items; at most {self.max_items} are allowed")
        items = []
        for index, item in enumerate(value):
            parsed = parse_value(self.item, item, at.child(index))
            items.append(parsed)
        before = at.problems_below()
        if self.unique:
            seen: dict[Any, int] = {}
            for index, item in enumerate(items):
                if item is not INVALID and seen.setdefault(item, index) != index:
                    at.problem(f"lists {item} twice (items {seen[item]} and {index})", index)
        if self.items_check is not None:
            self.items_check(items, at)
        if any(i is INVALID for i in items) or at.problems_below() > before:
            return INVALID
        return tuple(items)

    def nested(self) -> Iterator[tuple[str, Table]]:
        for suffix, table in self.item.nested():
            yield "[N]" + suffix, table


@dataclass(frozen=True)
class MapOf(Type[dict[str, Any]]):
    """A mapping of names (checked by `key`) to values of one type."""

    key: Type[str]
    value: Type[Any]
    empty: str | None = None
    key_doc: str = "NAME"
    what: str = ""  # how it reads in "must be a mapping of ..." ("service names to settings")

    @property
    def kind(self) -> str:  # type: ignore[override]
        return f"mapping of {self.what or self.key_doc + ' to ' + self.value.kind}"

    def parse(self, value: object, at: Cursor) -> dict[str, Any]:
        if value is None and self.empty is not None:
            raise Invalid(f"is empty; {self.empty}")
        if not isinstance(value, dict):
            what = self.what or f"{self.key.kind} to {self.value.kind}"
            raise Invalid(f"must be a mapping of {what}, not {describe(value)}")
        if not value and self.empty is not None:
            raise Invalid(f"lists nothing; {self.empty}")
        result: dict[str, Any] = {}
        bad = False
        for key, item in value.items():
            here = at.child(key)
            name = parse_value(self.key, key, here)
            if name is INVALID:
                bad = True
                continue
            parsed = parse_value(self.value, item, here)
            bad = bad or parsed is INVALID
            result[name] = parsed
        return INVALID if bad else result

    def nested(self) -> Iterator[tuple[str, Table]]:
        for suffix, table in self.value.nested():
            yield f".<{self.key_doc}>" + suffix, table


# --- inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputKind(Generic[T]):
    """One kind of input file: its name, what it is, and its table."""

    name: str
    summary: str
    table: Table

    def parse_document(self, doc: Document, context: Mapping[str, Any] | None = None) -> T:
        """The model of a parsed document, or InputInvalid with every problem."""
        report = Report(doc, list(doc.problems), context or {})
        if doc.data is None:
            required = [f.key for f in self.table.fields if f.required]
            needs = (
                ", ".join(required[:-1]) + (" and " if len(required) > 1 else "") + required[-1]
                if required
                else "its keys"
            )
            report.add((), f"the file is empty; {self.summary} needs at least {needs}")
            raise InputInvalid(report.problems)
        value = parse_value(self.table, doc.data, Cursor(report, (), None))
        if report.problems or value is INVALID:
            raise InputInvalid(report.problems)
        return value

    def parse_text(self, text: str, context: Mapping[str, Any] | None = None) -> T:
        try:
            doc = yamldoc.parse(text)
        except yamldoc.YAMLInputError as exc:
            raise InputInvalid([exc.problem]) from None
        return self.parse_document(doc, context)

    def parse_bytes(self, raw: bytes, context: Mapping[str, Any] | None = None) -> T:
        if len(raw) > yamldoc.MAX_BYTES:
            raise InputInvalid(
                [Problem((), f"the file is larger than {yamldoc.MAX_BYTES // 1024} KiB; an input file is a few KB")]
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise InputInvalid([Problem((), "not UTF-8 text", line)]) from None
        return self.parse_text(text, context)

    def read(self, path: str, context: Mapping[str, Any] | None = None) -> T:
        """Read and parse a file; an unreadable file is one problem naming it."""
        try:
            with open(path, "rb") as f:
                raw = f.read(yamldoc.MAX_BYTES + 1)
        except OSError as exc:
            raise InputInvalid([Problem((), f"{path}: cannot read: {exc.strerror}")]) from None
        return self.parse_bytes(raw, context)

    def reference(self, title_level: int = 4) -> str:
        return reference(self.table, title_level)


# --- the reference ----------------------------------------------------------------------------


def _rows(table: Table, prefix: str) -> Iterator[tuple[str, Field]]:
    """Fields with their dotted key; nested tables (not lists or maps of them) are flattened."""
    for f in table.fields:
        if isinstance(f.type, Table):
            yield from _rows(f.type, f"{prefix}{f.key}.")
        else:
            yield f"{prefix}{f.key}", f


def _sections(table: Table, path: str) -> Iterator[tuple[str, Table]]:
    yield path, table
    for f in table.fields:
        if isinstance(f.type, Table):
            for sub_path, sub in _sections(f.type, f"{path}{f.key}."):
                if sub is not f.type:
                    yield sub_path, sub
        elif not isinstance(f.type, Table):
            for suffix, sub in f.type.nested():
                yield from _sections(sub, f"{path}{f.key}{suffix}.")


def reference(table: Table, title_level: int = 4) -> str:
    """The Markdown reference of a table and the tables below it."""
    lines: list[str] = []
    for path, section in _sections(table, ""):
        title = section.title or (f"`{path.rstrip('.')}`" if path else "Top level")
        lines += [
            f"{'#' * title_level} {title}",
            "",
            "| key | value | required / default | meaning |",
            "|---|---|---|---|",
        ]
        for key, f in _rows(section, ""):
            lines.append(f"| `{key}` | {f.type.kind} | {f.default_text()} | {f.doc} |")
        lines.append("")
    return "\n".join(lines)
