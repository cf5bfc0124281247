#!/usr/bin/env python3
"""bench/update: the offline update's archive size, apply-to-READY time and the power-cut loop.

    sudo .venv/bin/python -m bench.update.run [--kills 50] [--seed 1]

1. Builds v2 from this tree (LB_VERSION=0.2.0) and its archive at the release level (zstd -19):
   the archive's size (goal: at most 120 MB), the time to make it, and the reproducibility (the
   archive written twice is the same bytes).
2. Boots v1, uploads the archive, and times `lbctl update apply` step by step and from the apply
   to READY on v2 (the reboot included).
3. The power-cut loop: from v1 READY, apply v2 and cut the power (SIGKILL to QEMU) at a random
   moment within the apply; check the GPT and the ESP from the host (sfdisk --verify, fsck.fat -n);
   boot; record which version came up, or that none did. After a v2 boot the disk starts over
   from v1. Goal: 0 that did not boot. OSTree's destructive test does this; RAUC and Mender
   publish nothing like it.

Results: bench/update/results.{json,md}, with the machine.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import describe, one_line, publish
from builder import provision, settings
from builder.manifest import load as load_manifest
from builder.mkosi import BuiltImage
from lbctl.update import archive as arc
from tests.helpers import artifact
from tests.image import updates

OUT = Path(__file__).resolve().parent
STEP = re.compile(r"update: \[(\d)/7\] (.+): done in ([\d.]+) s")


def say(text: str) -> None:
    print(f"bench update: {text}", flush=True)


def apply_to_ready(lab: updates.Appliance, remote: str) -> dict:
    started = time.monotonic()
    assert lab.vm is not None
    result = lab.vm.ssh(f"lbctl update apply {remote}", check=False, timeout=900)
    applied = time.monotonic() - started
    if "rebooting into it" not in result.stdout:
        raise SystemExit(f"apply failed: {result.stdout}{result.stderr}")
    steps = {m.group(2): float(m.group(3)) for m in STEP.finditer(result.stdout)}
    lab.wait_exit()
    version = lab.boot()
    return {
        "apply_s": round(applied, 1),
        "apply_to_ready_s": round(time.monotonic() - started, 1),
        "ready_version": version,
        "steps_s": steps,
    }


def markdown(r: dict) -> str:
    a, t, loop = r["archive"], r["apply"], r["power_cuts"]
    lines = [
        "# Offline update: archive, apply, power cuts",
        "",
        f"Machine: {one_line(r['machine'])}. QEMU under TCG (no usable KVM), one VM.",
        "",
        "| figure | value | goal |",
        "|---|---|---|",
        f"| archive size (zstd -{a['level']} --long=27) | {a['bytes'] / 1e6:.1f} MB "
        f"(root {a['root_bytes'] / 1e6:.1f} MB + UKI {a['uki_bytes'] / 1e6:.1f} MB) | at most 120 MB |",
        f"| the whole disk as qcow2, for comparison | {a['qcow2_bytes'] / 1e6:.1f} MB | |",
        f"| time to make the archive (compress + hash + sign + tar) | {a['make_s']} s | |",
        f"| archive reproducible (written twice, same bytes) | {a['reproducible']} | yes |",
        f"| `lbctl update apply` (verify to UKI install) | {t['apply_s']} s | |",
        f"| from `apply` to READY on {t['ready_version']} (reboot included) | {t['apply_to_ready_s']} s | |",
        f"| power cuts at random moments of an apply | {loop['kills']} | at least 50 |",
        f"| ... that did not boot | {loop['did_not_boot']} | 0 |",
        f"| ... that booted v1 / v2 | {loop['booted'].get('0.1.0', 0)} / {loop['booted'].get('0.2.0', 0)} | |",
        f"| ... with a damaged GPT or ESP | {loop['damaged_disk']} | 0 |",
        "",
        "Apply steps (seconds): " + ", ".join(f"{name} {s}" for name, s in t["steps_s"].items()),
        "",
        f"Cut moments: {loop['cut_min_s']} to {loop['cut_max_s']} s after the apply started (median "
        f"{loop['cut_median_s']} s; the uncut apply took {t['apply_s']} s). Seed {loop['seed']}.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    machine = describe()
    dist = settings.path("LB_DIST_DIR")
    v1_qcow2 = artifact(load_manifest(dist), dist, "kvm", ".qcow2")
    v1 = BuiltImage.load(settings.path("LB_BUILD_DIR") / "image.json")
    assert v1 is not None, "no built image: run make image"
    v1_disk = Path(v1.raw)

    say("building v2 and its archive (zstd -19)")
    shutil.rmtree(updates.WORK / "build" / "update", ignore_errors=True)
    started = time.monotonic()
    built, archive, checksum = updates.build_v2(level=arc.ZSTD_LEVEL)
    made = round(time.monotonic() - started, 1)
    first = arc.sha256_file(archive)
    updates.build_v2(level=arc.ZSTD_LEVEL)  # the compressed payloads are reused: tar + signature again
    opened = arc.open_verified(archive, checksum, [updates.signing_key().public_key()])
    archive_figures = {
        "level": arc.ZSTD_LEVEL,
        "bytes": archive.stat().st_size,
        "root_bytes": opened.manifest.root.bytes,
        "uki_bytes": opened.manifest.uki.bytes,
        "qcow2_bytes": v1_qcow2.stat().st_size,
        "make_s": made,
        "reproducible": "yes" if arc.sha256_file(archive) == first else "NO",
    }
    say(f"archive: {archive_figures}")

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-update-") as scratch:
        tmp = Path(scratch)
        key, public = provision.make_ssh_key(tmp)

        def fresh() -> tuple[updates.Appliance, str]:
            lab = updates.Appliance(v1_disk, tmp / "lab", key, public)
            assert lab.boot() == "0.1.0"
            return lab, lab.upload(archive, checksum)[0]

        lab, remote = fresh()
        apply_figures = apply_to_ready(lab, remote)
        say(f"apply: {apply_figures}")
        lab.vm.stop()  # type: ignore[union-attr]
        window = apply_figures["apply_s"] + 3.0
        booted: dict[str, int] = {}
        cuts, damaged, did_not_boot = [], 0, 0
        lab, remote = fresh()
        for i in range(args.kills):
            cut = round(rng.uniform(0.5, window), 1)
            cuts.append(cut)
            lab.apply_until(remote, None, kill_after=cut)
            try:
                lab.check_disk()
            except AssertionError as exc:
                damaged += 1
                say(f"cut {i + 1}: damaged disk: {exc}")
            try:
                version = lab.boot(timeout=600)
            except Exception as exc:  # noqa: BLE001 - counted, the loop goes on
                did_not_boot += 1
                version = "none"
                say(f"cut {i + 1}: DID NOT BOOT: {exc}")
            booted[version] = booted.get(version, 0) + 1
            say(f"cut {i + 1}/{args.kills} at {cut} s: booted {version}")
            if version != "0.1.0":
                lab.vm.stop()  # type: ignore[union-attr]
                lab, remote = fresh()
        if lab.vm is not None:
            lab.vm.stop()
    results = {
        "machine": machine,
        "archive": archive_figures,
        "apply": apply_figures,
        "power_cuts": {
            "kills": args.kills,
            "seed": args.seed,
            "booted": booted,
            "did_not_boot": did_not_boot,
            "damaged_disk": damaged,
            "cut_min_s": min(cuts),
            "cut_max_s": max(cuts),
            "cut_median_s": statistics.median(cuts),
        },
    }
    publish(args.out, "results", results, markdown(results))
    return 0 if did_not_boot == 0 and damaged == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
