"""Value types of the input engine: each parses one YAML value or says why it cannot.

A type's `kind` is what the reference shows in its value column. Types are strict: an integer is
a decimal number written as such (never a YAML 1.1 octal or a quoted number), a boolean is
true/false, text is text. A value of the wrong kind is refused with what it was ("nothing
(null)", "a list", "'yes' ..."), so the reason names what the person wrote.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .addresses import IPAddress, IPInterface, IPNetwork, special
from .engine import Cursor, Invalid, Type, describe
from .yamldoc import Ambiguous


def _no_ambiguous(value: object) -> None:
    if isinstance(value, Ambiguous):
        raise Invalid(value.reason)


@dataclass(frozen=True)
class Integer(Type[int]):
    """A whole number from `low` to `high`, written in decimal."""

    low: int
    high: int
    unit: str = ""

    @property
    def kind(self) -> str:  # type: ignore[override]
        return f"{self.low} … {self.high}" + (f" {self.unit}" if self.unit else "")

    def parse(self, value: object, at: Cursor) -> int:
        _no_ambiguous(value)
        # YAML's true is an int in Python; "yes" and 3.0 are not whole numbers here either.
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be a whole number from {self.low} to {self.high}, not {describe(value)}")
        if not self.low <= value <= self.high:
            raise Invalid(f"{value} is out of range ({self.low} to {self.high})")
        return value


class Boolean(Type[bool]):
    kind = "true or false"

    def parse(self, value: object, at: Cursor) -> bool:
        _no_ambiguous(value)
        if not isinstance(value, bool):
            raise Invalid(f"must be true or false, not {describe(value)}")
        return value


@dataclass(frozen=True)
class Choice(Type[str]):
    options: tuple[str, ...]
    what: str = ""

    @property
    def kind(self) -> str:  # type: ignore[override]
        return ", ".join(self.options)

    def parse(self, value: object, at: Cursor) -> str:
        if not isinstance(value, str) or value not in self.options:
            if self.what:
                raise Invalid(f"{describe(value)} is not {self.what} (expected one of {', '.join(self.options)})")
            raise Invalid(f"{describe(value)} is not one of {', '.join(self.options)}")
        return str(value)


@dataclass(frozen=True)
class Text(Type[str]):
    """Text matching `pattern` (whole), at most `max_length` characters; `what` names it in errors."""

    pattern: str | None = None
    what: str = "text"
    max_length: int = 200

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.what

    def parse(self, value: object, at: Cursor) -> str:
        if not isinstance(value, str):
            hint = (
                "; quote it to make it text" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
            )
            raise Invalid(f"must be {self.what}, not {describe(value)}{hint}")
        if not value.strip():
            raise Invalid(f"must be {self.what}, not empty text")
        if len(value) > self.max_length:
            raise Invalid(f"is {len(value)} characters long; at most {self.max_length} are allowed")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise Invalid(f"{describe(value)} is not {self.what}")
        return str(value)


LABEL = Text(
    r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}",
    "a label: 1 to 32 letters, digits, '_', '.' or '-', starting with a letter or digit",
    32,
)
# RFC 1123 host name label, and a host name of such labels (RFC 1123 section 2.1).
HOSTNAME_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = Text(rf"{HOSTNAME_LABEL}(\.{HOSTNAME_LABEL})*\.?", "a host name (letters, digits, '-' and dots)", 253)
SHORT_HOST_NAME = Text(HOSTNAME_LABEL, "a host name of 1 to 63 letters, digits and '-'", 63)


class AETitle(Type[str]):
    """A DICOM Application Entity title (PS3.5 section 6.2, value representation AE).

    Up to 16 characters of the default character repertoire (printable ASCII), no backslash and
    no control characters; leading and trailing spaces are not significant, so a title of spaces
    only is empty. Characters such as '"', '#', '$' and '{' are legal and kept as they are.
    """

    kind = "AE title (1 to 16 printable ASCII characters, no backslash)"

    def parse(self, value: object, at: Cursor) -> str:
        if not isinstance(value, str):
            raise Invalid(f"must be text, not {describe(value)}")
        if len(value) > 16 or not 1 <= len(value.strip(" ")) <= 16:
            raise Invalid(f"{describe(value)} must be 1 to 16 characters (DICOM PS3.5 6.2, AE)")
        if any(c == "\\" or not " " <= c <= "~" for c in value):
            raise Invalid(
                f"{describe(value)} may hold only printable ASCII characters other than backslash (DICOM PS3.5 6.2, AE)"
            )
        return value.strip(" ")


# --- addresses --------------------------------------------------------------------------------


def _address_text(value: object, example: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be an IP address written as text (e.g. {example}), not {describe(value)}")
    if value != value.strip():
        raise Invalid(f"{describe(value)} has spaces around the address")
    return value


@dataclass(frozen=True)
class Address(Type[IPAddress]):
    """An IPv4 or IPv6 address, without prefix or scope, refused if it is one of `refuse`'s kinds.

    `refuse` lists what `addresses.special` may answer that this use does not allow; "*" refuses
    every special kind (the address must be ordinary unicast).
    """

    refuse: tuple[str, ...] = ("*",)
    use: str = ""  # what the address is for, in the reason ("a VIP")
    allow: tuple[str, ...] = ()  # special kinds allowed although "*" is given

    kind = "IP address"

    def parse(self, value: object, at: Cursor) -> IPAddress:
        text = _address_text(value, "192.168.85.5")
        if "/" in text:
            raise Invalid(f"{describe(value)}: give a plain address, without a prefix length")
        if "%" in text:
            raise Invalid(
                f"{describe(value)}: give a plain address, without a %scope (the interface is "
                "known from the configuration)"
            )
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise Invalid(f"{describe(value)} is not an IPv4 or IPv6 address") from None
        what = special(ip)
        if what is not None and what not in self.allow and ("*" in self.refuse or what in self.refuse):
            raise Invalid(f"{ip} is {what}" + (f", which cannot be {self.use}" if self.use else ""))
        return ip


@dataclass(frozen=True)
class InterfaceAddress(Type[IPInterface]):
    """An address with its prefix length (192.168.85.2/24): an interface's own address."""

    kind = "address/prefix (e.g. 192.168.85.2/24)"

    def parse(self, value: object, at: Cursor) -> IPInterface:
        text = _address_text(value, "192.168.85.2/24")
        if "%" in text:
            raise Invalid(f"{describe(value)}: give the address without a %scope")
        if "/" not in text:
            raise Invalid(f"{describe(value)} needs a prefix length, e.g. {text}/24")
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError:
            raise Invalid(f"{describe(value)} is not an address with a prefix length, e.g. 192.168.85.2/24") from None
        ip, net = iface.ip, iface.network
        what = special(ip)
        if what is not None:
            raise Invalid(f"{ip} is {what}, which cannot be an interface's own address")
        if net.prefixlen == 0:
            raise Invalid(f"{text}: a /0 prefix makes every address on-link; give the subnet's prefix length")
        if ip.version == 4 and net.prefixlen <= 30 and ip in (net.network_address, net.broadcast_address):
            which = "network" if ip == net.network_address else "broadcast"
            raise Invalid(f"{ip} is the {which} address of {net}, not a host address in it")
        return iface


@dataclass(frozen=True)
class Network(Type[IPNetwork]):
    """A network in CIDR form (10.0.0.0/8); a single address is its host network (/32, /128)."""

    kind = "network (e.g. 10.0.0.0/8) or address"

    def parse(self, value: object, at: Cursor) -> IPNetwork:
        text = _address_text(value, "10.0.0.0/8")
        if "%" in text:
            raise Invalid(f"{describe(value)}: give the network without a %scope")
        try:
            return ipaddress.ip_network(text)
        except ValueError as exc:
            if "has host bits set" in str(exc):
                suggestion = ipaddress.ip_network(text, strict=False)
                raise Invalid(f"{describe(value)} has host bits set; the network is {suggestion}") from None
            raise Invalid(f"{describe(value)} is not a network such as 10.0.0.0/8") from None


# --- free-form --------------------------------------------------------------------------------


class ScalarMapping(Type[dict[str, Any]]):
    """A mapping of names to text, numbers or booleans (template variables, converter options)."""

    kind = "mapping of names to text, numbers or booleans"

    def parse(self, value: object, at: Cursor) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid(f"must be a mapping, not {describe(value)}")
        for key, element in value.items():
            if isinstance(element, Ambiguous):
                raise Invalid(f"{key}: {element.reason}")
            if not isinstance(element, (str, int, float, bool)):
                raise Invalid(f"{key}: {describe(element)} is not text, a number or a boolean")
        return dict(value)


def unique(items: Iterable[Any]) -> bool:
    seen = list(items)
    return len(set(seen)) == len(seen)
