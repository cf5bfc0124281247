"""How an artifact is shipped: the bundle kinds a hypervisor's YAML can name.

    ova    tar (ustar) of <stem>.ovf, <stem>.mf, then the disk: the order ovftool and vSphere demand
    zip    <stem>-<hv>.<ext> (the descriptor) and the disk, deflated; unzipping also makes the disk
           dense, which Hyper-V needs (it refuses sparse VHDX files)
    files  the disk and <stem>-<hv>.<ext> side by side in dist/ (the disk may be shared)

Every descriptor renders through builder.templates, from the hypervisor's one template. Archive
members carry SOURCE_DATE_EPOCH as their time and root as owner, so that they do not depend on
who packaged them when.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import templates
from ..manifest import sha256_file
from . import profiles
from .profiles import Hypervisor

USTAR_MAX_MEMBER = 8 * 2**30 - 1  # an ustar size field has 11 octal digits
ZIP_EPOCH_MIN = 315532800  # 1980-01-01: zip cannot express earlier times


@dataclass(frozen=True)
class Disk:
    """A converted disk, as templates see it."""

    path: Path
    format: str  # "vmdk", "qcow2", ...
    qemu_format: str
    virtual_size: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size


@dataclass(frozen=True)
class BundleJob:
    hypervisor: Hypervisor
    disk: Disk
    context: dict[str, Any]  # template context without the disk
    stem: str  # "lbappliance_0.1.0"
    work: Path  # scratch directory of this hypervisor
    out: Path  # where finished files go (moved into dist/ at the end)
    epoch: int  # SOURCE_DATE_EPOCH

    def render_descriptor(self, directory: Path) -> Path:
        target = directory / f"{self.stem}-{self.hypervisor.name}{self.hypervisor.descriptor_suffix}"
        return templates.write(self.hypervisor.template, target, disk=self.disk, **self.context)


def ova(job: BundleJob) -> list[Path]:
    ovf = job.work / f"{job.stem}.ovf"
    templates.write(job.hypervisor.template, ovf, disk=job.disk, **job.context)
    mf = job.work / f"{job.stem}.mf"
    # Exactly "SHA256(<file>)= <hex>": vCenter rejects sha256sum's and OpenSSL 3's spellings.
    mf.write_text("".join(f"SHA256({p.name})= {sha256_file(p)}\n" for p in (ovf, job.disk.path)))
    target = job.out / f"{job.stem}-{job.hypervisor.name}.ova"
    with tarfile.open(target, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member in (ovf, mf, job.disk.path):  # .ovf first, then .mf, then the disk
            _add_tar_member(tar, member, job.epoch)
    return [target]


def _add_tar_member(tar: tarfile.TarFile, path: Path, epoch: int) -> None:
    size = path.stat().st_size
    if size > USTAR_MAX_MEMBER:
        raise ValueError(f"{path.name}: {size} bytes is over ustar's 8 GiB member limit")
    info = tarfile.TarInfo(path.name)
    info.size, info.mtime, info.mode = size, epoch, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    with path.open("rb") as f:
        tar.addfile(info, f)


def zip_(job: BundleJob) -> list[Path]:
    descriptor = job.render_descriptor(job.work)
    target = job.out / f"{job.stem}-{job.hypervisor.name}.zip"
    stamp = time.gmtime(max(job.epoch, ZIP_EPOCH_MIN))[:6]
    with zipfile.ZipFile(target, "w", allowZip64=True) as archive:
        for member in (descriptor, job.disk.path):  # the small descriptor first
            info = zipfile.ZipInfo(member.name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            size = member.stat().st_size
            with member.open("rb") as src, archive.open(info, "w", force_zip64=size >= 2**31) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    return [target]


def files(job: BundleJob) -> list[Path]:
    disk = job.out / job.disk.name
    try:
        os.link(job.disk.path, disk)  # hypervisors sharing the disk share the file
    except FileExistsError:
        pass
    return [disk, job.render_descriptor(job.out)]


BUNDLES: dict[str, Callable[[BundleJob], list[Path]]] = {"ova": ova, "zip": zip_, "files": files}

# profiles.py validates bundle names without importing this module; keep the two lists one.
assert set(BUNDLES) == set(profiles.BUNDLES)
