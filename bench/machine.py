"""The machine a benchmark ran on, recorded next to its figures (shared by every bench script)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def first_line(argv: list[str]) -> str:
    """The first output line of a tool's version command, or 'missing'."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True)
    except FileNotFoundError:
        return "missing"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def page_fault_seconds(gib: int = 1) -> float:
    """Seconds to fault in `gib` GiB of fresh memory, page by page. On these cloud VMs it varies
    several-fold over the day (the host reclaims guest memory), and QEMU guests pay it at boot, so
    it is recorded next to the figures it explains."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", f"b = bytearray({gib} << 30)\nfor i in range(0, len(b), 4096): b[i] = 1"], check=True
    )
    return round(time.monotonic() - started, 2)


def describe(**tools: list[str]) -> dict:
    """CPU, cores, RAM, OS, Python and load, plus one version line per tool (name=argv)."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor()
    )
    mem_kib = int(
        next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 2**20, 1),
        "os": platform.platform(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "page_fault_1gib_s": page_fault_seconds(),
        **{name: first_line(argv) for name, argv in tools.items()},
    }


def one_line(m: dict) -> str:
    """The machine as one Markdown sentence."""
    extra = "; ".join(
        f"{k} {v}"
        for k, v in m.items()
        if k
        not in {
            "cpu",
            "cores",
            "ram_gib",
            "os",
            "kernel",
            "python",
            "load_average_at_start",
            "ram_GiB",
            "page_fault_1gib_s",
        }
    )
    load = ", ".join(str(x) for x in m.get("load_average_at_start", []))
    return (
        f"{m['cpu']}, {m['cores']} cores, {m.get('ram_gib', m.get('ram_GiB'))} GiB RAM; {m.get('os', '')}; "
        f"Python {m['python']}{'; ' + extra if extra else ''}. Load average at start: {load}; "
        f"faulting in 1 GiB of fresh memory took {m.get('page_fault_1gib_s', '?')} s."
    )


def publish(out: Path, name: str, results: dict, markdown: str) -> None:
    """Write a benchmark's figures as out/<name>.json and out/<name>.md, and print the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown)
    print(markdown)
