"""dist/manifest.json: what a build shipped, and the check that dist/ still holds exactly that.

    {"name": "lbappliance", "version": "0.1.0", "built": "2026-11-25T11:44:27Z",
     "artifacts": [{"hypervisor": "kvm", "disk_format": "qcow2", "virtual_size": 21474836480,
                    "files": [{"path": "lbappliance_0.1.0.qcow2", "sha256": "...", "bytes": 197525504}]}]}

One artifacts entry per hypervisor; paths are relative to dist/. Hypervisors that share a disk
(KVM and Nutanix share the qcow2) list the same file. dist/SHA256SUMS carries the same sums in
`sha256sum -c` form for users without this tool.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

MANIFEST = "manifest.json"
SHA256SUMS = "SHA256SUMS"
HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_entry(dist: Path, path: Path) -> dict[str, Any]:
    return {"path": path.relative_to(dist).as_posix(), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def artifact_entry(hypervisor: str, disk_format: str, virtual_size: int, files: Iterable[dict[str, Any]]
                   ) -> dict[str, Any]:
    return {"hypervisor": hypervisor, "disk_format": disk_format, "virtual_size": virtual_size,
            "files": list(files)}


def write(dist: Path, name: str, version: str, built: str, artifacts: list[dict[str, Any]]) -> Path:
    """Write manifest.json and SHA256SUMS (each atomically: a reader never sees half a file)."""
    manifest = {"name": name, "version": version, "built": built, "artifacts": artifacts}
    problems = check_schema(manifest)
    if problems:
        raise ValueError("refusing to write an invalid manifest: " + "; ".join(problems))
    sums = {f["path"]: f["sha256"] for a in artifacts for f in a["files"]}
    _write_atomic(dist / SHA256SUMS, "".join(f"{h}  {p}\n" for p, h in sorted(sums.items())))
    return _write_atomic(dist / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def _write_atomic(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def load(dist: Path) -> dict[str, Any]:
    return json.loads((dist / MANIFEST).read_text())


def listed_files(manifest: dict[str, Any]) -> list[str]:
    """Every path the manifest names, once each."""
    return list(dict.fromkeys(f["path"] for a in manifest.get("artifacts", []) for f in a.get("files", [])))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_schema(manifest: Any) -> list[str]:
    """Problems with the manifest's shape (not its files)."""
    if not isinstance(manifest, dict):
        return ["manifest.json: not a JSON object"]
    problems = []
    for key in ("name", "version", "built"):
        if not isinstance(manifest.get(key), str) or not manifest.get(key):
            problems.append(f"manifest.json: {key}: missing or not a string")
    try:
        datetime.fromisoformat(str(manifest.get("built", "")).replace("Z", "+00:00"))
    except ValueError:
        problems.append(f"manifest.json: built: {manifest.get('built')!r} is not an ISO 8601 time")
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, list) or not artifacts:
        return problems + ["manifest.json: artifacts: missing or empty"]
    seen = set()
    for n, a in enumerate(artifacts):
        where = f"manifest.json: artifacts[{n}]"
        if not isinstance(a, dict):
            problems.append(f"{where}: not an object")
            continue
        hv = a.get("hypervisor")
        if not isinstance(hv, str) or not hv:
            problems.append(f"{where}: hypervisor: missing or not a string")
        elif hv in seen:
            problems.append(f"{where}: hypervisor {hv!r} listed twice")
        seen.add(hv)
        if not isinstance(a.get("disk_format"), str):
            problems.append(f"{where}: disk_format: missing or not a string")
        if not _is_int(a.get("virtual_size")) or a["virtual_size"] <= 0:
            problems.append(f"{where}: virtual_size: missing or not a positive integer")
        files = a.get("files")
        if not isinstance(files, list) or not files:
            problems.append(f"{where}: files: missing or empty")
            continue
        for m, f in enumerate(files):
            fwhere = f"{where}.files[{m}]"
            if not isinstance(f, dict):
                problems.append(f"{fwhere}: not an object")
                continue
            path = f.get("path")
            if (not isinstance(path, str) or not path or PurePosixPath(path).is_absolute()
                    or ".." in PurePosixPath(path).parts):
                problems.append(f"{fwhere}: path {path!r} is not a relative path inside dist/")
            if not isinstance(f.get("sha256"), str) or not HEX64.fullmatch(f["sha256"]):
                problems.append(f"{fwhere}: sha256: not 64 lower-case hex digits")
            if not _is_int(f.get("bytes")) or f["bytes"] < 0:
                problems.append(f"{fwhere}: bytes: not a non-negative integer")
    return problems


def verify(dist: Path) -> list[str]:
    """Recheck every file in dist/ against manifest.json: problems, or [] when all is well."""
    try:
        manifest = load(dist)
    except FileNotFoundError:
        return [f"{dist / MANIFEST}: missing"]
    except (OSError, ValueError) as exc:
        return [f"{dist / MANIFEST}: unreadable: {exc}"]
    problems = check_schema(manifest)
    if problems:
        return problems
    checked: dict[str, str] = {}
    for artifact in manifest["artifacts"]:
        for f in artifact["files"]:
            path = dist / f["path"]
            where = f"{artifact['hypervisor']}: {f['path']}"
            if not path.is_file():
                problems.append(f"{where}: missing")
                continue
            size = path.stat().st_size
            if size != f["bytes"]:
                problems.append(f"{where}: {size} bytes, manifest says {f['bytes']}")
                continue
            if f["path"] not in checked:
                checked[f["path"]] = sha256_file(path)
            if checked[f["path"]] != f["sha256"]:
                problems.append(f"{where}: sha256 {checked[f['path']]}, manifest says {f['sha256']}")
    sums_file = dist / SHA256SUMS
    if sums_file.exists():
        listed = {p: h for a in manifest["artifacts"] for f in a["files"] for p, h in [(f["path"], f["sha256"])]}
        for line in sums_file.read_text().splitlines():
            digest, _, name = line.partition("  ")
            if listed.get(name) != digest:
                problems.append(f"{SHA256SUMS}: {name}: does not match manifest.json")
    return problems
