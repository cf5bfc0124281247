"""minisign keys and signatures, read and written with `cryptography` (Ed25519) and hashlib.

The release key signs each update archive's manifest; the appliance verifies it against the
public keys its image carries. The files are minisign's own format, so the `minisign` tool reads
and writes them too (a release can be signed on another machine with `minisign -S`):

    public key   "untrusted comment: ..." / base64("Ed" | key id (8) | Ed25519 public key (32))
    secret key   "untrusted comment: ..." / base64("Ed" | kdf "\\0\\0" | "B2" | salt (32) | opslimit (8)
                 | memlimit (8) | key id (8) | Ed25519 secret key (64: seed, public) | checksum (32))
    signature    "untrusted comment: ..." / base64("ED" | key id (8) | Ed25519(BLAKE2b-512(file)) (64))
                 "trusted comment: TEXT" / base64(Ed25519(signature (64) | TEXT))

The trusted comment is signed too: the archive puts its product and version there, so an old
signed manifest cannot be replayed under a new name. Only prehashed ("ED") signatures and
unencrypted secret keys (minisign -G -W) are handled; an encrypted key is refused with the way to
decrypt it. Source: minisign's documentation (jedisct1.github.io/minisign, "Signature format").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_ALG = b"Ed"
PREHASHED_ALG = b"ED"
KDF_NONE = b"\0\0"
CHECKSUM_ALG = b"B2"
MAX_TRUSTED_COMMENT = 1024  # bytes; minisign's own limit is 8 KiB, ours are one line


class MinisignError(ValueError):
    """A key or signature file that cannot be read, or a signature that does not verify."""


def _payload(text: str, what: str, line_no: int = 1) -> bytes:
    lines = text.splitlines()
    if len(lines) <= line_no or not lines[0].startswith("untrusted comment:"):
        raise MinisignError(f"not a minisign {what} (no 'untrusted comment:' line followed by the data)")
    try:
        return base64.b64decode(lines[line_no].strip(), validate=True)
    except binascii.Error:
        raise MinisignError(f"not a minisign {what} (line {line_no + 1} is not base64)") from None


def key_id_text(key_id: bytes) -> str:
    """The key id as minisign prints it (16 hex digits of the little-endian number)."""
    return f"{int.from_bytes(key_id, 'little'):016X}"


@dataclass(frozen=True)
class PublicKey:
    key_id: bytes  # 8 bytes
    key: bytes  # 32 bytes, Ed25519

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """A minisign public key file's text (or its base64 line alone). Raises MinisignError."""
        if not text.startswith("untrusted comment:"):
            text = "untrusted comment: minisign public key\n" + text.strip()
        raw = _payload(text, "public key")
        if len(raw) != 42 or raw[:2] != PUBLIC_ALG:
            raise MinisignError("not a minisign Ed25519 public key (wrong length or algorithm)")
        return cls(raw[2:10], raw[10:])

    @property
    def id(self) -> str:
        return key_id_text(self.key_id)

    def text(self) -> str:
        data = base64.b64encode(PUBLIC_ALG + self.key_id + self.key).decode()
        return f"untrusted comment: minisign public key {self.id}\n{data}\n"


@dataclass(frozen=True)
class SecretKey:
    key_id: bytes
    seed: bytes  # 32 bytes, the Ed25519 private key
    public: bytes  # 32 bytes

    @classmethod
    def generate(cls) -> SecretKey:
        private = Ed25519PrivateKey.generate()
        seed = private.private_bytes_raw()
        return cls(os.urandom(8), seed, private.public_key().public_bytes_raw())

    @classmethod
    def parse(cls, text: str) -> SecretKey:
        """An unencrypted minisign secret key file. Raises MinisignError (an encrypted one too)."""
        raw = _payload(text, "secret key")
        if len(raw) != 158 or raw[:2] != PUBLIC_ALG or raw[4:6] != CHECKSUM_ALG:
            raise MinisignError("not a minisign Ed25519 secret key (wrong length or algorithms)")
        if raw[2:4] != KDF_NONE:
            raise MinisignError(
                "the secret key is password-protected; sign with 'minisign -S -s KEY -m manifest.json -t COMMENT' "
                "instead (docs/update.md, 'Signing on another machine')"
            )
        key_id, secret, checksum = raw[54:62], raw[62:126], raw[126:158]
        if hashlib.blake2b(PUBLIC_ALG + key_id + secret, digest_size=32).digest() != checksum:
            raise MinisignError("the secret key's checksum does not match (damaged file)")
        return cls(key_id, secret[:32], secret[32:])

    def text(self) -> str:
        secret = self.seed + self.public
        checksum = hashlib.blake2b(PUBLIC_ALG + self.key_id + secret, digest_size=32).digest()
        raw = PUBLIC_ALG + KDF_NONE + CHECKSUM_ALG + bytes(32) + bytes(16) + self.key_id + secret + checksum
        comment = f"untrusted comment: minisign secret key {key_id_text(self.key_id)} (unencrypted)"
        return f"{comment}\n{base64.b64encode(raw).decode()}\n"

    def public_key(self) -> PublicKey:
        return PublicKey(self.key_id, self.public)

    def sign(self, message: bytes, trusted_comment: str, untrusted_comment: str = "signature") -> str:
        """A minisign signature file (text) of message, carrying trusted_comment (one line)."""
        if "\n" in trusted_comment or "\r" in trusted_comment:
            raise MinisignError("a trusted comment is one line")
        private = Ed25519PrivateKey.from_private_bytes(self.seed)
        signature = private.sign(hashlib.blake2b(message, digest_size=64).digest())
        global_signature = private.sign(signature + trusted_comment.encode())
        return (
            f"untrusted comment: {untrusted_comment}\n"
            f"{base64.b64encode(PREHASHED_ALG + self.key_id + signature).decode()}\n"
            f"trusted comment: {trusted_comment}\n"
            f"{base64.b64encode(global_signature).decode()}\n"
        )


def verify(message: bytes, signature_text: str, keys: list[PublicKey]) -> tuple[PublicKey, str]:
    """Check a minisign signature of message against any of keys.

    Returns the key that signed and the trusted comment. Raises MinisignError naming the reason:
    not a signature, signed by a key not among keys (with its id), or a signature or trusted
    comment that does not verify (the message or the comment was changed).
    """
    lines = signature_text.splitlines()
    if len(lines) < 4 or not lines[2].startswith("trusted comment: "):
        raise MinisignError("not a minisign signature (expected four lines: comment, signature, trusted comment, sig)")
    raw = _payload(signature_text, "signature")
    if len(raw) != 74:
        raise MinisignError("not a minisign signature (wrong length)")
    if raw[:2] != PREHASHED_ALG:
        raise MinisignError("a legacy (not prehashed) minisign signature; sign with minisign 0.10 or later")
    key_id, signature = raw[2:10], raw[10:]
    key = next((k for k in keys if k.key_id == key_id), None)
    if key is None:
        known = ", ".join(k.id for k in keys) or "none"
        raise MinisignError(
            f"signed with key {key_id_text(key_id)}, which this appliance does not trust (it trusts {known})"
        )
    comment = lines[2][len("trusted comment: ") :]
    if len(comment.encode()) > MAX_TRUSTED_COMMENT:
        raise MinisignError("the trusted comment is too long")
    try:
        global_signature = base64.b64decode(lines[3].strip(), validate=True)
    except binascii.Error:
        raise MinisignError("not a minisign signature (line 4 is not base64)") from None
    public = Ed25519PublicKey.from_public_bytes(key.key)
    try:
        public.verify(signature, hashlib.blake2b(message, digest_size=64).digest())
    except InvalidSignature:
        raise MinisignError(f"the signature does not match the signed file (key {key.id}): it was changed") from None
    try:
        public.verify(global_signature, signature + comment.encode())
    except InvalidSignature:
        raise MinisignError("the trusted comment's signature does not match: the comment was changed") from None
    return key, comment


def load_public_keys(directory: Path) -> list[PublicKey]:
    """Every *.pub in directory, sorted by file name. Raises MinisignError naming a bad file."""
    keys = []
    for path in sorted(directory.glob("*.pub")):
        try:
            keys.append(PublicKey.parse(path.read_text()))
        except MinisignError as exc:
            raise MinisignError(f"{path}: {exc}") from None
    return keys
