"""Reference tables for docs/lbctl.md, generated from the data that drives lbctl itself."""

from __future__ import annotations

from .site.healthchecks import CHECKS
from .site.preset import load_preset


def preset_table(name: str = "pacs") -> str:
    preset = load_preset(name)
    lines = [
        f"Preset `{preset.name}`: {preset.title} ({preset.source}).",
        "",
        "| service | port | TLS | persistence | check | idle timeout | what |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in preset.services:
        lines.append(
            f"| {s.name} | {s.port} | {'yes' if s.tls else 'no'} | source IP, {s.persistence_minutes} min "
            f"| {s.check} | {s.idle_timeout_minutes} min | {s.summary} |"
        )
    lines.append("")
    return "\n".join(lines)


def checks_table() -> str:
    lines = ["| check | applies to | how |", "|---|---|---|"]
    for check in CHECKS.values():
        where = (
            "every service"
            if check.applies_to is None
            else ", ".join(p.upper() for p in check.applies_to) + " services"
        )
        lines.append(f"| `{check.name}` | {where} | {check.summary} |")
    lines.append("")
    return "\n".join(lines)
