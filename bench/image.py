#!/usr/bin/env python3
"""Benchmark: building the appliance image and booting it to READY.

    sudo .venv/bin/python -m bench.image [--warm-runs 3] [--boots 5] [--keep-cache]

Works in its own scratch directory (--scratch, default /var/tmp/lbimage-bench), so that the
cache and build/ of the checkout are left alone, and records:

1. cold build: mkosi with an empty package and incremental cache (downloads included);
2. rebuild from the same inputs (--force, warm cache): its time, and whether the root partition,
   the UKI and the whole disk are bit-identical to the cold build's (reproducibility);
3. warm rebuild after one overlay file changes (a comment appended to a sysctl file, restored
   afterwards), --warm-runs times;
4. sizes: the raw disk's used bytes, the root file system's used bytes (df in the guest), the
   UKI, and the compressed KVM qcow2 as `lbimage build` ships it;
5. boot to READY under TCG (and KVM where kvm_usable() says it works), --boots times, from QEMU's
   start to the `LBAPPLIANCE READY` line, 4 virtio NICs, provisioned with an SSH key; with each
   boot `systemd-analyze critical-chain lb-ready.service` from the guest (the median boot's is
   shown), and the page-fault probe taken again just before the boots.

    sudo .venv/bin/python -m bench.image --boot-only [--boots 5]

boots the checkout's last built image only (build/mkosi), and replaces the boot figures of
bench/image.json with the new ones.

Writes bench/image.json and bench/image.md. Medians are quoted; the raw runs are kept in the JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from bench.machine import describe, one_line, page_fault_seconds
from builder import mkosi, progress, provision, qemu, settings
from builder.mkosi import BuiltImage, allocated_bytes
from builder.packaging import load_profiles, package

ROOT = Path(__file__).resolve().parent.parent

# The naive baseline from the foundation issue: a bare trixie mkosi image with kernel, haproxy, heartbeat.
BASELINE = {"build_s": 90, "used_mb": 840, "compressed_mb": 380, "boot_to_login_s": 60}
GOALS = {"warm_rebuild_s": 60, "used_mb": 450, "boot_to_ready_tcg_s": 40}
CHANGED_FILE = ROOT / "overlay/usr/lib/sysctl.d/60-lbappliance.conf"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def timed_build(scratch: Path, name: str, virtual_size: int) -> tuple[float, BuiltImage]:
    with environment(LB_CACHE_DIR=str(scratch / "cache"), LB_BUILD_DIR=str(scratch / name)):
        started = time.monotonic()
        built = mkosi.build(virtual_size=virtual_size, force=True)
        return round(time.monotonic() - started, 1), built


@contextmanager
def overlay_file_changed(n: int) -> Iterator[None]:
    """One overlay file gets a new comment line (so the inputs digest and the image change)."""
    original = CHANGED_FILE.read_bytes()
    CHANGED_FILE.write_bytes(original + f"# bench: warm rebuild {n} at {time.time()}\n".encode())
    try:
        yield
    finally:
        CHANGED_FILE.write_bytes(original)


def boot_times(raw: Path, scratch: Path, boots: int, accel: str) -> tuple[list[float], int, list[str]]:
    """Seconds from QEMU's start to READY, per boot; the root file system's used bytes; and each
    boot's critical chain to lb-ready.service (systemd-analyze critical-chain(1))."""
    key, public = provision.make_ssh_key(scratch)
    seconds, root_used, chains = [], 0, []
    for n in range(boots):
        spec = qemu.VMSpec(
            disk=raw,
            nics=[qemu.Nic(ssh=True)] + [qemu.Nic() for _ in range(3)],
            accel=accel,
            credentials=provision.as_credentials({"admin-ssh-keys": public}),
        )
        vm = qemu.boot_until_ready(spec, scratch / f"boot-{accel}-{n}", ssh_key=key, name=f"bench-{n}")
        try:
            seconds.append(round(vm.ready_seconds, 1))
            chains.append(vm.ssh("systemd-analyze critical-chain --no-pager lb-ready.service").stdout)
            if not root_used:
                df = vm.ssh("df -B1 --output=used / | tail -1").stdout
                root_used = int(df.strip())
        finally:
            vm.stop()
    return seconds, root_used, chains


def boot_figures(raw: Path, scratch: Path, boots: int) -> tuple[dict, int]:
    """result["boot"]: per accelerator the READY times, their median, the median boot's critical
    chain, and the page-fault probe taken just before; and the root file system's used bytes."""
    figures: dict = {}
    root_used = 0
    for accel in ("tcg", "kvm") if qemu.kvm_usable() else ("tcg",):
        probe = page_fault_seconds()
        with progress.step(f"{boots} boots to READY under {accel.upper()}"):
            seconds, root_used, chains = boot_times(raw, scratch, boots, accel)
        median = statistics.median(seconds)
        figures[accel] = {
            "ready_s": seconds,
            "median_s": median,
            "page_fault_1gib_s_before": probe,
            "critical_chain_of_median_boot": chains[min(range(len(seconds)), key=lambda n: abs(seconds[n] - median))],
        }
    if "kvm" not in figures:
        figures["kvm"] = "not measured: KVM guests do not run on this machine (kvm_usable() is False)"
    return figures, root_used


def boot_only(args: argparse.Namespace) -> int:
    """Boot the checkout's last build and put the new boot figures into image.json."""
    built = BuiltImage.load(settings.path("LB_BUILD_DIR") / "image.json")
    if built is None:
        sys.exit("no image built in this checkout yet: run 'make image' first")
    result = json.loads((args.out / "image.json").read_text())
    args.scratch.mkdir(parents=True, exist_ok=True)
    result["boot"], _ = boot_figures(Path(built.raw), args.scratch, args.boots)
    result["boot"]["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    result["boot"]["version"] = built.version
    machine = describe()
    result["boot"]["machine"] = f"{machine['cpu']}, {machine['cores']} cores"
    (args.out / "image.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "image.md").write_text(markdown(result))
    print((args.out / "image.md").read_text())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--scratch", type=Path, default=Path("/var/tmp/lbimage-bench"))
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--boots", type=int, default=5)
    parser.add_argument(
        "--keep-cache", action="store_true", help="keep the scratch cache (the next cold build is then warm)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench")
    parser.add_argument("--render-only", action="store_true", help="rewrite image.md from image.json")
    parser.add_argument("--boot-only", action="store_true", help="only the boot figures, of the checkout's build")
    args = parser.parse_args()
    if args.render_only:
        (args.out / "image.md").write_text(markdown(json.loads((args.out / "image.json").read_text())))
        return 0
    if os.geteuid() != 0:
        sys.exit("bench/image.py needs root (mkosi and QEMU)")
    if args.boot_only:
        return boot_only(args)

    # One timestamp for every build of the run (by default it is the last commit's time, which a
    # commit during the run would change, and with it every file's mtime in the image).
    os.environ["SOURCE_DATE_EPOCH"] = settings.get("SOURCE_DATE_EPOCH")
    profiles = load_profiles("kvm")
    size = profiles.hardware.disk_bytes
    result: dict = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": describe(mkosi=["mkosi", "--version"], qemu=["qemu-system-x86_64", "--version"]),
        "baseline": BASELINE,
        "goals": GOALS,
    }
    if not args.keep_cache and args.scratch.exists():
        shutil.rmtree(args.scratch)
    args.scratch.mkdir(parents=True, exist_ok=True)
    try:
        with progress.step("cold build (empty cache)"):
            cold_s, cold = timed_build(args.scratch, "cold", size)
        with progress.step("rebuild from the same inputs (warm cache)"):
            again_s, again = timed_build(args.scratch, "again", size)
        result["build"] = {"cold_s": cold_s, "same_inputs_rebuild_s": again_s}
        result["reproducible"] = {
            part: sha256(Path(getattr(cold, attr))) == sha256(Path(getattr(again, attr)))
            for part, attr in (("root_partition", "root_partition"), ("uki", "uki"), ("disk", "raw"))
        }
        warm = []
        for n in range(args.warm_runs):
            with progress.step(f"warm rebuild {n + 1}/{args.warm_runs} after one overlay file changed"):
                with overlay_file_changed(n):
                    warm.append(timed_build(args.scratch, "warm", size)[0])
        result["build"].update({"warm_after_overlay_change_s": warm, "warm_median_s": statistics.median(warm)})

        raw = Path(again.raw)
        with progress.step("compressed KVM qcow2, as shipped"):
            dist = args.scratch / "dist"
            package(again, profiles, dist)
            qcow2 = next(dist.glob("*.qcow2"))
        result["size"] = {
            "raw_virtual_bytes": raw.stat().st_size,
            "raw_used_bytes": allocated_bytes(raw),
            "root_partition_used_bytes": allocated_bytes(Path(again.root_partition)),
            "uki_bytes": Path(again.uki).stat().st_size,
            "qcow2_compressed_bytes": qcow2.stat().st_size,
        }

        result["boot"], result["size"]["root_fs_used_bytes"] = boot_figures(raw, args.scratch, args.boots)
    finally:
        if not args.keep_cache:
            shutil.rmtree(args.scratch, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "image.json").write_text(json.dumps(result, indent=2) + "\n")
    # Every run is also kept, so the Markdown can show how the figures move between runs.
    runs = args.out / "runs"
    runs.mkdir(exist_ok=True)
    (runs / f"image-{result['date'][:16].replace(' ', 'T').replace(':', '')}.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )
    (args.out / "image.md").write_text(markdown(result))
    print((args.out / "image.md").read_text())
    return 0


def mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def verdict(ok: bool) -> str:
    return "ok" if ok else "**over**"


def markdown(r: dict) -> str:
    b, s, g, base = r["build"], r["size"], r["goals"], r["baseline"]
    tcg = r["boot"]["tcg"]
    kvm = r["boot"]["kvm"]
    lines = [
        "# Image benchmark",
        "",
        f"Run {r['date']} with `bench/image.py`. Machine: {one_line(r['machine'])}",
        "",
        "| what | measured | goal | naive baseline |",
        "|---|---:|---:|---:|",
        f"| cold build, empty cache (downloads included) | {b['cold_s']} s | | {base['build_s']} s |",
        f"| rebuild, same inputs, warm cache | {b['same_inputs_rebuild_s']} s | | |",
        f"| warm rebuild after one overlay file changed (median of {len(b['warm_after_overlay_change_s'])}: "
        f"{', '.join(str(x) for x in b['warm_after_overlay_change_s'])} s) | {b['warm_median_s']} s "
        f"| ≤ {g['warm_rebuild_s']} s {verdict(b['warm_median_s'] <= g['warm_rebuild_s'])} | |",
        f"| used: raw disk (allocated blocks of the 20 GiB sparse file) | {mb(s['raw_used_bytes'])} "
        f"| ≤ {g['used_mb']} MB {verdict(s['raw_used_bytes'] <= g['used_mb'] * 1e6)} | {base['used_mb']} MB |",
        f"| used: root file system (df / in the guest) | {mb(s.get('root_fs_used_bytes', 0))} | | |",
        f"| compressed: KVM qcow2 as shipped | {mb(s['qcow2_compressed_bytes'])} | | {base['compressed_mb']} MB |",
        f"| UKI (kernel + initrd + command line) | {mb(s['uki_bytes'])} | | |",
        f"| boot to READY under TCG (median of {len(tcg['ready_s'])}: {', '.join(str(x) for x in tcg['ready_s'])} s) "
        f"| {tcg['median_s']} s | ≤ {g['boot_to_ready_tcg_s']} s "
        f"{verdict(tcg['median_s'] <= g['boot_to_ready_tcg_s'])} "
        f"| {base['boot_to_login_s']} s to a login prompt |",
    ]
    if isinstance(kvm, dict):
        lines.append(f"| boot to READY under KVM (median of {len(kvm['ready_s'])}) | {kvm['median_s']} s | | |")
    else:
        lines.append(f"| boot to READY under KVM | {kvm} | | |")
    if "critical_chain_of_median_boot" in tcg:
        when = f", booted {r['boot']['date']} (version {r['boot']['version']})" if "date" in r["boot"] else ""
        if "machine" in r["boot"]:  # a --boot-only run, maybe on another host than the builds
            when += f" on {r['boot']['machine']}"
        lines += [
            "",
            f"Critical chain of the median TCG boot (`systemd-analyze critical-chain lb-ready.service`{when}; "
            f"the page-fault probe just before the boots: {tcg['page_fault_1gib_s_before']} s per GiB):",
            "",
            "```",
            tcg["critical_chain_of_median_boot"].rstrip(),
            "```",
        ]
    rep = r["reproducible"]
    lines += [
        "",
        "Ratios against the baseline: warm rebuild "
        f"{b['warm_median_s'] / base['build_s']:.2f}×, used {s['raw_used_bytes'] / 1e6 / base['used_mb']:.2f}×, "
        f"compressed {s['qcow2_compressed_bytes'] / 1e6 / base['compressed_mb']:.2f}×, "
        f"boot {tcg['median_s'] / base['boot_to_login_s']:.2f}× (READY vs. a login prompt).",
        "",
        "Reproducibility (two builds from the same inputs, SOURCE_DATE_EPOCH and mkosi's Seed fixed): "
        + ", ".join(f"{part} {'bit-identical' if same else 'differs'}" for part, same in rep.items())
        + ".",
        "",
    ]
    history = sorted((ROOT / "bench" / "runs").glob("image-*.json"))
    if len(history) > 1:
        lines += [
            "## Every recorded run",
            "",
            "Boot times under TCG follow the host: faulting in fresh memory costs several times more",
            "at some hours than at others on these cloud machines, and a booting guest pays it.",
            "",
            "| run | cold build | warm rebuild | used | boot to READY (TCG, median) | 1 GiB page-fault probe "
            "| reproducible disk |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for path in history:
            h = json.loads(path.read_text())
            lines.append(
                f"| {h['date']} | {h['build']['cold_s']} s | {h['build']['warm_median_s']} s "
                f"| {mb(h['size']['raw_used_bytes'])} | {h['boot']['tcg']['median_s']} s "
                f"| {h['machine'].get('page_fault_1gib_s', 'not recorded')} "
                f"| {'yes' if h['reproducible']['disk'] else 'no'} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
