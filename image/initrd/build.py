#!/usr/bin/env python3
"""Builds the appliance's initrd from the image being built (run by mkosi.finalize).

The archive holds busybox, /init and the kernel modules listed in image/initrd/modules with their
dependencies, decompressed (the kernel loads plain .ko files fastest and busybox's insmod cannot
read .ko.xz). Everything is written in sorted order with fixed owners and times, so the same image
tree always gives the same bytes.

    build.py BUILDROOT OUTPUT.cpio
"""

from __future__ import annotations

import lzma
import os
import stat
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def normalize(name: str) -> str:
    return name.replace("-", "_")


def module_name(path: str) -> str:
    return normalize(Path(path).name.split(".ko")[0])


class Modules:
    """The kernel's module index: file of each module, its dependencies, and the built-ins."""

    def __init__(self, moddir: Path):
        self.moddir = moddir
        self.path: dict[str, str] = {}
        self.deps: dict[str, list[str]] = {}
        for line in (moddir / "modules.dep").read_text().splitlines():
            target, _, rest = line.partition(":")
            name = module_name(target)
            self.path[name] = target
            self.deps[name] = [module_name(d) for d in rest.split()]
        builtin = moddir / "modules.builtin"
        self.builtin = {module_name(line) for line in builtin.read_text().splitlines()} if builtin.exists() else set()

    def load_order(self, wanted: list[str]) -> list[str]:
        """Every wanted module after its dependencies, each once; unknown names are an error."""
        order: list[str] = []

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if name in order or name in self.builtin:
                return
            if name not in self.path:
                raise SystemExit(
                    f"initrd: module {name!r} (needed by {' <- '.join(chain) or 'the list'}) "
                    f"is neither in modules.dep nor built in"
                )
            for dep in self.deps[name]:
                visit(dep, chain + (name,))
            order.append(name)

        for name in wanted:
            visit(normalize(name), ())
        return order

    def read(self, name: str) -> bytes:
        data = (self.moddir / self.path[name]).read_bytes()
        if self.path[name].endswith(".xz"):
            return lzma.decompress(data)
        if self.path[name].endswith(".zst"):
            raise SystemExit(f"initrd: {self.path[name]}: zstd-compressed modules are not supported")
        return data


class Cpio:
    """A newc ('070701') archive writer with deterministic metadata."""

    def __init__(self, mtime: int):
        self.mtime = mtime
        self.entries: dict[str, tuple[int, bytes, int]] = {}  # path -> (mode, data, rdev)

    def add(self, path: str, mode: int, data: bytes = b"", rdev: int = 0) -> None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            self.entries.setdefault("/".join(parts[:i]), (stat.S_IFDIR | 0o755, b"", 0))
        self.entries[path] = (mode, data, rdev)

    def bytes(self) -> bytes:
        out = bytearray()
        for ino, path in enumerate(sorted(self.entries), 1):
            mode, data, rdev = self.entries[path]
            out += self.header(path, ino, mode, len(data), rdev) + data
            out += b"\0" * (-len(out) % 4)
        out += self.header("TRAILER!!!", 0, 0, 0, 0)
        out += b"\0" * (-len(out) % 512)
        return bytes(out)

    def header(self, path: str, ino: int, mode: int, size: int, rdev: int) -> bytes:
        name = path.encode() + b"\0"
        fields = (
            ino,
            mode,
            0,
            0,
            2 if stat.S_ISDIR(mode) else 1,
            self.mtime,
            size,
            0,
            0,
            os.major(rdev),
            os.minor(rdev),
            len(name),
            0,
        )
        head = b"070701" + b"".join(b"%08x" % f for f in fields) + name
        return head + b"\0" * (-len(head) % 4)


def wanted_modules() -> list[str]:
    lines = (HERE / "modules").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def build(buildroot: Path, output: Path) -> None:
    kernels = sorted((buildroot / "usr/lib/modules").iterdir())
    if len(kernels) != 1:
        raise SystemExit(
            f"initrd: expected one kernel in {buildroot}/usr/lib/modules, found {[k.name for k in kernels]}"
        )
    modules = Modules(kernels[0])
    order = modules.load_order(wanted_modules())
    archive = Cpio(int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    for d in ("dev", "proc", "sys", "run", "sysroot", "bin", "etc"):
        archive.add(d, stat.S_IFDIR | 0o755)
    # The kernel opens /dev/console for /init's stdio before /init can mount devtmpfs.
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=os.makedev(5, 1))
    archive.add("init", stat.S_IFREG | 0o755, (HERE / "init").read_bytes())
    archive.add("bin/busybox", stat.S_IFREG | 0o755, (buildroot / "usr/bin/busybox").read_bytes())
    for name in order:
        archive.add(f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, modules.read(name))
    archive.add("etc/modules.order", stat.S_IFREG | 0o644, "".join(f"{n}.ko\n" for n in order).encode())
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(archive.bytes())
    print(f"initrd: {len(order)} modules for kernel {kernels[0].name}, {output.stat().st_size / 1e6:.1f} MB: {output}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: build.py BUILDROOT OUTPUT.cpio")
    build(Path(sys.argv[1]), Path(sys.argv[2]))
