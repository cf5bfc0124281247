"""Service presets: data files in presets/<name>.yaml that say which virtual services a kind of
site has and how each one is configured by default (port, persistence, check, timing).

A preset is part of the appliance, not of the site: a broken preset is a bug, reported as
PresetError with the file and field, never blamed on the site file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .checks import CHECKS
from .paths import PRESETS_DIR

PROTOCOLS = ("dicom", "sql", "ldap")
BALANCE_ALGORITHMS = ("leastconn", "roundrobin", "source")
TIMING_KEYS = ("check_interval_seconds", "check_timeout_seconds", "rise", "fall", "idle_timeout_minutes")


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


def available_presets(directory: Path = PRESETS_DIR) -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in directory.glob("*.yaml")))


def load_preset(name: str, directory: Path = PRESETS_DIR) -> Preset:
    path = directory / f"{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PresetError(f"{path}: {exc}") from None
    where = str(path)
    if not isinstance(data, dict) or data.get("preset") != name:
        raise PresetError(f"{where}: must be a mapping with 'preset: {name}'")
    defaults = data.get("defaults", {})
    services = data.get("services")
    if not isinstance(defaults, dict) or not isinstance(services, dict) or not services:
        raise PresetError(f"{where}: needs a 'defaults' mapping and a non-empty 'services' mapping")
    parsed = tuple(_service(where, svc_name, {**defaults, **(fields or {})})
                   for svc_name, fields in services.items())
    return Preset(name=name, title=str(data.get("title", name)), source=str(data.get("source", "")),
                  services=parsed)


def _service(where: str, name: str, fields: dict) -> ServiceDefaults:
    def need(key: str, kind: type, choices: tuple | None = None) -> object:
        value = fields.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise PresetError(f"{where}: services.{name}.{key}: must be {kind.__name__}, not {value!r}")
        if choices is not None and value not in choices:
            raise PresetError(f"{where}: services.{name}.{key}: {value!r} is not one of {', '.join(choices)}")
        return value

    known = {"summary", "port", "protocol", "tls", "persistence_minutes", "check", "balance", *TIMING_KEYS}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise PresetError(f"{where}: services.{name}: unknown keys {', '.join(unknown)}")
    service = ServiceDefaults(
        name=name, summary=str(need("summary", str)), port=int(need("port", int)),
        protocol=str(need("protocol", str, PROTOCOLS)), tls=bool(need("tls", bool)),
        persistence_minutes=int(need("persistence_minutes", int)),
        check=str(need("check", str, tuple(CHECKS))), balance=str(need("balance", str, BALANCE_ALGORITHMS)),
        **{key: int(need(key, int)) for key in TIMING_KEYS})
    applies = CHECKS[service.check].applies_to
    if applies is not None and service.protocol not in applies:
        raise PresetError(f"{where}: services.{name}.check: {service.check} does not apply to {service.protocol}")
    return service
