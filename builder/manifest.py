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
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from lbctl.fileio import write_atomic
from lbctl.inputs import Cursor, Field, InputInvalid, InputKind, Invalid, ListOf, Table, Type, describe
from lbctl.inputs.types import Integer, Text
from lbctl.inputs.yamldoc import Document

MANIFEST = "manifest.json"
SHA256SUMS = "SHA256SUMS"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_entry(dist: Path, path: Path) -> dict[str, Any]:
    return {"path": path.relative_to(dist).as_posix(), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def artifact_entry(
    hypervisor: str, disk_format: str, virtual_size: int, files: Iterable[dict[str, Any]]
) -> dict[str, Any]:
    return {"hypervisor": hypervisor, "disk_format": disk_format, "virtual_size": virtual_size, "files": list(files)}


def groups(manifest: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(what, files) per hypervisor artifact, and the update archive's."""
    found = [(a["hypervisor"], a["files"]) for a in manifest.get("artifacts", [])]
    if manifest.get("update"):
        found.append(("update", manifest["update"]["files"]))
    return found


def write(
    dist: Path,
    name: str,
    version: str,
    built: str,
    artifacts: list[dict[str, Any]],
    update: dict[str, Any] | None = None,
) -> Path:
    """Write manifest.json and SHA256SUMS (each atomically: a reader never sees half a file)."""
    manifest: dict[str, Any] = {"name": name, "version": version, "built": built, "artifacts": artifacts}
    if update:
        manifest["update"] = update
    problems = check_schema(manifest)
    if problems:
        raise ValueError("refusing to write an invalid manifest: " + "; ".join(problems))
    sums = {f["path"]: f["sha256"] for _, files in groups(manifest) for f in files}
    write_atomic(dist / SHA256SUMS, "".join(f"{h}  {p}\n" for p, h in sorted(sums.items())), 0o644)
    return write_atomic(dist / MANIFEST, json.dumps(manifest, indent=2) + "\n", 0o644)


def add_update(dist: Path, version: str, files: list[Path]) -> Path:
    """List the update archive and its checksum in dist/manifest.json (written by packaging).
    Raises ValueError when dist/ has no manifest of the same version."""
    try:
        manifest = load(dist)
    except (OSError, ValueError):
        raise ValueError(f"{dist / MANIFEST} is missing or unreadable: run 'make image' first") from None
    if manifest.get("version") != version:
        raise ValueError(f"{dist / MANIFEST} is for {manifest.get('version')}, the archive for {version}")
    update = {"version": version, "files": [file_entry(dist, f) for f in files]}
    return write(dist, manifest["name"], version, manifest["built"], manifest["artifacts"], update)


def load(dist: Path) -> dict[str, Any]:
    return json.loads((dist / MANIFEST).read_text())


def listed_files(manifest: dict[str, Any]) -> list[str]:
    """Every path the manifest names, once each."""
    return list(dict.fromkeys(f["path"] for _, files in groups(manifest) for f in files))


class ISOTime(Type[str]):
    kind = "ISO 8601 time"

    def parse(self, value: object, at: Cursor) -> str:
        text = Text(what="an ISO 8601 time").parse(value, at)
        try:
            datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid(f"{text!r} is not an ISO 8601 time") from None
        return text


class RelativePath(Type[str]):
    kind = "path relative to dist/"

    def parse(self, value: object, at: Cursor) -> str:
        if (
            not isinstance(value, str)
            or not value
            or PurePosixPath(value).is_absolute()
            or ".." in PurePosixPath(value).parts
        ):
            raise Invalid(f"{describe(value)} is not a relative path inside dist/")
        return value


def _unique_hypervisors(items: list[Any], at: Cursor) -> None:
    seen: set[str] = set()
    for n, artifact in enumerate(items):
        if isinstance(artifact, dict) and artifact.get("hypervisor") in seen:
            at.problem(f"hypervisor {artifact['hypervisor']!r} listed twice", n, "hypervisor")
        if isinstance(artifact, dict):
            seen.add(artifact.get("hypervisor", ""))


FILE = Table(
    (
        Field("path", RelativePath(), "the file, relative to dist/", required=True),
        Field("sha256", Text(r"[0-9a-f]{64}", "64 lower-case hex digits"), "its SHA-256", required=True),
        Field("bytes", Integer(0, 2**63), "its size in bytes", required=True),
    )
)
ARTIFACT = Table(
    (
        Field("hypervisor", Text(what="a hypervisor name"), "which hypervisor the files are for", required=True),
        Field("disk_format", Text(what="a disk format"), "the disk's format", required=True),
        Field("virtual_size", Integer(1, 2**63, "bytes"), "the disk's virtual size", required=True),
        Field("files", ListOf(FILE, empty="an artifact has at least one file"), "its files", required=True),
    )
)
UPDATE = Table(
    (
        Field("version", Text(what="a version"), "the version the archive installs", required=True),
        Field(
            "files", ListOf(FILE, empty="the archive and its checksum"), "the archive and its checksum", required=True
        ),
    )
)
MANIFEST_TABLE = Table(
    (
        Field("name", Text(what="a product name"), "product name", required=True),
        Field("version", Text(what="a version"), "appliance version", required=True),
        Field("built", ISOTime(), "when the image was built", required=True),
        Field(
            "artifacts",
            ListOf(ARTIFACT, empty="a manifest lists at least one artifact", items_check=_unique_hypervisors),
            "one entry per hypervisor",
            required=True,
        ),
        Field("update", UPDATE, "the offline update archive and its checksum (make update-archive)"),
    ),
    title="dist/manifest.json",
)


def check_schema(manifest: Any) -> list[str]:
    """Problems with the manifest's shape (not its files), each as 'manifest.json: <field>: <reason>'."""
    try:
        InputKind(MANIFEST, "dist/manifest.json", MANIFEST_TABLE).parse_document(Document.from_data(manifest))
    except InputInvalid as exc:
        return [f"{MANIFEST}: {line}" for line in exc.lines()]
    return []


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
    for what, files in groups(manifest):
        for f in files:
            path = dist / f["path"]
            where = f"{what}: {f['path']}"
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
        listed = {f["path"]: f["sha256"] for _, files in groups(manifest) for f in files}
        for line in sums_file.read_text().splitlines():
            digest, _, name = line.partition("  ")
            if listed.get(name) != digest:
                problems.append(f"{SHA256SUMS}: {name}: does not match manifest.json")
    return problems
