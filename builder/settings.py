"""Build settings: one declarative table drives the environment, the defaults and the docs.

Every setting can be given in the environment (or as 'make image NAME=value'). `lbimage settings`
prints this table, and the README's table is the same list.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import ROOT


class SettingError(ValueError):
    """A setting has a value that cannot work; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    env: str
    default: Callable[[], str]
    help: str
    check: Callable[[str], str | None] = lambda value: None   # returns a reason when invalid

    def value(self) -> str:
        raw = os.environ.get(self.env)
        value = raw if raw not in (None, "") else self.default()
        reason = self.check(value)
        if reason:
            raise SettingError(f"{self.env}={value!r}: {reason}")
        return value


def _git_epoch() -> str:
    result = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "1767225600"


def _url(value: str) -> str | None:
    return None if re.fullmatch(r"(https?|file)://\S+", value) else "must be an http(s):// or file:// URL"


def _snapshot(value: str) -> str | None:
    if value and not re.fullmatch(r"\d{8}T\d{6}Z", value):
        return "must look like 20251120T000000Z (a snapshot.debian.org timestamp)"
    return None


def _epoch(value: str) -> str | None:
    return None if value.isdigit() else "must be seconds since 1970 (an integer)"


SETTINGS: dict[str, Setting] = {s.env: s for s in (
    Setting("LB_MIRROR", lambda: "http://deb.debian.org/debian",
            "Debian mirror for the image's packages", _url),
    Setting("LB_SECURITY_MIRROR", lambda: "http://deb.debian.org/debian-security",
            "Debian security mirror", _url),
    Setting("LB_SNAPSHOT", lambda: "",
            "pin packages to a snapshot.debian.org date (e.g. 20251120T000000Z); overrides the mirrors",
            _snapshot),
    Setting("LB_CACHE_DIR", lambda: "/var/cache/lbimage",
            "mkosi's package cache and incremental cache (kept outside the checkout)"),
    Setting("LB_BUILD_DIR", lambda: str(ROOT / "build"), "intermediate outputs (the raw image)"),
    Setting("LB_DIST_DIR", lambda: str(ROOT / "dist"), "finished artifacts and manifest.json"),
    Setting("SOURCE_DATE_EPOCH", _git_epoch,
            "timestamp for reproducible builds (default: the last commit's time)", _epoch),
)}


def get(env: str) -> str:
    return SETTINGS[env].value()


def path(env: str) -> Path:
    return Path(get(env))


def apt_mirrors() -> tuple[str, str]:
    """(main, security) mirror URLs, with a pinned snapshot taking precedence."""
    snapshot = get("LB_SNAPSHOT")
    if snapshot:
        return (f"http://snapshot.debian.org/archive/debian/{snapshot}/",
                f"http://snapshot.debian.org/archive/debian-security/{snapshot}/")
    return get("LB_MIRROR"), get("LB_SECURITY_MIRROR")
