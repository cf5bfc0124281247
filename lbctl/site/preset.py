"""Service presets: data files in presets/<name>.yaml that say which virtual services a kind of
site has and how each one is configured by default (port, persistence, check, timing).

A preset is part of the appliance, not of the site: a broken preset is a bug, reported as
PresetError with the file, the field and the line, never blamed on the site file. It is read by
the same engine as every other input (the PRESET table below).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

from ..appliance import PRESETS_DIR
from ..inputs import Cursor, Default, Field, InputInvalid, InputKind, MapOf, NoDefault, Scope, Table
from ..inputs.types import Boolean, Choice, Text
from .fields import SERVICE_SETTINGS, SETTING_KEYS
from .healthchecks import CHECKS

PROTOCOLS = ("dicom", "sql", "ldap")
BALANCE_ALGORITHMS = ("leastconn", "roundrobin", "source")
SERVICE_NAME = Text(r"[A-Za-z][A-Za-z0-9_-]{0,31}", "a service name (letters, digits, '_' and '-')", 32)


class PresetError(Exception):
    """A preset file is missing or malformed (a defect of the appliance)."""


@dataclass(frozen=True)
class ServiceDefaults:
    name: str
    summary: str
    port: int
    protocol: str
    tls: bool
    persistence_minutes: int
    check: str
    balance: str
    check_interval_seconds: int
    check_timeout_seconds: int
    rise: int
    fall: int
    max_connections: int
    idle_timeout_minutes: int


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    source: str
    services: tuple[ServiceDefaults, ...]

    def service(self, name: str) -> ServiceDefaults | None:
        return next((s for s in self.services if s.name == name), None)

    @property
    def service_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services)


def _from_defaults(key: str) -> Default:
    def compute(scope: Scope) -> object:
        defaults = scope.root.get("defaults") or {}
        if key not in defaults:
            raise NoDefault("given neither here nor in the preset's defaults")
        return defaults[key]

    return Default(compute, "the preset's `defaults`")


# Preset-only keys of a service, then the settings a site may override.
SERVICE_OWN_FIELDS: tuple[Field, ...] = (
    Field(
        "summary",
        Text(what="one line of text"),
        "One line for 'lbctl status', the docs and the generated configuration.",
        required=True,
    ),
    Field(
        "protocol",
        Choice(PROTOCOLS, "a protocol"),
        "Which protocol checks (dicom-echo, mssql, ldap) apply.",
        required=True,
    ),
    Field("tls", Boolean(), "The protocol runs inside TLS (passed through; protocol checks use TLS).", required=True),
    Field(
        "balance",
        Choice(BALANCE_ALGORITHMS, "a balance algorithm"),
        "How new clients are spread.",
        default=_from_defaults("balance"),
    ),
)
PRESET_SETTINGS = tuple(dataclasses.replace(f, default=_from_defaults(f.key)) for f in SERVICE_SETTINGS)


def _check_applies(scope: Scope, at: Cursor) -> None:
    check, protocol = scope.get("check"), scope.get("protocol")
    if check is None or protocol is None:
        return
    applies = CHECKS[check].applies_to
    if applies is not None and protocol not in applies:
        at.problem(f"{check} does not apply to {protocol}", "check")


PRESET_SERVICE = Table(
    SERVICE_OWN_FIELDS + PRESET_SETTINGS,
    title="Preset service (`services.<NAME>`)",
    checks=(_check_applies,),
    build=lambda s: ServiceDefaults(name=str(s.key), **s.values),
)
PRESET_DEFAULTS = Table(
    tuple(
        dataclasses.replace(f, required=False, default=None)
        for f in SERVICE_OWN_FIELDS + SERVICE_SETTINGS
        if f.key in ("balance",) + SETTING_KEYS
    ),
    title="Preset `defaults`",
)
PRESET = Table(
    (
        Field("preset", SERVICE_NAME, "The preset's name; must be the file's name.", required=True),
        Field("title", Text(what="one line of text"), "What kind of site it is.", required=True),
        Field("source", Text(what="one line of text", max_length=300), "Where its facts come from.", default=""),
        Field("defaults", PRESET_DEFAULTS, "Settings every service below has unless it says otherwise.", default={}),
        Field(
            "services",
            MapOf(SERVICE_NAME, PRESET_SERVICE, empty="a preset has at least one service"),
            "The virtual services, in the order lbctl lists them.",
            required=True,
        ),
    ),
    build=lambda s: Preset(
        name=s["preset"], title=s["title"], source=s["source"], services=tuple(s["services"].values())
    ),
)
PRESET_KIND: InputKind[Preset] = InputKind("preset", "a service preset", PRESET)


def available_presets(directory: Path = PRESETS_DIR) -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in directory.glob("*.yaml")))


@functools.cache
def load_preset(name: str, directory: Path = PRESETS_DIR) -> Preset:
    """The preset `name`; PresetError naming the file, field and line if it is broken."""
    path = directory / f"{name}.yaml"
    try:
        preset = PRESET_KIND.read(str(path))
    except InputInvalid as exc:
        raise PresetError("; ".join(f"{path}: {line}" for line in exc.lines())) from None
    if preset.name != name:
        raise PresetError(f"{path}: preset: {preset.name!r} must be the file's name, {name!r}")
    return preset
