"""builder.templates, the one renderer: a typo in a template variable must fail the build rather
than ship an empty field in an OVF or an apt source, and only XML-like outputs are escaped."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from builder import templates


def template(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "templates" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_an_undefined_variable_fails(tmp_path: Path) -> None:
    path = template(tmp_path, "x.sources.j2", "URIs: {{ mirorr }}\n")
    with pytest.raises(jinja2.UndefinedError, match="mirorr"):
        templates.render(path, mirror="http://deb.debian.org/debian")


def test_an_undefined_attribute_fails_too(tmp_path: Path) -> None:
    path = template(tmp_path, "x.txt.j2", "{{ hw.cpus }} {{ hw.memroy }}\n")
    with pytest.raises(jinja2.UndefinedError):
        templates.render(path, hw={"cpus": 2, "memory": 4096})


def test_write_renders_into_new_directories(tmp_path: Path) -> None:
    path = template(tmp_path, "x.conf.j2", "{% if on %}\nname={{ name }}\n{% endif %}\n")
    target = templates.write(path, tmp_path / "out/a/b/x.conf", on=True, name="lb1")
    assert target.read_text() == "name=lb1\n"  # trim_blocks; the trailing newline kept


@pytest.mark.parametrize(
    "name, escaped",
    [
        ("x.ovf.j2", True),
        ("x.xml.j2", True),
        ("x.xml", True),
        ("x.sources.j2", False),
        ("x.ps1.j2", False),
        ("x.json.j2", False),
    ],
)
def test_only_xml_and_ovf_are_escaped(tmp_path: Path, name: str, escaped: bool) -> None:
    path = template(tmp_path, name, "{{ text }}")
    out = templates.render(path, text="PACS <LB> & co")
    assert out == ("PACS &lt;LB&gt; &amp; co" if escaped else "PACS <LB> & co")
