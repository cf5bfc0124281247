#!/usr/bin/env python3
"""Run every benchmark in turn (`make bench`); each writes its own results (JSON + Markdown) in bench/.

    sudo .venv/bin/python -m bench.run [image] [packaging] [pacs] [ha] [update] [webui]

image      bench/image.py: cold and warm builds, reproducibility, sizes, boot to READY (about 10 min)
packaging  bench/packaging.py: packaging all five hypervisors from the checkout's built image
pacs       bench/pacs/run.py: 200 MB C-STORE through the DICOM VIP vs. direct; 500 concurrent C-ECHO
ha         bench/ha/run.py: 10 power-offs of the active node of a pair, persistence, 10 min under load (about 45 min)
update     bench/update/run.py: archive size, apply to READY, 50 random power cuts during an apply (about 2 hours)
webui      bench/webui/run.py: the System Overview's server time and page weight, 18 and 200 real servers (1 min)

Each also runs on its own: python -m bench.image, python -m bench.packaging, python -m bench.pacs.run,
python -m bench.ha.run, python -m bench.update.run, python -m bench.webui.run.

Benchmarks share the machine's cores, so they run one after another, never beside the tests.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# Each benchmark is a list of commands run in turn.
BENCHES: dict[str, list[list[str]]] = {
    "image": [[PYTHON, "-m", "bench.image"]],
    # packaging needs the checkout's built image: `lbimage build` is a no-op when it is up to date.
    "packaging": [[str(ROOT / ".venv/bin/lbimage"), "build", "--hypervisor", "kvm"], [PYTHON, "-m", "bench.packaging"]],
    "pacs": [[PYTHON, "-m", "bench.pacs.run"]],
    "ha": [[str(ROOT / ".venv/bin/lbimage"), "build", "--hypervisor", "kvm"], [PYTHON, "-m", "bench.ha.run"]],
    "update": [[str(ROOT / ".venv/bin/lbimage"), "build", "--hypervisor", "kvm"], [PYTHON, "-m", "bench.update.run"]],
    "webui": [[PYTHON, "-m", "bench.webui.run"]],
}


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        sys.exit(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    failed = []
    for name in names or list(BENCHES):
        steps = BENCHES[name]
        started = time.monotonic()
        print(f"==> bench {name}", flush=True)
        for argv in steps:
            if subprocess.run(argv, cwd=ROOT).returncode != 0:
                failed.append(name)
                break
        print(
            f"    bench {name}: {'FAILED' if name in failed else 'done'} in {time.monotonic() - started:.0f} s",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
