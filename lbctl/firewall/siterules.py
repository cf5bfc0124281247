"""The site's own firewall rules (the vendor guide's "Firewall Script", appendix 12.1 and 12.3).

A file of nftables syntax on the data partition (DATA_DIR/firewall/site-rules.nft), kept across
applies, reboots and updates, never replicated to the HA peer. Its blocks name the appliance's
chains; their rules are placed in the appliance's own table, in chains its base chains jump to
*after* the generated rules, so the management rule that comes first cannot be taken away:

    # rules of the input chain, after the generated ones (management, VIPs, peer)
    chain input {
        ip saddr 10.0.9.0/24 udp dport 161 accept
    }
    # the guide's outbound SNAT example (iptables-translate writes the same rule)
    chain postrouting {
        ip saddr { 10.10.5.59, 10.10.5.60 } tcp dport { 104, 11112 } snat ip to 10.10.5.100
    }
    set blocked { type ipv4_addr; elements = { 192.0.2.7 } }

Blocks: `chain input|forward|output|prerouting|postrouting { ... }` and `set`/`map` definitions.
Statements that would reach outside the appliance's table or change its structure (table,
flush, delete, destroy, include, hook, policy) are refused with their line here; everything else
is nftables' to judge, with the generated rules, in one `nft -c` (a syntax error or a kernel-side
one, such as a jump to a missing chain, names the file and the line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..inputs import InputInvalid, Problem

CHAINS = ("input", "forward", "output", "prerouting", "postrouting")
FORBIDDEN = ("table", "flush", "delete", "destroy", "include", "hook", "policy")
MAX_BYTES = 256 * 1024
TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|\n|[{};]|[^\s{};"#]+')


Numbered = list[tuple[int, str]]  # (line in the site's file, text of that line)


@dataclass
class SiteRules:
    """The file's blocks, line by line with their line numbers in the file: the body of each
    chain block by chain name, and the set/map definitions whole."""

    chains: dict[str, Numbered] = field(default_factory=dict)
    definitions: list[Numbered] = field(default_factory=list)
    text: str = ""


def numbered(text: str, start: int, end: int) -> Numbered:
    """The lines of text[start:end], each with its line number in `text`."""
    first = text.count("\n", 0, start) + 1
    return [(first + n, line) for n, line in enumerate(text[start:end].split("\n")) if line.strip()]


def _problem(reason: str, line: int | None) -> Problem:
    return Problem((), f"site rules: {reason}", line)


def parse(text: str) -> SiteRules:
    """The blocks of a site rules file; InputInvalid with every problem (each with its line)."""
    if len(text.encode()) > MAX_BYTES:
        raise InputInvalid([_problem(f"the file is larger than {MAX_BYTES // 1024} KiB", None)])
    bad = re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise InputInvalid([_problem(f"control character U+{ord(bad.group()):04X} is not allowed", line)])
    problems: list[Problem] = []
    rules = SiteRules(text=text)
    line, depth = 1, 0
    block_kind = block_name = None
    block_start = block_line = definition_start = 0
    expect_name = False
    for match in TOKEN.finditer(text):
        token = match.group()
        if token == "\n":
            line += 1
            continue
        if token.startswith("#") or token.startswith('"'):
            continue
        if token in FORBIDDEN:
            problems.append(_problem(f"'{token}' is not allowed: the rules live in the appliance's own table", line))
        if depth == 0:
            if expect_name:
                block_name, expect_name = token, False
                if block_kind == "chain" and token not in CHAINS:
                    problems.append(
                        _problem(f"chain {token!r} is not one of the appliance's ({', '.join(CHAINS)})", line)
                    )
                elif block_kind == "chain" and token in rules.chains:
                    problems.append(_problem(f"chain {token} is given twice", line))
                continue
            if token in ("chain", "set", "map"):
                block_kind, expect_name, block_line = token, True, line
                definition_start = match.start()
                continue
            if token == "{" and block_kind and block_name:
                depth, block_start = 1, match.end()
                continue
            if token == ";":
                continue
            problems.append(_problem(f"expected a block (chain, set or map), found {token!r}", line))
            continue
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth == 0:
                if block_kind == "chain":
                    rules.chains[str(block_name)] = numbered(text, block_start, match.start())
                else:
                    rules.definitions.append(numbered(text, definition_start, match.end()))
                block_kind = block_name = None
    if depth:
        problems.append(
            _problem(f"the {block_kind} {block_name} block opened on line {block_line} is not closed", block_line)
        )
    if problems:
        raise InputInvalid(problems)
    return rules
