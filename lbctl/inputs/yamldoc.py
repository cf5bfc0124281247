"""Reading an input file: bounded, line-aware YAML with one reading of every value.

Every input the appliance or the build tool reads (the site file, network.yaml, the presets, the
hypervisor profiles, ...) is read here and never with ``yaml.safe_load``, whose defaults surprise:

* PyYAML resolves plain scalars by YAML 1.1: ``0104`` is the octal 68, ``1:44`` the base-60 104,
  ``1_04`` is 104 and ``yes``/``no``/``on``/``off`` are booleans.
* Aliases are expanded without bound (a 636-byte "billion laughs" file grows past 6 GB), nesting
  has no limit (deep files end in RecursionError) and neither has the size.
* Two equal keys silently keep the last; a merge key (``<<``) is flattened into its mapping, so
  the lines of merged values are lost.

This reader takes PyYAML's parser events (libyaml's C parser where available) and composes the
document itself. Its reading of plain scalars is the YAML 1.2 core schema, stricter for numbers
(https://yaml.org/spec/1.2.2/#1032-tag-resolution):

======================  ===========================================================================
null                    empty, ``~``, ``null``, ``Null``, ``NULL``
booleans                ``true``/``false`` (also ``True``, ``TRUE``, ...)
integers                decimal digits with an optional sign, no leading zero
floats                  decimal with a ``.`` or an exponent; ``.inf``, ``.nan``
ambiguous               ``0104``, ``1:44``, ``1_04``, ``0x68``, ``yes``, ``off``, ...: text that
                        YAML 1.1 would read as a number or a boolean. It is kept as its text
                        (an :class:`Ambiguous` string); a number or boolean field refuses it and
                        says how YAML 1.1 would have read it.
anything else           text. Quoted scalars are always text.
======================  ===========================================================================

Limits, each refused with a line: :data:`MAX_BYTES` of input, :data:`MAX_DEPTH` levels of nesting,
:data:`MAX_VALUES` values counted with every alias expanded. A recursive alias, a tag other than
the standard ones, a mapping key that is not a scalar, more than one document and control
characters are refused too. Two equal keys are a problem (reported with both lines); a merge
key's values give way to the mapping's own keys, as YAML's merge type says
(https://yaml.org/type/merge.html).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .problems import FieldPath, Problem

if TYPE_CHECKING:
    pass

MAX_BYTES = 1 << 20  # 1 MiB: a site file is a few KB
MAX_DEPTH = 32  # levels of nesting (a site file needs 6)
MAX_VALUES = 20_000  # keys and values, aliases counted expanded (a site of 200 real servers has about 2500)


def _yaml() -> Any:
    """PyYAML, imported on first use: the boot path imports this module without reading YAML."""
    import yaml

    return yaml


def _loader_class() -> Any:
    # libyaml's parser when PyYAML was built with it (Debian's python3-yaml and PyPI's wheels
    # are): it reports marks too, and is about ten times faster than the pure-Python one.
    yaml = _yaml()
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


NULLS = frozenset({"", "~", "null", "Null", "NULL"})
TRUES = frozenset({"true", "True", "TRUE"})
FALSES = frozenset({"false", "False", "FALSE"})
DECIMAL = re.compile(r"[-+]?(0|[1-9][0-9]*)")
FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")
LEADING_ZERO = re.compile(r"[-+]?0[0-9_]+")
UNDERSCORE = re.compile(r"[-+]?[0-9][0-9_]*_[0-9_]*")
SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+")
PREFIXED = re.compile(r"[-+]?0([xX][0-9a-fA-F_]+|[oO][0-7_]+|[bB][01_]+)")
YAML11_BOOLS = frozenset(
    w for word in ("yes", "no", "on", "off", "y", "n") for w in (word, word.capitalize(), word.upper())
)
# Characters a text input may not hold (YAML's printable set, without NEL): C0 controls other than
# tab, LF and CR, DEL, C1 controls, surrogates, and the non-characters U+FFFE/U+FFFF.
FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
STANDARD_TAGS = {"tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "map", "seq")}


class Ambiguous(str):
    """A plain scalar that YAML 1.1 reads as something other than its text (``0104``, ``yes``).

    It is its text for text fields; number and boolean fields refuse it with :attr:`reason`.
    """

    reason: str

    def __new__(cls, text: str, reason: str) -> Ambiguous:
        self = super().__new__(cls, text)
        self.reason = reason
        return self


class YAMLInputError(Exception):
    """The text is not a readable input: one problem, with its line where there is one."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


@dataclass
class Document:
    """A parsed input: plain Python data, the line of every value, and the problems YAML hides."""

    data: Any
    lines: dict[FieldPath, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def line(self, path: FieldPath) -> int | None:
        """The line of the value at `path`, else of the nearest enclosing value that has one."""
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path)

    @classmethod
    def from_data(cls, data: Any) -> Document:
        """Data from elsewhere (JSON, the environment): no lines."""
        return cls(data)


def yaml11_reading(text: str) -> str | None:
    """Why a plain scalar is ambiguous (how YAML 1.1 reads it), or None if it is not."""
    body = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if PREFIXED.fullmatch(text):
        base = {"x": 16, "o": 8, "b": 2}[body[1].lower()]
        value = sign * int(body[2:].replace("_", "") or "0", base)
        return f"{text} is not a decimal integer (YAML 1.1 reads it as {value}); write integers in decimal"
    if LEADING_ZERO.fullmatch(text):
        digits = body.replace("_", "")
        if set(digits) <= set("01234567"):
            meaning = f"the octal number {sign * int(digits, 8)}"
        else:
            meaning = "text"
        return (
            f"{text} has a leading zero (YAML 1.1 reads it as {meaning}); write {sign * int(digits)} without the zero"
        )
    if SEXAGESIMAL.fullmatch(text):
        value = 0
        for part in body.replace("_", "").split(":"):
            value = value * 60 + int(part)
        return f"{text} is read by YAML 1.1 as the base-60 number {sign * value}; write the number in decimal"
    if UNDERSCORE.fullmatch(text):
        return f"{text} holds '_' (YAML 1.1 reads it as {sign * int(body.replace('_', ''))}); write digits only"
    if text in YAML11_BOOLS:
        return f"{text!r} is a boolean in YAML 1.1 and text in YAML 1.2; write true or false"
    return None


def resolve_plain(text: str) -> Any:
    """The value of a plain (unquoted) scalar without a tag."""
    if text in NULLS:
        return None
    if text in TRUES:
        return True
    if text in FALSES:
        return False
    if DECIMAL.fullmatch(text):
        return int(text)
    if FLOAT.fullmatch(text) and not LEADING_ZERO.fullmatch(text):
        return float(text.replace("inf", "Inf").replace("nan", "NaN").lower())
    reason = yaml11_reading(text)
    return Ambiguous(text, reason) if reason else text


def first_forbidden(text: str) -> tuple[int, str] | None:
    """(line, character) of the first character an input may not hold, or None."""
    match = FORBIDDEN.search(text)
    if match is None:
        return None
    return text.count("\n", 0, match.start()) + 1, match.group()


def parse(text: str) -> Document:
    """Read one YAML document. Raises YAMLInputError for anything that is not a readable input."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YAMLInputError(Problem((), f"the file is larger than {MAX_BYTES // 1024} KiB; an input file is a few KB"))
    text = text.removeprefix("\ufeff")
    bad = first_forbidden(text)
    if bad is not None:
        line, char = bad
        raise YAMLInputError(Problem((), f"control character U+{ord(char):04X} is not allowed in an input file", line))
    yaml = _yaml()
    loader = _loader_class()(text)
    try:
        return _Composer(loader).document()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = exc.problem or str(exc)
        if "nesting depth" in reason:  # libyaml's own limit, met before ours in flow collections
            raise YAMLInputError(
                Problem((), f"the values are nested more than {MAX_DEPTH} levels deep", mark.line + 1 if mark else None)
            ) from None
        context = f" ({exc.context})" if exc.context else ""
        raise YAMLInputError(
            Problem((), f"YAML syntax error: {reason}{context}", mark.line + 1 if mark else None)
        ) from None
    except yaml.YAMLError as exc:
        raise YAMLInputError(Problem((), f"YAML syntax error: {' '.join(str(exc).split())}")) from None
    finally:
        loader.dispose()


@dataclass
class _Anchored:
    value: Any
    lines: dict[FieldPath, int]  # relative to the anchored value
    size: int  # values below it, itself included


class _Composer:
    """Builds plain data from parser events, with lines, limits, merges and duplicate keys."""

    def __init__(self, loader: Any):
        self.loader = loader
        self.yaml = _yaml()
        self.anchors: dict[str, _Anchored] = {}
        self.open_anchors: set[str] = set()
        self.values = 0
        self.doc = Document(None)

    def fail(self, event: Any, reason: str) -> None:
        raise YAMLInputError(Problem((), reason, event.start_mark.line + 1))

    def document(self) -> Document:
        loader = self.loader
        loader.get_event()  # StreamStart
        if loader.check_event(self.yaml.StreamEndEvent):
            return self.doc  # an empty file
        loader.get_event()  # DocumentStart
        value, _ = self.node((), 0)
        loader.get_event()  # DocumentEnd
        if not loader.check_event(self.yaml.StreamEndEvent):
            self.fail(loader.get_event(), "the file holds more than one YAML document")
        self.doc.data = value
        return self.doc

    def count(self, event: Any, n: int = 1) -> None:
        self.values += n
        if self.values > MAX_VALUES:
            self.fail(event, f"the file holds more than {MAX_VALUES} values (aliases counted expanded)")

    def node(self, path: FieldPath, depth: int) -> tuple[Any, int]:
        """Compose the next node at `path`; returns (value, number of values in it)."""
        event = self.loader.get_event()
        line = event.start_mark.line + 1
        if isinstance(event, self.yaml.AliasEvent):
            name = event.anchor
            if name in self.open_anchors:
                self.fail(event, f"the alias *{name} refers to the value that contains it (a recursive alias)")
            if name not in self.anchors:
                self.fail(event, f"the alias *{name} names no anchor defined before it")
            anchored = self.anchors[name]
            self.count(event, anchored.size)
            self.doc.lines[path] = line
            for relative, relative_line in anchored.lines.items():
                if relative:
                    self.doc.lines[path + relative] = relative_line
            return anchored.value, anchored.size
        self.count(event)
        if depth > MAX_DEPTH:
            self.fail(event, f"the values are nested more than {MAX_DEPTH} levels deep")
        tag = event.tag
        if tag not in (None, "!") and tag not in STANDARD_TAGS:
            self.fail(event, f"the tag {tag} is not supported here")
        anchor = event.anchor
        first_line = len(self.doc.lines)
        if anchor is not None:
            self.open_anchors.add(anchor)
        self.doc.lines[path] = line
        if isinstance(event, self.yaml.ScalarEvent):
            value, size = self.scalar(event, tag), 1
        elif isinstance(event, self.yaml.SequenceStartEvent):
            if tag and tag.endswith(":map"):
                self.fail(event, "a list tagged as a mapping")
            value, size = self.sequence(path, depth)
        else:
            if tag and tag.endswith(":seq"):
                self.fail(event, "a mapping tagged as a list")
            value, size = self.mapping(event, path, depth)
        if anchor is not None:
            self.open_anchors.discard(anchor)
            below = {p[len(path) :]: n for p, n in list(self.doc.lines.items())[first_line:] if p[: len(path)] == path}
            below[()] = line
            self.anchors[anchor] = _Anchored(value, below, size)
        return value, size

    def scalar(self, event: Any, tag: str | None) -> Any:
        text = event.value
        plain = event.style is None or event.style == ""
        if tag in (None, "!"):
            return resolve_plain(text) if plain and tag is None else text
        kind = tag.rsplit(":", 1)[1]
        if kind == "str":
            return text
        value = resolve_plain(text)
        wanted = {"int": int, "float": float, "bool": bool, "null": type(None)}[kind]
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, wanted) or (kind == "int" and isinstance(value, bool)):
            self.fail(event, f"{text!r} is not a valid !!{kind}")
        return value

    def sequence(self, path: FieldPath, depth: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        size = 1
        while not self.loader.check_event(self.yaml.SequenceEndEvent):
            value, n = self.node(path + (len(items),), depth + 1)
            items.append(value)
            size += n
        self.loader.get_event()
        return items, size

    def mapping(self, start: Any, path: FieldPath, depth: int) -> tuple[dict[str, Any], int]:
        own: dict[str, Any] = {}
        key_lines: dict[str, int] = {}
        merges: list[tuple[Any, dict[str, Any]]] = []
        size = 1
        while not self.loader.check_event(self.yaml.MappingEndEvent):
            key_event = self.loader.peek_event()
            if not isinstance(key_event, self.yaml.ScalarEvent):
                self.fail(key_event, "a mapping key must be a plain value, not a list or a mapping")
            self.loader.get_event()
            self.count(key_event)
            key, line = key_event.value, key_event.start_mark.line + 1
            if key == "<<" and (key_event.style in (None, "")) and key_event.tag is None:
                merges += self.merge_sources(path, depth)
                continue
            value, n = self.node(path + (key,), depth + 1)
            size += n + 1
            if key in own:
                self.doc.problems.append(
                    Problem(path + (key,), f"given twice (lines {key_lines[key]} and {line})", line, show_line=False)
                )
                continue
            own[key] = value
            key_lines[key] = line
        self.loader.get_event()
        if not merges:
            return own, size
        # YAML's merge: the mapping's own keys win; of several merged mappings, the first wins.
        merged: dict[str, Any] = {}
        for source_event, source in merges:
            for key, value in source.items():
                if key not in merged and key not in own:
                    merged[key] = value
                    self.doc.lines.setdefault(path + (key,), source_event.start_mark.line + 1)
        return {**merged, **own}, size

    def merge_sources(self, path: FieldPath, depth: int) -> list[tuple[Any, dict[str, Any]]]:
        """The mappings a merge key names: one alias or mapping, or a list of them."""
        event = self.loader.peek_event()
        if isinstance(event, self.yaml.SequenceStartEvent):
            self.loader.get_event()
            sources = []
            while not self.loader.check_event(self.yaml.SequenceEndEvent):
                sources.append(self.merge_source(path, depth + 1))
            self.loader.get_event()
            return sources
        return [self.merge_source(path, depth)]

    def merge_source(self, path: FieldPath, depth: int) -> tuple[Any, dict[str, Any]]:
        event = self.loader.peek_event()
        # Composed at a scratch path: the merged keys get their lines where they are defined.
        saved = dict(self.doc.lines)
        value, _ = self.node(path + ("<<",), depth + 1)
        self.doc.lines = saved
        if not isinstance(value, dict):
            self.fail(event, "a merge key (<<) must name a mapping or a list of mappings")
        if isinstance(event, self.yaml.AliasEvent):
            for relative, line in self.anchors[event.anchor].lines.items():
                if len(relative) >= 1:
                    self.doc.lines.setdefault(path + relative, line)
        return event, value
