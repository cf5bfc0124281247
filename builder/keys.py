"""The release keys: the pair that signs update archives, and the next pair, for rotation.

    LB_KEY_DIR/release.key  release.pub    signs this build's archives; images trust release.pub
    LB_KEY_DIR/next.key     next.pub       images trust next.pub too, so the next release may
                                           switch to it (`lbimage keys --rotate`)

The files are minisign's format (lbctl.update.minisign), so `minisign -S -s release.key` signs
the same way on another machine. The default directory lies outside the checkout, like the
package cache, so that no key is ever committed and two clones on one machine trust each other's
builds. A build from the default directory that finds no key makes a development pair and says
so; a directory named explicitly (a release build) must hold its keys already.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from lbctl.update.minisign import MinisignError, PublicKey, SecretKey

from . import progress, settings

NAMES = ("release", "next")


class KeysError(RuntimeError):
    """The key directory cannot give what the build needs; the message says what to do."""


@dataclass(frozen=True)
class KeyDir:
    path: Path

    def public(self, name: str) -> Path:
        return self.path / f"{name}.pub"

    def secret(self, name: str) -> Path:
        return self.path / f"{name}.key"

    def public_keys(self) -> list[PublicKey]:
        """The keys images built now trust, release first. Raises KeysError."""
        keys = []
        for name in NAMES:
            path = self.public(name)
            if not path.exists():
                continue
            try:
                keys.append(PublicKey.parse(path.read_text()))
            except MinisignError as exc:
                raise KeysError(f"{path}: {exc}") from None
        if not keys:
            raise KeysError(f"no release key in {self.path}: run 'make keys' (or 'lbimage keys')")
        return keys

    def signing_key(self) -> SecretKey | None:
        """The release secret key, or None when this machine does not hold it (sign elsewhere)."""
        path = self.secret("release")
        if not path.exists():
            return None
        try:
            key = SecretKey.parse(path.read_text())
        except MinisignError as exc:
            raise KeysError(f"{path}: {exc}") from None
        public = self.public("release")
        if public.exists() and PublicKey.parse(public.read_text()) != key.public_key():
            raise KeysError(f"{path} and {public} are not one pair")
        return key


def key_dir() -> KeyDir:
    return KeyDir(settings.path("LB_KEY_DIR"))


def write_pair(directory: Path, name: str) -> PublicKey:
    secret = SecretKey.generate()
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / f"{name}.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret.text())
    (directory / f"{name}.pub").write_text(secret.public_key().text())
    return secret.public_key()


def create(directory: Path) -> list[str]:
    """Make the missing pairs of NAMES (never overwrites a key); returns what was made."""
    made = []
    for name in NAMES:
        if not (directory / f"{name}.pub").exists():
            key = write_pair(directory, name)
            made.append(f"{name} key {key.id} in {directory}")
    return made


def ensure_for_build() -> KeyDir:
    """The key directory for a build: a development pair is made in the default directory when
    it holds none; an explicitly named directory must hold its keys. Raises KeysError."""
    keys = key_dir()
    if keys.public("release").exists():
        return keys
    if os.environ.get("LB_KEY_DIR"):
        raise KeysError(
            f"LB_KEY_DIR={keys.path} holds no release.pub; a release build names a directory that holds its "
            "keys (make keys LB_KEY_DIR=... creates them)"
        )
    for made in create(keys.path):
        progress.say(f"created a DEVELOPMENT {made}: images built here trust it; see docs/update.md for release keys")
    return keys


def rotate(directory: Path) -> list[str]:
    """next becomes release, release is retired (kept under retired/), a new next is made."""
    keys = KeyDir(directory)
    if not keys.public("next").exists() or not keys.secret("next").exists():
        raise KeysError(f"{directory} has no next key pair to rotate to")
    retired = directory / "retired" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    retired.mkdir(parents=True)
    for suffix in ("key", "pub"):
        if keys.path.joinpath(f"release.{suffix}").exists():
            shutil.move(keys.path / f"release.{suffix}", retired / f"release.{suffix}")
        shutil.move(keys.path / f"next.{suffix}", keys.path / f"release.{suffix}")
    new = write_pair(directory, "next")
    release = PublicKey.parse(keys.public("release").read_text())
    return [
        f"release key is now {release.id} (was next)",
        f"new next key {new.id}",
        f"old release key kept in {retired}",
    ]
