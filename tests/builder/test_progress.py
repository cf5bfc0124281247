"""builder.progress: step titles, timings and nesting on stderr, also when a step fails."""

from __future__ import annotations

import pytest

from builder import progress


def test_steps_nest_and_report_their_time(capsys: pytest.CaptureFixture[str]) -> None:
    with progress.step("build"):
        progress.say("inside")
        with progress.step("mkosi"):
            pass
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == "==> build" and lines[1] == "  inside" and lines[2] == "  ==> mkosi"
    assert lines[3].startswith("      mkosi: done in ") and lines[3].endswith(" s")
    assert lines[4].startswith("    build: done in ")


def test_a_failed_step_says_so_and_restores_the_indent(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(KeyError):
        with progress.step("package"):
            raise KeyError("x")
    progress.say("after")
    lines = capsys.readouterr().err.splitlines()
    assert lines[1].startswith("    package: failed after ")
    assert lines[2] == "after"
