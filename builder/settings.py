"""Build settings: one declarative table drives the environment, the defaults and the docs.

Every setting can be given in the environment (or as 'make image NAME=value'). `lbimage settings`
prints this table, and the README's table is the same list.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lbctl.inputs import INVALID, Cursor, Default, Field, Scope, Table, engine
from lbctl.inputs.types import Text
from lbctl.inputs.yamldoc import Document
from lbctl.update.archive import VERSION as UPDATE_VERSION

from . import ROOT


class SettingError(ValueError):
    """A setting has a value that cannot work; the message names the variable."""


def _git_epoch(_: Scope) -> str:
    result = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "1767225600"


def _package_version() -> str:
    from . import package_version

    return package_version()


URL = Text(r"(https?|file)://\S+", "an http(s):// or file:// URL", 2000)
PATH = Text(r"[^\0]+", "a path", 4096)
SNAPSHOT = Text(r"\d{8}T\d{6}Z", "like 20251120T000000Z (a snapshot.debian.org timestamp)")
EPOCH = Text(r"\d+", "seconds since 1970 (an integer)")
VERSION = UPDATE_VERSION  # the versions an update archive compares

# One row per setting: the environment variable, its type, what it is and its default. The
# README's table of build settings is this one (`lbimage settings` prints it with the values).
SETTINGS = Table(
    (
        Field("LB_MIRROR", URL, "Debian mirror for the image's packages", default="http://deb.debian.org/debian"),
        Field("LB_SECURITY_MIRROR", URL, "Debian security mirror", default="http://deb.debian.org/debian-security"),
        Field(
            "LB_SNAPSHOT",
            SNAPSHOT,
            "pin packages to a snapshot.debian.org date (e.g. 20251120T000000Z); overrides the mirrors",
            default="",
        ),
        Field(
            "LB_CACHE_DIR",
            PATH,
            "mkosi's package cache and incremental cache (kept outside the checkout)",
            default="/var/cache/lbimage",
        ),
        Field(
            "LB_BUILD_DIR",
            PATH,
            "intermediate outputs (the raw image)",
            default=Default(lambda _: str(ROOT / "build"), "build/"),
        ),
        Field(
            "LB_DIST_DIR",
            PATH,
            "finished artifacts and manifest.json",
            default=Default(lambda _: str(ROOT / "dist"), "dist/"),
        ),
        Field(
            "LB_VERSION",
            VERSION,
            "the version to build (tests and release scripts build the next one from the same tree)",
            default=Default(lambda _: _package_version(), "pyproject.toml's"),
        ),
        Field(
            "LB_KEY_DIR",
            PATH,
            "release keys (release.key/.pub, next.key/.pub); a development pair is made here if none",
            default="/var/lib/lbimage/keys",
        ),
        Field(
            "LB_MIN_VERSION",
            VERSION,
            "the oldest version an update archive may be applied to",
            default="0.1.0",
        ),
        Field(
            "SOURCE_DATE_EPOCH",
            EPOCH,
            "timestamp for reproducible builds",
            default=Default(_git_epoch, "the last commit's time"),
        ),
    ),
    title="Build settings",
)
FIELDS = {f.key: f for f in SETTINGS.fields}


def get(env: str) -> str:
    """The value of a setting: the environment's (if set and not empty), else its default.

    Raises SettingError naming the variable, its value and the reason.
    """
    f = FIELDS[env]
    raw = os.environ.get(env)
    if raw in (None, ""):
        default = f.default
        return str(default.compute(Scope({})) if isinstance(default, Default) else default)
    report = engine.Report(Document.from_data({env: raw}))
    value = engine.parse_value(f.type, raw, Cursor(report, (env,), None))
    if value is INVALID:
        raise SettingError(f"{env}={raw!r}: {report.problems[0].reason}")
    return str(value)


def path(env: str) -> Path:
    return Path(get(env))


def apt_mirrors() -> tuple[str, str]:
    """(main, security) mirror URLs, with a pinned snapshot taking precedence."""
    snapshot = get("LB_SNAPSHOT")
    if snapshot:
        return (
            f"http://snapshot.debian.org/archive/debian/{snapshot}/",
            f"http://snapshot.debian.org/archive/debian-security/{snapshot}/",
        )
    return get("LB_MIRROR"), get("LB_SECURITY_MIRROR")
