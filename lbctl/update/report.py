"""`lbctl update status`: both slots, the booted one, the tries left, the last update's outcome.

Read-only: it reads the GPT (sfdisk), the ESP's UKI names and the data partition's records, and
derives what a record alone cannot know (an update whose new version used up its tries without
ever running the health gate, e.g. a kernel that did not boot, shows as rolled back).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from . import state
from .disk import ESP, TRIES, BootEntry, Disk, DiskError, booted_root_label, find_disk


@dataclass(frozen=True)
class SlotStatus:
    name: str  # A or B
    partition: int
    label: str
    version: str | None
    booted: bool
    uki: str | None  # its UKI's file name on the ESP
    boot_state: str  # good, indeterminate (on trial), bad, or none (no UKI)
    tries_left: int | None  # None: blessed, or no UKI
    config_formats: tuple[int, ...] | None  # the configuration formats that version reads


@dataclass(frozen=True)
class UpdateStatus:
    booted_version: str
    slots: tuple[SlotStatus, ...]
    config_format: int  # of the data partition's configuration
    last: dict[str, Any] | None  # version, from, outcome, reason, at
    problems: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def collect() -> UpdateStatus:
    """Raises DiskError when the disk cannot be read."""
    from .apply import running_version
    from .state import CONFIG_FORMATS_READ

    label = booted_root_label()
    disk = Disk(find_disk(label))
    esp = ESP.from_env()
    booted_version = running_version()
    problems: list[str] = []
    try:
        entries = {e.version: e for e in esp.entries()}
    except OSError as exc:
        entries, problems = {}, [f"cannot read the ESP: {exc}"]
    slots = []
    for slot in disk.slots():
        entry: BootEntry | None = entries.get(slot.version) if slot.version else None
        booted = slot.partition.label == label
        formats = CONFIG_FORMATS_READ if booted else state.config_formats_of(slot.version) if slot.version else None
        slots.append(
            SlotStatus(
                slot.name,
                slot.partition.number,
                slot.partition.label,
                slot.version,
                booted,
                entry.path.name if entry else None,
                entry.state if entry else "none",
                entry.left if entry and entry.left is not None else None,
                tuple(formats) if formats else None,
            )
        )
    last = derived_last(state.last(), booted_version, entries)
    try:
        fmt = state.config_format()
    except state.ConfigFormatError as exc:
        fmt, problems = 0, [*problems, str(exc)]
    return UpdateStatus(booted_version, tuple(slots), fmt, last, tuple(problems))


def derived_last(last: dict[str, Any] | None, booted: str, entries: dict[str, BootEntry]) -> dict[str, Any] | None:
    """The recorded outcome, completed with what the ESP tells since it was written."""
    if not last or last.get("outcome") != "applied":
        return last
    version = str(last.get("version"))
    entry = entries.get(version)
    if version == booted:
        return {**last, "outcome": "on trial", "reason": f"{version} is booting; blessed once READY"}
    if entry is None:
        return last
    if entry.state == "bad":
        return {**last, "outcome": "rolled back", "reason": f"{version} did not become READY in {TRIES} tries"}
    if entry.state == "indeterminate" and entry.done:
        return {**last, "outcome": "on trial", "reason": f"{version} failed {entry.done} of {TRIES} tries so far"}
    return {**last, "outcome": "applied", "reason": f"reboot to start {version}"}


def render(st: UpdateStatus) -> str:
    lines = [f"running {st.booted_version}; configuration format {st.config_format}"]
    for s in st.slots:
        what = s.version or ("empty" if s.label == "_empty" else f"label {s.label}")
        boot = {
            "good": "good",
            "bad": "bad (no tries left)",
            "indeterminate": f"on trial, {s.tries_left} tries left",
            "none": "no UKI",
        }[s.boot_state]
        formats = ", ".join(map(str, s.config_formats)) if s.config_formats else "unknown"
        lines.append(
            f"  slot {s.name} (partition {s.partition}): {what}{'  [booted]' if s.booted else ''}"
            + (f"; boot entry {boot}; reads configuration format {formats}" if s.version else "")
        )
    if st.last:
        lines.append(
            f"last update: {st.last.get('version')} from {st.last.get('from') or '?'}: {st.last.get('outcome')}"
            f" ({st.last.get('at')}): {st.last.get('reason') or '-'}"
        )
    else:
        lines.append("last update: none")
    lines += [f"problem: {p}" for p in st.problems]
    return "\n".join(lines)


__all__ = ["DiskError", "SlotStatus", "UpdateStatus", "collect", "render"]
