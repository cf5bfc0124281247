"""The offline update archive: its manifest (a table of the one input engine), writing and reading.

An archive is an uncompressed tar of exactly four members, in this order:

    manifest.json          product, version, the oldest version it applies to, the configuration
                           formats it reads, and per payload its file, size and SHA-256
    manifest.json.minisig  the manifest's minisign signature; trusted comment "<product> <version>"
    root.raw.zst           the root file system for the inactive slot (zstd)
    uki.efi.zst            the unified kernel image (zstd); its command line names its own slot

Beside it lies the checksum file (sha256sum format), the vendor's archive + checksum pair (guide
7.4). Nothing in an archive is trusted before `verify` has checked the checksum, the signature and
every payload's SHA-256; the decompressed images are checked again against the signed manifest
when they are read back from the disk (update.apply).

Archives are reproducible: members in a fixed order with fixed owners, modes and times, zstd at a
fixed level, and an Ed25519 signature (deterministic).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..inputs import Field, InputInvalid, InputKind, ListOf, Table
from ..inputs.types import Choice, Integer, Text
from . import minisign

FORMAT = 1  # of the archive and its manifest
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.minisig"
ROOT = "root.raw.zst"
UKI = "uki.efi.zst"
MEMBERS = (MANIFEST, SIGNATURE, ROOT, UKI)
ZSTD_LEVEL = 19  # the release level: ~99 MB for the 1.5 GiB root (bench/update)
ZSTD_ARGS = ("--long=27", "--no-progress", "-q")  # 128 MiB window: decompression needs ~130 MiB
CHUNK = 4 << 20  # bytes per read while hashing and copying

VERSION = Text(r"\d{1,4}\.\d{1,4}\.\d{1,4}", "a version MAJOR.MINOR.PATCH (like 0.2.0)", 14)
SHA256 = Text(r"[0-9a-f]{64}", "a SHA-256 (64 lower-case hexadecimal digits)", 64)
PRODUCT = Text(r"[a-z][a-z0-9-]{0,39}", "a product name (lower-case letters, digits, '-')", 40)


def version_key(version: str) -> tuple[int, ...]:
    """A version's sort key: 0.10.0 is newer than 0.9.0."""
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class Payload:
    file: str  # the member's name
    bytes: int  # compressed size
    sha256: str  # of the compressed member, checked before anything is written
    image_bytes: int  # decompressed size: what lands in the slot or on the ESP
    image_sha256: str  # of the decompressed image, checked when it is read back from the disk


PAYLOAD = Table(
    (
        Field("file", Choice((ROOT, UKI), "a payload member"), "The archive member.", required=True),
        Field("bytes", Integer(1, 1 << 34, "bytes"), "Its size.", required=True),
        Field("sha256", SHA256, "Its SHA-256.", required=True),
        Field("image_bytes", Integer(1, 1 << 36, "bytes"), "Size after decompression.", required=True),
        Field("image_sha256", SHA256, "SHA-256 after decompression.", required=True),
    ),
    build=lambda s: Payload(**s.values),
    what="file, bytes, sha256, image_bytes, image_sha256",
)


@dataclass(frozen=True)
class Manifest:
    format: int
    product: str
    version: str
    min_version: str  # the oldest running version this archive may be applied to
    config_formats: tuple[int, ...]  # the data partition's configuration formats this version reads
    root: Payload
    uki: Payload

    @property
    def trusted_comment(self) -> str:
        return f"{self.product} {self.version}"

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "format": self.format,
            "product": self.product,
            "version": self.version,
            "min_version": self.min_version,
            "config_formats": list(self.config_formats),
            "root": self.root.__dict__,
            "uki": self.uki.__dict__,
        }
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _check_manifest(values: Any, at: Any) -> None:
    v = values.values
    if v.get("root") and v["root"].file != ROOT:
        at.problem(f"must name {ROOT}", "root")
    if v.get("uki") and v["uki"].file != UKI:
        at.problem(f"must name {UKI}", "uki")
    if v.get("version") and v.get("min_version") and version_key(v["min_version"]) > version_key(v["version"]):
        at.problem("is newer than the version itself", "min_version")


MANIFEST_TABLE = Table(
    (
        Field("format", Integer(FORMAT, FORMAT), "The archive format.", required=True),
        Field("product", PRODUCT, "The product (os-release IMAGE_ID).", required=True),
        Field("version", VERSION, "The version it installs.", required=True),
        Field("min_version", VERSION, "The oldest running version it applies to.", required=True),
        Field(
            "config_formats",
            ListOf(Integer(1, 999), empty="the version must read at least one format"),
            "The configuration formats the version reads.",
            required=True,
        ),
        Field("root", PAYLOAD, "The root file system.", required=True),
        Field("uki", PAYLOAD, "The unified kernel image.", required=True),
    ),
    title="update manifest",
    checks=(_check_manifest,),
    build=lambda s: Manifest(**{**s.values, "config_formats": tuple(s.values["config_formats"])}),
    what="format, product, version, min_version, config_formats, root, uki",
)
MANIFEST_KIND: InputKind[Manifest] = InputKind("update-manifest", "an update manifest", MANIFEST_TABLE)


class ArchiveError(ValueError):
    """An archive that must not be applied; the message says why (and changes nothing)."""


# --- the checksum file ------------------------------------------------------------------------

CHECKSUM_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](\S.*)")


def read_checksum(path: Path) -> str:
    """The SHA-256 in a checksum file (sha256sum format: '<64 hex>  <name>'). Raises ArchiveError."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise ArchiveError(f"cannot read the checksum file {path}: {exc.strerror}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    match = CHECKSUM_LINE.fullmatch(lines[0].strip()) if len(lines) == 1 else None
    if match is None:
        raise ArchiveError(f"{path} is not a checksum file (expected one line '<SHA-256>  <archive name>')")
    return match.group(1).lower()


def checksum_text(digest: str, archive_name: str) -> str:
    return f"{digest}  {archive_name}\n"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


# --- writing (build host) ---------------------------------------------------------------------


def compress(source: Path, target: Path, level: int = ZSTD_LEVEL) -> None:
    """zstd with fixed flags and one worker thread count, so the same input gives the same bytes."""
    ultra = ["--ultra"] if level > 19 else []
    subprocess.run(["zstd", f"-{level}", *ultra, "-T2", *ZSTD_ARGS, "-f", "-o", str(target), str(source)], check=True)


def payload_of(image: Path, compressed: Path, member: str) -> Payload:
    def digest(path: Path) -> tuple[int, str]:
        return path.stat().st_size, sha256_file(path)

    size, sha = digest(compressed)
    image_size, image_sha = digest(image)
    return Payload(member, size, sha, image_size, image_sha)


def write(
    target: Path,
    manifest: Manifest,
    signature: str,
    root_zst: Path,
    uki_zst: Path,
    mtime: int,
) -> None:
    """The archive tar: MEMBERS in order, owned by 0:0, mode 0644, all stamped with mtime."""

    def add(tar: tarfile.TarFile, name: str, data: IO[bytes], size: int) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid = size, mtime, 0o644, 0, 0
        info.uname = info.gname = "root"
        tar.addfile(info, data)

    import io

    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.GNU_FORMAT) as tar:
        body = manifest.to_json()
        add(tar, MANIFEST, io.BytesIO(body), len(body))
        sig = signature.encode()
        add(tar, SIGNATURE, io.BytesIO(sig), len(sig))
        for name, path in ((ROOT, root_zst), (UKI, uki_zst)):
            with path.open("rb") as f:
                add(tar, name, f, path.stat().st_size)
    partial.replace(target)


# --- reading (appliance) ----------------------------------------------------------------------

MAX_SMALL = 64 << 10  # bytes: the manifest and the signature are a few hundred


@dataclass
class Archive:
    """An opened archive whose manifest is signed by a trusted key and whose payloads match it."""

    path: Path
    manifest: Manifest
    signed_by: str  # the key id
    offsets: dict[str, int]  # member name -> offset of its data in the tar

    @contextmanager
    def member(self, name: str) -> Iterator[IO[bytes]]:
        """The member's bytes (a file positioned at its data; read at most its size)."""
        with self.path.open("rb") as f:
            f.seek(self.offsets[name])
            yield f


def open_verified(path: Path, checksum: Path, keys: list[minisign.PublicKey]) -> Archive:
    """Check an archive before anything is written: checksum, shape, signature, manifest, payloads.

    Raises ArchiveError with the first reason it must not be applied. Product, version and room
    are the caller's checks (update.apply), against the running system.
    """
    expected = read_checksum(checksum)
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise ArchiveError(f"cannot read the archive {path}: {exc.strerror}") from None
    if actual != expected:
        raise ArchiveError(
            f"the archive's SHA-256 is {actual}, the checksum file {checksum.name} says {expected}: "
            "the archive is damaged or incomplete (upload it again), or the checksum belongs to another archive"
        )
    try:
        tar = tarfile.open(path, "r:")
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"not an update archive (not a tar file: {exc})") from None
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError) as exc:
            raise ArchiveError(f"the archive is truncated or damaged ({exc})") from None
        names = tuple(m.name for m in members)
        if names != MEMBERS or not all(m.isreg() for m in members):
            raise ArchiveError(
                f"not an update archive: its members are {', '.join(names) or 'none'}, expected {', '.join(MEMBERS)}"
            )
        by_name = {m.name: m for m in members}
        if by_name[MANIFEST].size > MAX_SMALL or by_name[SIGNATURE].size > MAX_SMALL:
            raise ArchiveError("not an update archive: its manifest or signature is too large")
        offsets = {m.name: m.offset_data for m in members}
        sizes = {m.name: m.size for m in members}

        def small(name: str) -> bytes:
            f = tar.extractfile(by_name[name])
            assert f is not None
            return f.read()

        manifest_bytes, signature = small(MANIFEST), small(SIGNATURE)
    try:
        key, comment = minisign.verify(manifest_bytes, signature.decode(errors="replace"), keys)
    except minisign.MinisignError as exc:
        raise ArchiveError(f"the signature is not valid: {exc}") from None
    try:
        manifest = MANIFEST_KIND.parse_bytes(manifest_bytes)
    except InputInvalid as exc:
        raise ArchiveError("the signed manifest is not valid: " + "; ".join(exc.lines())) from None
    if comment != manifest.trusted_comment:
        raise ArchiveError(
            f"the signature's trusted comment {comment!r} does not name this manifest ({manifest.trusted_comment!r})"
        )
    archive = Archive(path, manifest, key.id, offsets)
    for payload in (manifest.root, manifest.uki):
        if sizes[payload.file] != payload.bytes:
            raise ArchiveError(f"{payload.file} is {sizes[payload.file]} bytes, the manifest says {payload.bytes}")
        h = hashlib.sha256()
        with archive.member(payload.file) as f:
            left = payload.bytes
            while left:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    raise ArchiveError(f"{payload.file} is truncated")
                h.update(chunk)
                left -= len(chunk)
        if h.hexdigest() != payload.sha256:
            raise ArchiveError(f"{payload.file}'s SHA-256 does not match the signed manifest: the archive was changed")
    return archive
