"""Site files: read the YAML, check every value against the schema and the preset, and build the
model the renderer uses. Every problem found is reported, each with the field path and reason:

    services.DICOM.servers[1].address: '10.0.52.300' is not an IPv4 or IPv6 address (line 12)
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import yaml

from .checks import CHECKS, PING_DEADLINE_SECONDS
from .preset import Preset, PresetError, ServiceDefaults, available_presets, load_preset
from .schema import SERVER_FIELDS, SERVICE_FIELDS, SITE_FIELDS, Field, Invalid, describe

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Path_ = tuple[str | int, ...]       # a field path: keys and list indices


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" + (f" (line {self.line})" if self.line else "")


class SiteInvalid(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Server:
    label: str
    address: IPAddress
    port: int
    weight: int
    id: int


@dataclass(frozen=True)
class Service:
    name: str
    summary: str
    protocol: str
    tls: bool
    balance: str
    vip: IPAddress
    port: int
    interface: str
    persistence_minutes: int
    check: str
    check_interval_seconds: int
    check_timeout_seconds: int
    rise: int
    fall: int
    idle_timeout_minutes: int
    called_ae_title: str | None
    calling_ae_title: str
    servers: tuple[Server, ...]


@dataclass(frozen=True)
class Site:
    preset: Preset
    snat_address: IPAddress | None      # None only for the empty site of 'lbctl init'
    interface: str
    services: tuple[Service, ...] = field(default=())


def empty_site(preset_name: str = "pacs") -> Site:
    """A site without services: what the appliance runs before any site file was applied."""
    return Site(preset=load_preset(preset_name), snat_address=None, interface="eth0", services=())


# --- YAML with line numbers ---------------------------------------------------------------------

def format_path(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


class Document:
    """The parsed YAML plus the line of every value, and problems YAML itself hides (duplicates)."""

    def __init__(self, text: str):
        self.lines: dict[Path_, int] = {}
        self.problems: list[Problem] = []
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            self.data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: Path_) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                line = key_node.start_mark.line + 1
                if key in seen:
                    # PyYAML keeps the last of two equal keys without a word; a site file that
                    # names a service twice must not silently lose one of them.
                    self.problems.append(Problem(format_path(path + (str(key),)),
                                                 f"given twice (lines {seen[key]} and {line})"))
                seen[key] = line
                self._walk(value_node, path + (str(key),))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, path + (index,))

    def line(self, path: Path_) -> int | None:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path)


def yaml_problem(exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    reason = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    text = f"YAML syntax error: {reason}" + (f" ({context})" if context else "")
    # The contract for syntax errors is 'line N: reason'; Problem puts the line first itself.
    return Problem(f"line {mark.line + 1}" if mark else "(top level)", text)


# --- validation ---------------------------------------------------------------------------------

class Validator:
    def __init__(self, doc: Document):
        self.doc = doc
        self.problems: list[Problem] = list(doc.problems)

    def problem(self, path: Path_, reason: str) -> None:
        self.problems.append(Problem(format_path(path), reason, self.doc.line(path)))

    def mapping(self, value: object, path: Path_, what: str) -> dict | None:
        if isinstance(value, dict):
            return value
        self.problem(path, f"must be a mapping of {what}, not {describe(value)}")
        return None

    def fields(self, data: dict, path: Path_, table: tuple[Field, ...], preset_service: Any,
               outer: dict) -> dict[str, Any]:
        """Parse one level by its table; absent values get their defaults. Values that failed are
        left out, so cross-field checks only see good values."""
        known = {f.key for f in table}
        for key in data:
            if key not in known:
                self.problem(path + (str(key),), f"unknown key (expected one of {', '.join(f.key for f in table)})")
        values: dict[str, Any] = {}
        for f in table:
            if f.key not in data:
                if f.required:
                    self.problem(path + (f.key,), f"missing: {f.doc}")
                elif f.default is not None:
                    try:
                        values[f.key] = f.default(preset_service, {**outer, **values})
                    except KeyError:
                        pass        # its source value was itself invalid, and is reported
                continue
            if f.parse is None:
                values[f.key] = data[f.key]
                continue
            try:
                values[f.key] = f.parse(data[f.key])
            except Invalid as exc:
                self.problem(path + (f.key,), str(exc))
        return values


def validate(doc: Document) -> Site | None:
    v = Validator(doc)
    top = v.mapping(doc.data, (), "site keys (preset, snat_address, services, ...)") if doc.data is not None else None
    if doc.data is None:
        v.problem((), "the site file is empty; it needs at least preset, snat_address and services")
    if top is None:
        raise SiteInvalid(v.problems)
    site = v.fields(top, (), SITE_FIELDS, None, {})

    preset = None
    if "preset" in site:
        name = site["preset"]
        if not isinstance(name, str) or name not in available_presets():
            v.problem(("preset",), f"{describe(name)} is not a known preset (known: {', '.join(available_presets())})")
        else:
            try:
                preset = load_preset(name)
            except PresetError as exc:
                v.problem(("preset",), f"the preset itself is broken (an appliance defect): {exc}")

    services: list[Service] = []
    raw_services = site.get("services")
    if raw_services is not None and v.mapping(raw_services, ("services",), "service names to settings") is not None:
        if not raw_services:
            v.problem(("services",), "lists no service; a site uses at least one")
        elif preset is not None:
            for name, settings in raw_services.items():
                service = service_model(v, preset, str(name), settings, site)
                if service is not None:
                    services.append(service)
    check_addresses(v, site, services)
    if v.problems:
        # In the order of the file, which is how a reader goes through them.
        raise SiteInvalid(sorted(v.problems, key=lambda p: p.line or 0))
    order = {name: n for n, name in enumerate(preset.service_names)}
    return Site(preset=preset, snat_address=site["snat_address"], interface=site["interface"],
                services=tuple(sorted(services, key=lambda s: order[s.name])))


def service_model(v: Validator, preset: Preset, name: str, settings: object, site: dict) -> Service | None:
    path: Path_ = ("services", name)
    defaults: ServiceDefaults | None = preset.service(name)
    if defaults is None:
        v.problem(path, f"unknown service (the {preset.name} preset has {', '.join(preset.service_names)})")
        return None
    data = v.mapping(settings, path, "service settings (vip, servers, ...)")
    if data is None:
        return None
    before = len(v.problems)
    values = v.fields(data, path, SERVICE_FIELDS, defaults, site)
    servers = server_models(v, path, values.get("servers"), values, site)
    check_service(v, path, defaults, data, values)
    if len(v.problems) > before or servers is None or any(
            f.key not in values for f in SERVICE_FIELDS if f.key not in ("servers", "called_ae_title")):
        return None
    return Service(name=name, summary=defaults.summary, protocol=defaults.protocol, tls=defaults.tls,
                   balance=defaults.balance, servers=servers,
                   called_ae_title=values.get("called_ae_title"),
                   **{f.key: values[f.key] for f in SERVICE_FIELDS
                      if f.key not in ("servers", "called_ae_title")})


def server_models(v: Validator, service_path: Path_, raw: object, service: dict,
                  site: dict) -> tuple[Server, ...] | None:
    path = service_path + ("servers",)
    if raw is None:
        return None                                      # reported as missing already
    if not isinstance(raw, list):
        v.problem(path, f"must be a list of real servers, not {describe(raw)}")
        return None
    if not raw:
        v.problem(path, "lists no real server; a service needs at least one")
        return None
    servers: list[Server] = []
    seen_labels: dict[str, int] = {}
    seen_ids: dict[int, int] = {}
    seen_endpoints: dict[tuple, int] = {}
    ok = True
    for index, item in enumerate(raw):
        item_path = path + (index,)
        data = v.mapping(item, item_path, "server settings (label, address, ...)")
        if data is None:
            ok = False
            continue
        before = len(v.problems)
        values = v.fields(data, item_path, SERVER_FIELDS, None, {**service, "position": index + 1})
        if "label" in values:
            if values["label"] in seen_labels:
                v.problem(item_path + ("label",), f"{values['label']!r} is already the label of servers[{seen_labels[values['label']]}]")
            seen_labels.setdefault(values["label"], index)
        if "id" in values:
            if values["id"] in seen_ids:
                v.problem(item_path + ("id",), f"{values['id']} is already the id of servers[{seen_ids[values['id']]}]"
                          + ("" if "id" in data else "; give this server an explicit id"))
            seen_ids.setdefault(values["id"], index)
        if "address" in values and "port" in values:
            endpoint = (values["address"], values["port"])
            if endpoint in seen_endpoints:
                v.problem(item_path + ("address",), f"{endpoint_text(*endpoint)} is already servers[{seen_endpoints[endpoint]}]")
            seen_endpoints.setdefault(endpoint, index)
            check_server_address(v, item_path + ("address",), values["address"], service, site)
        if len(v.problems) > before or any(f.key not in values for f in SERVER_FIELDS):
            ok = False          # a value it depends on (the service's port) is wrong, and reported
            continue
        servers.append(Server(**{f.key: values[f.key] for f in SERVER_FIELDS}))
    return tuple(servers) if ok else None


def check_server_address(v: Validator, path: Path_, address: IPAddress, service: dict, site: dict) -> None:
    snat = site.get("snat_address")
    if address == service.get("vip") or address == snat:
        v.problem(path, f"{address} is an address of the appliance itself (a VIP or the SNAT address)")
    elif snat is not None and address.version != snat.version:
        v.problem(path, f"IPv{address.version} real server, but snat_address {snat} is IPv{snat.version}; "
                        "connections to it leave from the SNAT address")


def check_service(v: Validator, path: Path_, defaults: ServiceDefaults, data: dict, values: dict) -> None:
    check = values.get("check")
    if check is None:
        return
    spec = CHECKS[check]
    if spec.applies_to is not None and defaults.protocol not in spec.applies_to:
        usable = [c.name for c in CHECKS.values() if c.applies_to is None or defaults.protocol in c.applies_to]
        v.problem(path + ("check",), f"{check} does not apply to a {defaults.protocol.upper()} service "
                                     f"(choose {', '.join(usable)})")
    interval, timeout = values.get("check_interval_seconds"), values.get("check_timeout_seconds")
    if interval is not None and timeout is not None and timeout >= interval:
        key = "check_timeout_seconds" if "check_timeout_seconds" in data else "check_interval_seconds"
        v.problem(path + (key,), f"the check timeout ({timeout} s) must be shorter than the check interval ({interval} s)")
    if check == "ping" and interval is not None and interval <= PING_DEADLINE_SECONDS:
        # HAProxy kills an external check after 'inter'; the ping script may take its deadline.
        v.problem(path + ("check_interval_seconds",),
                  f"the ping check needs an interval above its {PING_DEADLINE_SECONDS} s deadline (at least {PING_DEADLINE_SECONDS + 1})")
    if check == "dicom-echo":
        if "called_ae_title" not in data:
            v.problem(path + ("called_ae_title",), "missing: the dicom-echo check associates with the real "
                                                   "servers' AE title, which only the site knows")
    else:
        for key in ("called_ae_title", "calling_ae_title"):
            if key in data:
                v.problem(path + (key,), f"only used by the dicom-echo check, but this service's check is {check}")


def endpoint_text(address: IPAddress, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def check_addresses(v: Validator, site: dict, services: list[Service]) -> None:
    """Checks across services: one VIP:port per service, one interface per address."""
    taken: dict[tuple, str] = {}
    interface_of: dict[IPAddress, tuple[str, Path_]] = {}
    snat = site.get("snat_address")
    if snat is not None and "interface" in site:
        interface_of[snat] = (site["interface"], ("snat_address",))
    raw = site.get("services") if isinstance(site.get("services"), dict) else {}
    for service in services:
        path: Path_ = ("services", service.name)
        given = raw.get(service.name) or {}
        endpoint = (service.vip, service.port)
        if endpoint in taken:
            key = "port" if "port" in given else "vip"
            v.problem(path + (key,), f"{endpoint_text(*endpoint)} is already the address of services.{taken[endpoint]}; "
                                     "each virtual service needs its own VIP:port")
        taken.setdefault(endpoint, service.name)
        if service.vip in interface_of and interface_of[service.vip][0] != service.interface:
            other_iface, other_path = interface_of[service.vip]
            v.problem(path + ("interface",), f"{service.vip} is on {other_iface} for {format_path(other_path)}; "
                                             "one address can be on one interface only")
        interface_of.setdefault(service.vip, (service.interface, path + ("vip",)))


# --- entry points -------------------------------------------------------------------------------

def parse_site(text: str) -> Site:
    """The site model, or SiteInvalid with every problem."""
    try:
        doc = Document(text)
    except yaml.YAMLError as exc:
        raise SiteInvalid([yaml_problem(exc)]) from None
    site = validate(doc)
    assert site is not None
    return site


def read_site(path: str) -> Site:
    try:
        raw = open(path, "rb").read()
    except OSError as exc:
        raise SiteInvalid([Problem(path, f"cannot read the site file: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise SiteInvalid([Problem(f"line {line}", "not UTF-8 text")]) from None
    return parse_site(text)
