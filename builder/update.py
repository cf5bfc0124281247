"""`make update-archive`: the signed offline update of the last built image, with its checksum.

    dist/<name>-<version>-update.tar         manifest.json, its minisign signature, the root
                                             file system and the UKI, both zstd (lbctl.update.archive)
    dist/<name>-<version>-update.tar.sha256  the checksum file (sha256sum format)

Both are listed in dist/manifest.json. The same image gives the same bytes: the payloads are
compressed with fixed zstd settings, the tar is stamped with the image's SOURCE_DATE_EPOCH, and
Ed25519 signatures are deterministic. Without the release secret key on this machine the
manifest is written for signing elsewhere, and `--signature FILE` assembles the archive from it.
"""

from __future__ import annotations

from pathlib import Path

from lbctl.appliance import IMAGE_ID
from lbctl.update import archive as arc
from lbctl.update import minisign
from lbctl.update.state import CONFIG_FORMATS_READ

from . import manifest as dist_manifest
from . import progress, settings
from .keys import KeyDir, KeysError
from .mkosi import BuiltImage


def archive_name(version: str) -> str:
    return f"{IMAGE_ID}-{version}-update.tar"


def compressed(image: Path, work: Path, member: str, digest: str, level: int) -> Path:
    """The zstd of an image, made once per image build and level (kept in the build directory)."""
    target = work / member
    stamp = work / f"{member}.inputs"
    key = f"{digest} {level} {image.stat().st_size}\n"
    if target.exists() and stamp.exists() and stamp.read_text() == key:
        progress.say(f"{member}: reusing {target}")
        return target
    with progress.step(f"compress {image.name} ({image.stat().st_size // 2**20} MiB) with zstd -{level}"):
        arc.compress(image, target, level)
    stamp.write_text(key)
    return target


def build(
    built: BuiltImage,
    dist: Path,
    keys: KeyDir,
    level: int = arc.ZSTD_LEVEL,
    signature: Path | None = None,
) -> tuple[Path, Path]:
    """Write the archive and its checksum into dist; returns both paths.

    Raises KeysError when there is nothing to sign with (the message says how to sign elsewhere),
    or when a given signature does not verify against the key directory's public keys.
    """
    keys.public_keys()  # no keys at all: say so before minutes of compression
    work = settings.path("LB_BUILD_DIR") / "update"
    work.mkdir(parents=True, exist_ok=True)
    root_zst = compressed(Path(built.root_partition), work, arc.ROOT, built.inputs_digest, level)
    uki_zst = compressed(Path(built.uki), work, arc.UKI, built.inputs_digest, level)
    with progress.step("hash the payloads"):
        manifest = arc.Manifest(
            format=arc.FORMAT,
            product=IMAGE_ID,
            version=built.version,
            min_version=settings.get("LB_MIN_VERSION"),
            config_formats=CONFIG_FORMATS_READ,
            root=arc.payload_of(Path(built.root_partition), root_zst, arc.ROOT),
            uki=arc.payload_of(Path(built.uki), uki_zst, arc.UKI),
        )
    body = manifest.to_json()
    if signature is not None:
        text = signature.read_text()
        try:
            key, _ = minisign.verify(body, text, keys.public_keys())
        except minisign.MinisignError as exc:
            raise KeysError(f"{signature}: {exc}") from None
        progress.say(f"signature by key {key.id} verified")
    else:
        secret = keys.signing_key()
        if secret is None:
            pending = dist / f"{archive_name(built.version)}.manifest.json"
            pending.write_bytes(body)
            raise KeysError(
                f"no release.key in {keys.path}: sign {pending} on the machine that holds it with\n"
                f"  minisign -S -s release.key -m {pending.name} -t '{manifest.trusted_comment}'\n"
                f"then run: lbimage update-archive --signature {pending.name}.minisig"
            )
        text = secret.sign(body, manifest.trusted_comment, f"signature from {IMAGE_ID} release key")
        progress.say(f"signed with key {secret.public_key().id}")
    target = dist / archive_name(built.version)
    with progress.step(f"write {target.name}"):
        arc.write(target, manifest, text, root_zst, uki_zst, built.source_date_epoch)
        digest = arc.sha256_file(target)
        checksum = target.with_name(target.name + ".sha256")
        checksum.write_text(arc.checksum_text(digest, target.name))
    dist_manifest.add_update(dist, built.version, [target, checksum])
    progress.say(f"{target.name}: {target.stat().st_size / 1e6:.1f} MB, sha256 {digest}")
    return target, checksum
