"""The input engine: how YAML is read (one reading of every scalar, lines, merges, duplicates,
bounds) and how tables report problems. Site-specific rules are in test_validate.py."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from lbctl.inputs import Default, Field, InputInvalid, InputKind, ListOf, MapOf, Table
from lbctl.inputs.problems import Problem, format_path, one_line
from lbctl.inputs.types import Boolean, Integer, Text
from lbctl.inputs.yamldoc import MAX_BYTES, MAX_DEPTH, MAX_VALUES, Ambiguous, YAMLInputError, parse


def value(text: str) -> object:
    return parse(f"a: {text}\n").data["a"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("104", 104),
        ("-7", -7),
        ("0", 0),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("true", True),
        ("False", False),
        ("~", None),
        ("null", None),
        ("", None),
        ("'0104'", "0104"),
        ('"yes"', "yes"),
        ("pacs", "pacs"),
        ("!!str 104", "104"),
        ("!!int 104", 104),
    ],
)
def test_scalars_are_read_by_the_yaml_1_2_core_schema(text: str, expected: object) -> None:
    got = value(text)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    "text, meaning",
    [
        ("0104", "the octal number 68"),
        ("010", "the octal number 8"),
        ("09", "text"),
        ("1:44", "the base-60 number 104"),
        ("1_04", "104"),
        ("0x68", "104"),
        ("0o150", "104"),
        ("yes", "a boolean in YAML 1.1"),
        ("Off", "a boolean in YAML 1.1"),
    ],
)
def test_yaml_1_1_numbers_and_booleans_stay_text_with_a_reason(text: str, meaning: str) -> None:
    got = value(text)
    assert isinstance(got, Ambiguous) and got == text
    assert meaning in got.reason


def test_merge_keys_let_the_mappings_own_keys_win() -> None:
    doc = parse("base: &b {vip: 1, port: 2}\ns:\n  vip: 3\n  <<: *b\n")
    assert doc.data["s"] == {"vip": 3, "port": 2}
    assert doc.problems == []
    assert doc.line(("s", "vip")) == 3
    assert doc.line(("s", "port")) == 1  # where the merged value is defined


def test_several_merges_the_first_wins() -> None:
    doc = parse("a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc:\n  <<: [*a, *b]\n")
    assert doc.data["c"] == {"x": 1, "y": 2}


def test_a_key_given_twice_is_a_problem_with_both_lines() -> None:
    doc = parse("a: 1\nb: 2\na: 3\n")
    assert [str(p) for p in doc.problems] == ["a: given twice (lines 1 and 3)"]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("a: &a [*a]\n", "recursive alias"),
        ("a: *nothing\n", "names no anchor"),
        ("a: !!python/object:os.system x\n", "tag tag:yaml.org,2002:python/object:os.system is not supported"),
        ("? [1, 2]\n: x\n", "a mapping key must be a plain value"),
        ("a: 1\n---\nb: 2\n", "more than one YAML document"),
        ("a: b\x00\n", "control character U+0000"),
        ("a: b\x85\n", "control character U+0085"),
        ("a: [1, 2\n", "YAML syntax error"),
    ],
)
def test_unreadable_input_is_one_problem_with_a_line(text: str, reason: str) -> None:
    with pytest.raises(YAMLInputError) as err:
        parse(text)
    problem = err.value.problem
    assert reason in problem.reason and problem.line is not None
    assert "\n" not in str(problem)


def bounded(text: str) -> tuple[float, int, str]:
    """Seconds and peak bytes to refuse `text`, and the reason."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        parse(text)
    except YAMLInputError as exc:
        reason = exc.problem.reason
    else:
        reason = ""
    seconds = time.monotonic() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak, reason


def test_an_alias_bomb_is_refused_at_once() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]
    seconds, peak, reason = bounded("\n".join(lines) + "\n")
    assert f"more than {MAX_VALUES} values" in reason
    assert seconds < 1 and peak < 100 * 2**20


def test_deep_nesting_is_refused() -> None:
    seconds, peak, reason = bounded("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert f"nested more than {MAX_DEPTH} levels" in reason
    assert seconds < 1 and peak < 100 * 2**20


def test_a_file_over_the_size_limit_is_refused_unread() -> None:
    seconds, peak, reason = bounded("a: " + "x" * MAX_BYTES + "\n")
    assert "larger than 1024 KiB" in reason
    assert seconds < 1


def test_many_values_under_the_size_limit_are_refused_within_a_second() -> None:
    seconds, peak, reason = bounded("a: [" + "0," * (MAX_BYTES // 2 - 10) + "0]\n")
    assert f"more than {MAX_VALUES} values" in reason
    assert seconds < 1 and peak < 100 * 2**20


# --- tables -------------------------------------------------------------------------------------

POINT = Table(
    (
        Field("x", Integer(0, 10), "x", required=True),
        Field("y", Integer(0, 10), "y", default=Default(lambda s: s["x"], "x")),
        Field("on", Boolean(), "on", default=False),
    )
)
KIND: InputKind[dict] = InputKind(
    "demo",
    "a demo file",
    Table(
        (
            Field("name", Text(r"[a-z]+", "a lower-case name"), "name", required=True),
            Field("points", ListOf(POINT, empty="a demo has points"), "points", required=True),
            Field("tags", MapOf(Text(what="a tag"), Integer(0, 9)), "tags", default={}),
        )
    ),
)


def test_a_table_fills_defaults_from_other_values() -> None:
    data = KIND.parse_text("name: a\npoints: [{x: 3}, {x: 1, y: 2, on: true}]\n")
    assert data["points"] == ({"x": 3, "y": 3, "on": False}, {"x": 1, "y": 2, "on": True})
    assert data["tags"] == {}


def test_every_problem_is_reported_with_its_path_and_line() -> None:
    with pytest.raises(InputInvalid) as err:
        KIND.parse_text("name: A\npoints:\n  - {x: 11}\n  - {x: 0104, z: 1}\ntags: {t: yes}\n")
    assert err.value.lines() == [
        "name: 'A' is not a lower-case name (line 1)",
        "points[0].x: 11 is out of range (0 to 10) (line 3)",
        "points[1].z: unknown key (expected one of x, y, on) (line 4)",
        "points[1].x: 0104 has a leading zero (YAML 1.1 reads it as the octal number 68); "
        "write 104 without the zero (line 4)",
        "tags.t: 'yes' is a boolean in YAML 1.1 and text in YAML 1.2; write true or false (line 5)",
    ]


def test_null_and_empty_lists_are_refused_with_the_reason() -> None:
    for text in ("name: a\npoints:\n", "name: a\npoints: []\n"):
        with pytest.raises(InputInvalid) as err:
            KIND.parse_text(text)
        assert "a demo has points" in err.value.lines()[0]


def test_an_empty_file_names_what_it_needs() -> None:
    with pytest.raises(InputInvalid) as err:
        KIND.parse_text("")
    assert err.value.lines() == ["the file is empty; a demo file needs at least name and points"]


@pytest.mark.parametrize(
    "path, shown",
    [
        (("services", "DICOM-Secure", "servers", 1, "port"), "services.DICOM-Secure.servers[1].port"),
        (("services", 'a"b'), 'services["a\\"b"]'),
        (("services", "x\nerror: y"), 'services["x\nerror: y"]'),
    ],
)
def test_paths_quote_keys_that_are_not_plain_names(path: tuple, shown: str) -> None:
    assert format_path(path) == shown


def test_a_problem_is_always_one_line() -> None:
    problem = Problem(("services", "bad\nerror: forged"), "reason\r\nwith\u2028breaks", 3)
    text = str(problem)
    assert "\n" not in text and "\r" not in text and "\u2028" not in text
    assert text.count("error:") == 1 and text.endswith("(line 3)")
    assert one_line("a\x1bb") == "a\\x1bb"
