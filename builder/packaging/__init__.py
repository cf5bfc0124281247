"""Packaging: the built raw image -> one artifact per hypervisor in dist/, plus dist/manifest.json.

    profiles = load_profiles("vmware,kvm")      # hypervisors/profile.yaml + hypervisors/<name>.yaml
    package(built, profiles, dist)

The raw image is converted once per disk format (formats.py), the conversions and the bundling
run in parallel on as many workers as there are cores (compression is what costs), every
descriptor renders from its hypervisor's one template (bundles.py), and dist/ is only touched at
the end: a failed run leaves the previous artifacts and their manifest as they were.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import manifest, progress
from ..mkosi import BuiltImage
from . import bundles, formats, uki
from .profiles import Hypervisor, ProfileError, Profiles, load_profiles

__all__ = ["load_profiles", "package", "Profiles", "ProfileError", "SIZE_BUDGET_BYTES"]

SIZE_BUDGET_BYTES = 200 * 10**6  # per compressed artifact file (the project's budget)
WORK_DIR = ".work"  # inside dist/, so that finished files move in with a rename


@dataclass(frozen=True)
class Job:
    title: str
    run: Callable[[dict[str, Any]], Any]  # gets {dependency key: its result}
    deps: tuple[str, ...] = ()


def run_jobs(jobs: dict[str, Job], workers: int) -> dict[str, Any]:
    """Run jobs on a thread pool as soon as their dependencies are done; {key: result}.

    Threads suffice: the work is in qemu-img subprocesses and in zlib, which releases the GIL.
    The first failure cancels what has not started and is raised.
    """
    for key, job in jobs.items():
        unknown = [d for d in job.deps if d not in jobs]
        if unknown:
            raise ValueError(f"job {key} depends on unknown jobs {unknown}")
    results: dict[str, Any] = {}
    waiting = dict(jobs)
    running: dict[Future, str] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            while waiting or running:
                for key, job in list(waiting.items()):
                    if all(d in results for d in job.deps):
                        running[pool.submit(_timed, job, {d: results[d] for d in job.deps})] = key
                        del waiting[key]
                if not running:
                    raise ValueError(f"jobs {sorted(waiting)} can never start (dependency cycle)")
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    results[running.pop(future)] = future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results


def _timed(job: Job, inputs: dict[str, Any]) -> Any:
    # progress.step keeps one nesting depth for the whole process; parallel jobs print flat lines.
    progress.say(f"==> {job.title}")
    started = time.monotonic()
    try:
        result = job.run(inputs)
    except BaseException:
        progress.say(f"    {job.title}: failed after {time.monotonic() - started:.1f} s")
        raise
    progress.say(f"    {job.title}: done in {time.monotonic() - started:.1f} s")
    return result


def preflight(built: BuiltImage, profiles: Profiles) -> Path:
    """Refuse to package what could not work: a raw image of the wrong size, or a UKI whose initrd
    lacks a module a selected platform needs to reach its root disk."""
    raw = Path(built.raw)
    if not raw.is_file():
        raise ValueError(f"raw image {raw} does not exist; build it first")
    size = raw.stat().st_size
    if size != profiles.hardware.disk_bytes:
        raise ValueError(
            f"raw image {raw} is {size} bytes, but hypervisors/profile.yaml asks for a "
            f"{profiles.hardware.disk_gib} GiB ({profiles.hardware.disk_bytes}-byte) disk"
        )
    wanted = sorted({m for hv in profiles.hypervisors for m in hv.guest_modules})
    if wanted:
        missing = uki.missing_modules(Path(built.uki), wanted)
        if missing:
            users = {m: [hv.name for hv in profiles.hypervisors if m in hv.guest_modules] for m in missing}
            raise ValueError(
                "the UKI's initrd lacks kernel modules the hypervisors need: "
                + ", ".join(f"{m} ({', '.join(u)})" for m, u in users.items())
                + "; see image/initrd/modules"
            )
    return raw


def package(built: BuiltImage, profiles: Profiles, dist: Path) -> None:
    """Write every selected hypervisor's artifact into `dist` and then dist/manifest.json."""
    raw = preflight(built, profiles)
    names = [hv.name for hv in profiles.hypervisors]
    stem = f"{profiles.product.name}_{built.version}"
    workers = max(1, min(os.cpu_count() or 1, 4))
    dist.mkdir(parents=True, exist_ok=True)
    work = dist / WORK_DIR
    shutil.rmtree(work, ignore_errors=True)
    (work / "out").mkdir(parents=True)
    context = {
        "product": profiles.product,
        "version": built.version,
        "built": built.built,
        "hardware": profiles.hardware,
    }
    seed = f"{built.inputs_digest}:{built.version}"

    def convert(name: str, options: dict[str, Any]) -> Callable[[dict[str, Any]], bundles.Disk]:
        fmt = formats.DISK_FORMATS[name]

        def run(_: dict[str, Any]) -> bundles.Disk:
            target = work / f"{stem}{fmt.suffix}"
            fmt.convert(fmt, raw, target, options, seed)
            return bundles.Disk(target, fmt.name, fmt.qemu_format, profiles.hardware.disk_bytes)

        return run

    def bundle(hv: Hypervisor) -> Callable[[dict[str, Any]], list[Path]]:
        def run(inputs: dict[str, Any]) -> list[Path]:
            scratch = work / hv.name
            scratch.mkdir()
            job = bundles.BundleJob(
                hv,
                inputs[f"convert:{hv.disk_format}"],
                {**context, "hv": hv, "nics": hv.nics, "vars": hv.vars},
                stem,
                scratch,
                work / "out",
                built.source_date_epoch,
            )
            return bundles.BUNDLES[hv.bundle](job)

        return run

    jobs = {
        f"convert:{name}": Job(
            f"convert to {name} ({formats.DISK_FORMATS[name].description})", convert(name, dict(options))
        )
        for name, options in profiles.formats().items()
    }
    jobs.update(
        {
            f"bundle:{hv.name}": Job(f"{hv.title}: {hv.bundle} bundle", bundle(hv), (f"convert:{hv.disk_format}",))
            for hv in profiles.hypervisors
        }
    )
    try:
        with progress.step(f"package {', '.join(names)} from {raw.name} ({workers} workers)"):
            results = run_jobs(jobs, workers)
            with progress.step(f"publish into {dist} and write {manifest.MANIFEST}"):
                entries = publish(dist, work / "out", profiles, built, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(entries)


def publish(
    dist: Path, out: Path, profiles: Profiles, built: BuiltImage, results: dict[str, Any]
) -> list[dict[str, Any]]:
    """Replace the previous build's files in dist/ by this one's, then write the manifest."""
    try:
        previous = manifest.listed_files(manifest.load(dist))
    except (OSError, ValueError):
        previous = []
    for name in previous:
        (dist / name).unlink(missing_ok=True)
    for path in out.iterdir():
        path.replace(dist / path.name)
    entries = []
    for hv in profiles.hypervisors:
        files = [manifest.file_entry(dist, dist / p.name) for p in results[f"bundle:{hv.name}"]]
        entries.append(manifest.artifact_entry(hv.name, hv.disk_format, profiles.hardware.disk_bytes, files))
    manifest.write(dist, profiles.product.name, built.version, built.built, entries)
    return entries


def report(entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        for f in entry["files"]:
            over = "  OVER THE 200 MB BUDGET" if f["bytes"] > SIZE_BUDGET_BYTES else ""
            progress.say(f"{entry['hypervisor']:<8} {f['bytes'] / 1e6:8.1f} MB  {f['path']}{over}")
