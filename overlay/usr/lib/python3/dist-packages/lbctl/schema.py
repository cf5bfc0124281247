"""The site file schema, as tables: one row per key, at three levels (site, service, server).

Each row says how a value is parsed and checked, whether it is required, where its default comes
from, and what it means. The same rows drive `lbctl validate`, the model the renderer gets, and
the key reference in docs/lbctl.md (`lbctl schema` prints it), so they cannot drift apart.

Checks that involve more than one value (two services on one VIP:port, a check that does not
apply to a service's protocol, ...) live in site.py, after every single value has been parsed.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable

from .checks import CHECKS

# The appliance's network adapters (net.ifnames=0, in the hypervisor's order); the same list as
# provisioning's (lbctl.provision.INTERFACES), kept here so that lbctl stands alone.
INTERFACES = ("eth0", "eth1", "eth2", "eth3")

MAX_PERSISTENCE_MINUTES = 7 * 24 * 60


class Invalid(Exception):
    """A value is wrong; the message is the reason, the caller adds the field path."""


# --- value parsers ------------------------------------------------------------------------------

def integer(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        # YAML turns 'yes' into True and True is an int in Python; neither is a number here.
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be a whole number from {low} to {high}, not {describe(value)}")
        if not low <= value <= high:
            raise Invalid(f"{value} is out of range ({low} to {high})")
        return value
    return parse


def choice(options: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or value not in options:
            raise Invalid(f"{describe(value)} is not one of {', '.join(options)}")
        return value
    return parse


def address(role: str) -> Callable[[object], ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """An IPv4 or IPv6 address. `role` is 'local' (the appliance owns it: VIP, SNAT) or 'remote'."""
    def parse(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        if not isinstance(value, str):
            raise Invalid(f"must be an IP address written as text (e.g. 192.168.85.5), not {describe(value)}")
        if "/" in value or "%" in value:
            raise Invalid(f"{value!r}: give a plain address, without a prefix length or scope")
        try:
            ip = ipaddress.ip_address(value.strip())
        except ValueError:
            raise Invalid(f"{value!r} is not an IPv4 or IPv6 address") from None
        if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
            raise Invalid(f"{value} is not a unicast address")
        if role == "local" and ip.is_loopback:
            raise Invalid(f"{value} is a loopback address; the appliance adds this address to a network interface")
        return ip
    return parse


LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


def label(value: object) -> str:
    if not isinstance(value, str) or not LABEL.fullmatch(value):
        raise Invalid(f"{describe(value)} is not a valid label: 1 to 32 letters, digits, '_', '.' or '-', "
                      "starting with a letter or digit")
    return value


def ae_title(value: object) -> str:
    # PS3.5 6.2: AE is up to 16 characters of the default repertoire, no backslash or control
    # characters; leading and trailing spaces are not significant, so an all-space title is empty.
    if not isinstance(value, str):
        raise Invalid(f"must be text, not {describe(value)}")
    if not 1 <= len(value.strip()) <= 16 or len(value) > 16:
        raise Invalid(f"{value!r} must be 1 to 16 characters")
    if any(c == "\\" or not " " <= c <= "~" for c in value):
        raise Invalid(f"{value!r} may hold only printable ASCII characters other than backslash")
    return value.strip()


def describe(value: object) -> str:
    """How a YAML value reads in an error message: its text and, for surprises, its type."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a true/false value)"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    if isinstance(value, str):
        return repr(value)
    return f"{value!r} ({type(value).__name__})"


# --- the tables ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    key: str
    type_doc: str
    doc: str
    parse: Callable[[object], Any] | None   # None: a nested level, handled by site.py
    required: bool = False
    default_doc: str = ""
    # Where an absent value comes from: called with the preset's service defaults (or None at
    # site level) and the values parsed so far at this level and the level above.
    default: Callable[[Any, dict], Any] | None = None


def from_preset(key: str) -> Callable[[Any, dict], Any]:
    return lambda preset_service, values: getattr(preset_service, key)


SITE_FIELDS: tuple[Field, ...] = (
    Field("preset", "name", "The service preset the site uses: which services exist and their defaults.",
          None, required=True),
    Field("snat_address", "IP address",
          "\"Set Source Address\": connections and health checks to the real servers leave from this "
          "address. The appliance adds it to `interface` (a floating IP on an HA pair).",
          address("local"), required=True),
    Field("interface", "eth0 … eth3",
          "Network interface that carries `snat_address` and, unless a service says otherwise, the VIPs.",
          choice(INTERFACES), default_doc="eth0", default=lambda _p, _v: "eth0"),
    Field("services", "mapping", "The virtual services the site uses, by preset name (see below). "
          "A site lists only the services it uses, at least one.", None, required=True),
)

SERVICE_FIELDS: tuple[Field, ...] = (
    Field("vip", "IP address", "Virtual service address the clients connect to.",
          address("local"), required=True),
    Field("port", "1 … 65535", "TCP port of the virtual service.", integer(1, 65535),
          default_doc="preset", default=from_preset("port")),
    Field("interface", "eth0 … eth3", "Network interface that carries the VIP.", choice(INTERFACES),
          default_doc="site `interface`", default=lambda _p, site: site["interface"]),
    Field("persistence_minutes", f"1 … {MAX_PERSISTENCE_MINUTES}",
          "Source-IP persistence: a client returns to the same real server as long as it opens a "
          "new connection within this time.", integer(1, MAX_PERSISTENCE_MINUTES),
          default_doc="preset", default=from_preset("persistence_minutes")),
    Field("check", ", ".join(CHECKS), "Health check of the real servers (see Checks).",
          choice(tuple(CHECKS)), default_doc="preset", default=from_preset("check")),
    Field("check_interval_seconds", "1 … 3600", "Time between two checks of a real server.",
          integer(1, 3600), default_doc="preset (5)", default=from_preset("check_interval_seconds")),
    Field("check_timeout_seconds", "1 … 60",
          "A check not answered within this time fails; must be shorter than the interval.",
          integer(1, 60), default_doc="preset (3)", default=from_preset("check_timeout_seconds")),
    Field("rise", "1 … 20", "Consecutive passed checks before a DOWN server is UP again.",
          integer(1, 20), default_doc="preset (2)", default=from_preset("rise")),
    Field("fall", "1 … 20", "Consecutive failed checks before an UP server is DOWN.",
          integer(1, 20), default_doc="preset (3)", default=from_preset("fall")),
    Field("idle_timeout_minutes", "1 … 10080",
          "A connection without traffic in either direction for this long is closed.",
          integer(1, 10080), default_doc="preset (60; SQL 480)", default=from_preset("idle_timeout_minutes")),
    Field("called_ae_title", "AE title",
          "`dicom-echo` only, and required there: the real servers' AE title.", ae_title),
    Field("calling_ae_title", "AE title",
          "`dicom-echo` only: the AE title the check associates as.", ae_title,
          default_doc="LBAPPLIANCE", default=lambda _p, _v: "LBAPPLIANCE"),
    Field("servers", "list", "The real servers (at least one).", None, required=True),
)

SERVER_FIELDS: tuple[Field, ...] = (
    Field("label", "label", "Name of the real server, unique in the service (e.g. Server1); "
          "`lbctl server` and `lbctl status` use it.", label, required=True),
    Field("address", "IP address", "Address of the real server.", address("remote"), required=True),
    Field("port", "1 … 65535", "Port of the real server.", integer(1, 65535),
          default_doc="the service's port", default=lambda _p, service: service["port"]),
    Field("weight", "0 … 256", "Share of new clients relative to the other servers; 0 takes none.",
          integer(0, 256), default_doc="100", default=lambda _p, _v: 100),
    Field("id", "1 … 2147483647",
          "HAProxy server id, kept in persistence tables. Set it when reordering servers must not "
          "move persistent clients.", integer(1, 2**31 - 1), default_doc="position in the list (1, 2, …)",
          default=lambda _p, server: server["position"]),
)


def markdown_reference() -> str:
    """The key reference of docs/lbctl.md, generated from the tables above."""
    lines: list[str] = []
    for title, fields in (("Site", SITE_FIELDS), ("Service (`services.<NAME>`)", SERVICE_FIELDS),
                          ("Real server (`services.<NAME>.servers[N]`)", SERVER_FIELDS)):
        lines += [f"#### {title}", "", "| key | value | required / default | meaning |", "|---|---|---|---|"]
        for f in fields:
            need = "required" if f.required else (f"default: {f.default_doc}" if f.default_doc else "optional")
            lines.append(f"| `{f.key}` | {f.type_doc} | {need} | {f.doc} |")
        lines.append("")
    return "\n".join(lines)
