"""The web UI's TLS certificate: one per instance, never shipped in the image.

    DATA_DIR/webui/tls/key.pem    the private key (mode 600)
    DATA_DIR/webui/tls/cert.pem   the certificate (chain), leaf first

At the first start (ExecStartPre of lb-webui.service: `python3 -m lbctl.webui.tls ensure`) the
appliance makes a self-signed certificate for its host name: ECDSA P-256, valid 10 years, with a
fresh key, so that two appliances made from one image never share a key. Its SHA-256 fingerprint
goes to the journal, for the first visit's browser warning to be checked against.

A site's own certificate replaces it: provisioned (credential lb.webui.pem, or webui.pem on the
config disk) or uploaded on the Maintenance page, as one PEM file holding the private key and the
certificate chain, as HAProxy's `crt` files do. It is checked (one key, the leaf matches it, not
expired) before anything is written; the certificate it replaces is kept as *.previous.
"""

from __future__ import annotations

import datetime
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from ..appliance import DATA_DIR
from ..fileio import write_atomic
from ..inputs import InputInvalid, Problem

TLS_DIR = DATA_DIR / "webui" / "tls"
VALID_DAYS = 3650
MAX_PEM_BYTES = 64 * 1024


@dataclass(frozen=True)
class TLSFiles:
    directory: Path = TLS_DIR

    @property
    def key(self) -> Path:
        return self.directory / "key.pem"

    @property
    def cert(self) -> Path:
        return self.directory / "cert.pem"

    def present(self) -> bool:
        return self.key.is_file() and self.cert.is_file()


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 fingerprint of the first certificate, as browsers show it (AB:CD:...)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def self_signed(hostname: str) -> tuple[bytes, bytes]:
    """A new key and a self-signed certificate for `hostname` (PEM key, PEM certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hostname),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PACS load balancer (self-signed)"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def ensure(files: TLSFiles | None = None) -> str | None:
    """Make the self-signed certificate if there is none; returns its fingerprint when made."""
    files = files or TLSFiles()
    if files.present():
        return None
    files.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_pem, cert_pem = self_signed(socket.gethostname() or "lbappliance")
    write_atomic(files.key, key_pem, 0o600)
    write_atomic(files.cert, cert_pem, 0o644)
    return fingerprint(cert_pem)


def split_pem(pem: bytes) -> tuple[bytes, bytes]:
    """Check a site's PEM (private key + certificate chain, leaf first); returns (key, chain).
    Raises InputInvalid with one problem per thing wrong."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if len(pem) > MAX_PEM_BYTES:
        raise InputInvalid([Problem((), f"larger than {MAX_PEM_BYTES // 1024} KiB; a key and a chain are a few KB")])
    text = pem.decode("ascii", "replace")
    blocks = []
    for part in text.split("-----BEGIN ")[1:]:
        kind = part.split("-----", 1)[0]
        end = f"-----END {kind}-----"
        if end not in part:
            raise InputInvalid([Problem((), f"the PEM block {kind} has no END line")])
        blocks.append((kind, ("-----BEGIN " + part[: part.index(end) + len(end)] + "\n").encode()))
    keys = [b for k, b in blocks if k.endswith("PRIVATE KEY")]
    certs = [b for k, b in blocks if k == "CERTIFICATE"]
    if len(keys) != 1:
        raise InputInvalid([Problem((), f"needs exactly one private key; found {len(keys)}")])
    if not certs:
        raise InputInvalid([Problem((), "needs the certificate (and its chain) after the key; found none")])
    if keys[0].startswith(b"-----BEGIN ENCRYPTED"):
        raise InputInvalid(
            [Problem((), "the private key is encrypted; the web UI starts unattended, give it unencrypted")]
        )
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        key = serialization.load_pem_private_key(keys[0], password=None)
        chain = [x509.load_pem_x509_certificate(c) for c in certs]
        leaf_key = chain[0].public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InputInvalid([Problem((), f"cannot be read: {exc}")]) from None
    problem = key_problem(key)
    if problem:
        raise InputInvalid([Problem((), problem)])
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf_key.public_bytes(serialization.Encoding.DER, public) != key.public_key().public_bytes(
        serialization.Encoding.DER, public
    ):
        raise InputInvalid([Problem((), "the first certificate is not the private key's (the leaf must come first)")])
    now = datetime.datetime.now(datetime.UTC)
    if chain[0].not_valid_after_utc < now:
        raise InputInvalid([Problem((), f"the certificate expired on {chain[0].not_valid_after_utc:%Y-%m-%d}")])
    if chain[0].not_valid_before_utc > now:
        raise InputInvalid(
            [Problem((), f"the certificate is valid only from {chain[0].not_valid_before_utc:%Y-%m-%d %H:%M} UTC")]
        )
    loads(keys[0], b"".join(certs))
    return keys[0], b"".join(certs)


def key_problem(key: object) -> str | None:
    """Why browsers could not use this key, or None: RSA of 2048 bits or more, ECDSA on P-256 or
    P-384 (the curves every browser offers; RFC 8446 4.2.7, the CA/Browser Forum's Baseline
    Requirements 6.1.5)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        return None if key.key_size >= 2048 else f"an RSA key of {key.key_size} bits; 2048 or more are needed"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name in ("secp256r1", "secp384r1"):
            return None
        return f"an EC key on {key.curve.name}; browsers need P-256 or P-384"
    kind = type(key).__name__.removeprefix("_").removesuffix("PrivateKey")
    return f"an {kind} key; browsers need RSA (2048 bits or more) or ECDSA (P-256, P-384)"


def loads(key_pem: bytes, chain: bytes) -> None:
    """The web server must load the pair (Python's ssl, as gunicorn does for every connection),
    or it would refuse every connection after the change."""
    import ssl
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        key_file, cert_file = Path(scratch) / "key.pem", Path(scratch) / "cert.pem"
        key_file.write_bytes(key_pem)
        cert_file.write_bytes(chain)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert_file), str(key_file))
        except ssl.SSLError as exc:
            raise InputInvalid([Problem((), f"the TLS library refuses it: {exc.reason or exc}")]) from None


def install(pem: bytes, files: TLSFiles | None = None) -> str:
    """Replace the certificate and key with a site's own (checked first); the ones replaced are
    kept as *.previous. Returns the new fingerprint. gunicorn reads the files for every new
    connection, so the next one already gets it."""
    files = files or TLSFiles()
    key_pem, chain = split_pem(pem)
    files.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (files.key, files.cert):
        if path.exists():
            write_atomic(path.with_name(path.name + ".previous"), path.read_bytes(), 0o600)
    write_atomic(files.key, key_pem, 0o600)
    write_atomic(files.cert, chain, 0o644)
    return fingerprint(chain)


def main(argv: list[str]) -> int:
    if argv == ["ensure"]:
        made = ensure()
        files = TLSFiles()
        if made:
            print(f"web UI: made a self-signed certificate, SHA-256 fingerprint {made}", flush=True)
        else:
            print(f"web UI certificate: SHA-256 fingerprint {fingerprint(files.cert.read_bytes())}", flush=True)
        return 0
    print("usage: python3 -m lbctl.webui.tls ensure", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
