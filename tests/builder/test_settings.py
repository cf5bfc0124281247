"""builder.settings: the one table of build settings, their defaults and their checks.

A wrong setting must stop the build with a message that names the variable, before mkosi runs
for minutes and fails somewhere deep inside apt.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from builder import ROOT, settings
from builder.cli import cli
from builder.settings import SettingError


@pytest.mark.parametrize(
    "env, value",
    [
        ("LB_MIRROR", "ftp://x"),
        ("LB_MIRROR", "deb.debian.org/debian"),
        ("LB_SECURITY_MIRROR", "http://has a space"),
        ("LB_SNAPSHOT", "2025-11-20"),
        ("LB_SNAPSHOT", "20251120"),
        ("SOURCE_DATE_EPOCH", "abc"),
        ("SOURCE_DATE_EPOCH", "-1"),
    ],
)
def test_an_invalid_value_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, env: str, value: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingError) as exc:
        settings.get(env)
    assert str(exc.value).startswith(f"{env}={value!r}: "), str(exc.value)


@pytest.mark.parametrize(
    "env, value",
    [
        ("LB_MIRROR", "https://mirror.example.org/debian"),
        ("LB_MIRROR", "file:///srv/mirror/debian"),
        ("LB_SECURITY_MIRROR", "http://10.0.0.1:3142/debian-security"),
        ("LB_SNAPSHOT", "20251120T000000Z"),
        ("SOURCE_DATE_EPOCH", "1767225600"),
        ("LB_CACHE_DIR", "/srv/cache"),
    ],
)
def test_a_valid_value_is_returned_as_given(monkeypatch: pytest.MonkeyPatch, env: str, value: str) -> None:
    monkeypatch.setenv(env, value)
    assert settings.get(env) == value


@pytest.mark.parametrize("empty", [False, True])
def test_unset_or_empty_means_the_default(monkeypatch: pytest.MonkeyPatch, empty: bool) -> None:
    """'make image LB_MIRROR=' passes an empty string: that must mean the default, not ''."""
    if empty:
        for env in settings.FIELDS:
            monkeypatch.setenv(env, "")
    assert settings.get("LB_MIRROR") == "http://deb.debian.org/debian"
    assert settings.get("LB_SECURITY_MIRROR") == "http://deb.debian.org/debian-security"
    assert settings.get("LB_SNAPSHOT") == ""
    assert settings.get("LB_CACHE_DIR") == "/var/cache/lbimage"
    assert settings.path("LB_BUILD_DIR") == ROOT / "build"
    assert settings.path("LB_DIST_DIR") == ROOT / "dist"
    assert settings.get("SOURCE_DATE_EPOCH").isdigit()


def test_source_date_epoch_falls_back_outside_a_git_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A source tarball has no git history; the epoch must still be a valid fixed number."""
    monkeypatch.setattr(settings, "ROOT", tmp_path)
    assert settings.get("SOURCE_DATE_EPOCH") == "1767225600"


def test_mirrors_by_default_and_snapshot_overrides_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LB_MIRROR", "http://mirror.example/debian")
    assert settings.apt_mirrors() == ("http://mirror.example/debian", "http://deb.debian.org/debian-security")
    monkeypatch.setenv("LB_SNAPSHOT", "20251120T000000Z")
    assert settings.apt_mirrors() == (
        "http://snapshot.debian.org/archive/debian/20251120T000000Z/",
        "http://snapshot.debian.org/archive/debian-security/20251120T000000Z/",
    )


def test_lbimage_settings_lists_every_setting_with_its_help() -> None:
    result = CliRunner().invoke(cli, ["settings"])
    assert result.exit_code == 0, result.output
    for env, setting in settings.FIELDS.items():
        assert env in result.output
        assert setting.doc in result.output
    assert "http://deb.debian.org/debian" in result.output


def test_lbimage_settings_shows_an_invalid_value_instead_of_crashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """`lbimage settings` is where one looks when a setting is wrong: it must still print the rest."""
    monkeypatch.setenv("LB_SNAPSHOT", "2025-11-20")
    result = CliRunner().invoke(cli, ["settings"])
    assert result.exit_code == 0, result.output
    assert "INVALID (LB_SNAPSHOT='2025-11-20'" in result.output
    assert "SOURCE_DATE_EPOCH" in result.output
