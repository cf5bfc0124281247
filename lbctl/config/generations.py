"""The applied configurations on disk: numbered generations and the links that select them.

    <state_dir>/generations/<NNNN>/haproxy.cfg   every configuration that was applied, with
                                  .../services.json, networkd/ and the site.yaml it came from
    <state_dir>/current   -> generations/<NNNN>  what HAProxy runs (/etc/haproxy/haproxy.cfg)
    <state_dir>/last-good -> generations/<NNNN>  the one before, for 'lbctl rollback'
    <state_dir>/server-state                     server states handed from one HAProxy to the next
    <state_dir>/.lock                            held while a command changes any of the above

Links are replaced with rename(2), so a reader sees the old or the new generation, never half.
A new generation is rendered into generations/.new-<pid> and renamed to its number only once it
passed 'haproxy -c', so a numbered generation is always a complete, checked one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..appliance import Paths

KEEP_GENERATIONS = 20  # besides current and last-good; older ones are removed


def generations_dir(paths: Paths) -> Path:
    return paths.state_dir / "generations"


@contextmanager
def locked(paths: Paths) -> Iterator[None]:
    """Serialise commands that change the state (two applies at once would race on the links)."""
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    with open(paths.state_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def scratch_generation(paths: Paths) -> Path:
    directory = generations_dir(paths) / f".new-{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def numbered(paths: Paths) -> list[Path]:
    root = generations_dir(paths)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def commit_generation(paths: Paths, scratch: Path) -> Path:
    """Give a checked scratch directory the next generation number."""
    existing = numbered(paths)
    target = generations_dir(paths) / f"{(int(existing[-1].name) if existing else 0) + 1:04d}"
    os.rename(scratch, target)
    return target


def target_of(link: Path) -> Path | None:
    """The generation a link points to, or None if it does not exist or dangles."""
    if not link.is_symlink():
        return None
    target = (link.parent / os.readlink(link)).resolve()
    return target if target.is_dir() else None


def point(link: Path, target: Path) -> None:
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target, link.parent))
    os.replace(tmp, link)


def unpoint(link: Path) -> None:
    link.unlink(missing_ok=True)


def prune(paths: Paths) -> None:
    keep = {target_of(paths.current), target_of(paths.last_good)}
    for old in numbered(paths)[:-KEEP_GENERATIONS]:
        if old.resolve() not in keep:
            shutil.rmtree(old, ignore_errors=True)
    for stale in generations_dir(paths).glob(".new-*"):
        pid = stale.name.removeprefix(".new-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
