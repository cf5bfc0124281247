"""The applied configurations on disk: numbered generations and the links that select them.

    <state_dir>/generations/<NNNN>/haproxy.cfg   every rendered configuration that was applied
    <state_dir>/current   -> generations/<NNNN>  what HAProxy runs (/etc/haproxy/haproxy.cfg)
    <state_dir>/last-good -> generations/<NNNN>  the one before, for 'lbctl rollback'

Links are replaced with rename(2), so a reader sees the old or the new generation, never half.
"""
from __future__ import annotations

import os
from pathlib import Path

import jinja2

from .paths import TEMPLATES_DIR, Paths
from .version import appliance_version


def template_environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def next_generation(paths: Paths) -> Path:
    generations = paths.state_dir / "generations"
    generations.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name) for p in generations.iterdir() if p.name.isdigit()]
    directory = generations / f"{max(numbers, default=0) + 1:04d}"
    directory.mkdir()
    return directory


def point(link: Path, target: Path) -> None:
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target, link.parent))
    os.replace(tmp, link)


def ensure_initial_config(paths: Paths) -> bool:
    if paths.current.exists():
        return False
    directory = next_generation(paths)
    text = template_environment().get_template("haproxy.cfg.j2").render(
        version=appliance_version(paths.os_release), admin_socket=paths.admin_socket)
    (directory / "haproxy.cfg").write_text(text)
    point(paths.current, directory)
    return True
