"""How a value is written into each generated format: one quoting rule per output format.

Every string that reaches a generated file either is restricted by its type in the input tables
(addresses, labels, host names: no character that means something to the output) or passes
through the rule of its output here. The template environment (templating.py) guards the rest:
a value that would put a line break into a line-oriented file stops the rendering.

haproxy.cfg   `haproxy_string`: one double-quoted word, taken literally.
networkd      values are typed (addresses, host names, numbers); nothing is quoted.
nftables      generated values are typed; the site's own rules are nftables syntax by design,
              placed line by line with their origin (`nft_site_line`), and judged by nft -c.
"""

from __future__ import annotations

import re

from .inputs.addresses import IPAddress

# C0 and C1 controls, DEL, and the line and paragraph separators.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class QuotingError(ValueError):
    """A value cannot be written into its output format at all (an appliance defect: the input
    tables should have refused it)."""


def haproxy_string(text: str) -> str:
    """`text` as one double-quoted HAProxy configuration word, read back exactly as `text`.

    HAProxy's configuration language (configuration.txt, section 2.2, "Quoting and escaping")
    expands environment variables ("$NAME", "${NAME}") and interprets backslash escapes inside
    double quotes, and ends a word at an unescaped double quote; so backslash, the double quote
    and '$' are escaped. '#' and spaces are literal inside quotes. Control characters, line
    breaks above all, cannot be written and are refused.
    """
    if CONTROL.search(text):
        raise QuotingError(f"refusing to write {text!r} into haproxy.cfg: it holds a control character")
    return '"' + re.sub(r'([\\"$])', r"\\\1", text) + '"'


def nft_site_line(line: tuple[int, str]) -> str:
    """A line of the site's own firewall rules, placed in the ruleset with its origin as a trailing
    comment ('# site rules line N'), by which an nft error is reported at the site's line."""
    number, text = line
    if CONTROL.search(text.replace("\t", " ")):
        raise QuotingError(f"refusing to write {text!r} into the ruleset: it holds a control character")
    return f"{text.strip()}  # site rules line {number}"


def nft_site_block(lines: list[tuple[int, str]]) -> str:
    """A set or map definition of the site's rules, every line carrying its origin."""
    return "\n    ".join(nft_site_line(line) for line in lines)


def nft_family(address: IPAddress) -> str:
    """The nftables family keyword of an address's match (ip saddr, ip6 saddr)."""
    return "ip" if address.version == 4 else "ip6"


def host(address: IPAddress) -> str:
    """An address as HAProxy writes a host: IPv6 in brackets (it splits "host:port" at the last colon)."""
    return f"[{address}]" if address.version == 6 else str(address)


def endpoint(address: IPAddress, port: int) -> str:
    """address:port as HAProxy reads it."""
    return f"{host(address)}:{port}"
