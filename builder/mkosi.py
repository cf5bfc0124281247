"""Drives mkosi to build the appliance's raw disk image, then lays it out at its virtual size.

mkosi does the composing (packages, overlay, initrd, UKI, partitions); this module supplies the
per-build settings (version, mirrors, caches, SOURCE_DATE_EPOCH), shows mkosi's steps as progress,
and skips the build when none of its inputs changed since the last one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lbctl.appliance import IMAGE_ID

from . import ROOT, progress, settings, templates, version

IMAGE_DIR = ROOT / "image"
TRUSTED_KEYS_DIR = "/usr/lib/lbappliance/keys"  # where the image carries the release public keys
# Everything mkosi places in the image besides packages (mkosi.conf's ExtraTrees=).
TREES = (ROOT / "overlay", ROOT / "lbctl")
RELEASE = "trixie"


class BuildError(RuntimeError):
    pass


@dataclass
class BuiltImage:
    """What one build produced; stored as build/image.json so later steps find it."""

    version: str
    raw: str  # whole-disk raw image, extended to the virtual size
    root_partition: str  # the root file system on its own (for updates and reproducibility)
    uki: str
    package_list: str  # mkosi's list of the image's packages (its 'manifest' output)
    virtual_size: int
    inputs_digest: str
    built: str  # ISO 8601
    source_date_epoch: int

    @classmethod
    def load(cls, path: Path) -> BuiltImage | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def public_keys_tree(build_dir: Path) -> Path:
    """The release public keys the image trusts (release.pub, next.pub), as a tree for mkosi."""
    from .keys import NAMES, key_dir

    tree = build_dir / "trusted-keys"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    keys = key_dir()
    for name in NAMES:
        if keys.public(name).exists():
            shutil.copyfile(keys.public(name), tree / f"{name}.pub")
            os.utime(tree / f"{name}.pub", (0, 0))
    return tree


def inputs_digest(image_version: str, virtual_size: int, trusted_keys: str = "") -> str:
    """A digest of everything that shapes the raw image: mkosi config, overlay, lbctl, settings,
    version and the release keys it trusts."""
    h = hashlib.sha256()
    h.update(trusted_keys.encode())
    for base in (IMAGE_DIR, *TREES):
        for path in sorted(p for p in base.rglob("*") if p.is_file() or p.is_symlink()):
            if "__pycache__" in path.parts:
                continue
            h.update(str(path.relative_to(ROOT)).encode() + b"\0")
            h.update(path.readlink().as_posix().encode() if path.is_symlink() else path.read_bytes())
            h.update(b"\1" if not path.is_symlink() and path.stat().st_mode & 0o111 else b"\0")
    for env in ("LB_MIRROR", "LB_SECURITY_MIRROR", "LB_SNAPSHOT", "SOURCE_DATE_EPOCH"):
        h.update(f"{env}={settings.get(env)}\n".encode())
    h.update(f"version={image_version}\nsize={virtual_size}\n".encode())
    return h.hexdigest()


def mkosi_version() -> tuple[int, ...]:
    out = subprocess.run(["mkosi", "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not match:
        raise BuildError(f"cannot tell the mkosi version from {out!r}")
    return tuple(int(g) for g in match.groups() if g is not None)


def render_package_manager_tree(build_dir: Path) -> Path:
    tree = build_dir / "pkgmngr"
    mirror, security = settings.apt_mirrors()
    templates.write(
        IMAGE_DIR / "templates" / "mkosi.sources.j2",
        tree / "etc/apt/sources.list.d/mkosi.sources",
        mirror=mirror,
        security_mirror=security,
        release=RELEASE,
        snapshot=bool(settings.get("LB_SNAPSHOT")),
    )
    return tree


def run_mkosi(args: list[str], log_path: Path) -> None:
    """Run mkosi, keep its whole output in a log, and show its own step lines ('‣ ...')."""
    started = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1
        )
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            log.write(line)
            tail = (tail + [line.rstrip()])[-40:]
            if line.startswith("‣"):
                progress.say(f"[{time.monotonic() - started:6.1f} s] {line.rstrip()}")
        rc = proc.wait()
    if rc != 0:
        sys.stderr.write("\n".join(tail) + "\n")
        raise BuildError(f"mkosi failed with exit code {rc}; the whole log is in {log_path}")


def extend_to_virtual_size(raw: Path, virtual_size: int) -> None:
    """Grow the sparse raw image to the disk size the hypervisors see, and move the backup GPT
    to the new end. The data partition then grows into the free space at first boot."""
    if raw.stat().st_size > virtual_size:
        raise BuildError(f"{raw} is {raw.stat().st_size} bytes, larger than the {virtual_size}-byte virtual disk")
    with raw.open("r+b") as f:
        f.truncate(virtual_size)
    subprocess.run(["sfdisk", "--quiet", "--relocate", "gpt-bak-std", str(raw)], check=True, stdout=subprocess.DEVNULL)


def build(virtual_size: int, force: bool = False) -> BuiltImage:
    build_dir = settings.path("LB_BUILD_DIR")
    cache_dir = settings.path("LB_CACHE_DIR")
    image_version = version()
    from .keys import ensure_for_build

    trusted = ensure_for_build().public_keys()
    digest = inputs_digest(image_version, virtual_size, "".join(k.text() for k in trusted))
    record = build_dir / "image.json"
    previous = BuiltImage.load(record)
    if not force and previous and previous.inputs_digest == digest and Path(previous.raw).exists():
        progress.say(f"image {image_version} is up to date ({previous.raw}); use --force to rebuild")
        return previous

    output_dir = build_dir / "mkosi"
    if output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True)
    for sub in ("mkosi", "packages", "workspace"):
        (cache_dir / sub).mkdir(parents=True, exist_ok=True)
    epoch = int(settings.get("SOURCE_DATE_EPOCH"))
    tree = render_package_manager_tree(build_dir)
    keys_tree = public_keys_tree(build_dir)
    args = [
        "mkosi",
        "--directory",
        str(IMAGE_DIR),
        f"--image-version={image_version}",
        f"--output-dir={output_dir}",
        f"--cache-dir={cache_dir / 'mkosi'}",
        f"--package-cache-dir={cache_dir / 'packages'}",
        f"--workspace-dir={cache_dir / 'workspace'}",
        f"--source-date-epoch={epoch}",
        f"--package-manager-tree={tree}:/" if mkosi_version() < (25,) else f"--sandbox-tree={tree}:/",
        f"--extra-tree={keys_tree}:{TRUSTED_KEYS_DIR}",
        "--force",
        "build",
    ]
    with progress.step(f"mkosi build of {IMAGE_ID} {image_version}"):
        run_mkosi(args, build_dir / "mkosi.log")

    stem = f"{IMAGE_ID}_{image_version}"
    raw = output_dir / f"{stem}.raw"
    with progress.step(f"lay out the disk at its virtual size ({virtual_size // 2**30} GiB)"):
        extend_to_virtual_size(raw, virtual_size)
    built = BuiltImage(
        version=image_version,
        raw=str(raw),
        root_partition=str(output_dir / f"{stem}.root.raw"),
        uki=str(output_dir / f"{stem}.efi"),
        package_list=str(output_dir / f"{stem}.manifest"),
        virtual_size=virtual_size,
        inputs_digest=digest,
        built=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        source_date_epoch=epoch,
    )
    built.save(record)
    progress.say(f"raw image: {raw} ({allocated_bytes(raw) / 1e6:.0f} MB used)")
    return built


def allocated_bytes(path: Path) -> int:
    """Bytes a sparse file really occupies: the image's 'used' size."""
    return path.stat().st_blocks * 512
