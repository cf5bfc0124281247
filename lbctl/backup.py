"""Backup and restore of one node's configuration: `lbctl backup FILE`, `lbctl restore FILE`.

A backup is a gzip'd tar (mode 600: it holds the node's cluster key) of what the operator owns
on this node and cannot regenerate:

    backup.json                     what it is: format, appliance version, host name, time (UTC)
    site.yaml                       the applied site (the current generation's own copy)
    firewall/site-rules.nft         the site's own rules file, if any
    cluster/cluster.yaml            the HA pair, if paired (with the peer's pinned host key)
    cluster/id_ed25519              this node's cluster key
    cluster/authorized_keys         the peer's cluster key, as admitted here

The lockdown (firewall.yaml) is left out on purpose: a lockdown change goes through commit-confirm
(`lbctl firewall lockdown`) so that it cannot lock the operator out, and a restore would bypass it.
network.yaml and the admin credentials are provisioning inputs and stay as they are.

Restore reads only the members above (regular files, at most MAX_MEMBER_BYTES each and
MAX_ARCHIVE_BYTES together, unpacked), checks every one before it changes anything (the site and
cluster.yaml by the engine, cluster.yaml's node against this host, each key parsed), then writes
the pair's files through pairing's own writer (authorized_keys and known_hosts anew from the keys)
and applies the site locally; if that fails, every file it wrote is put back. A restored member
of an HA pair keeps heartbeat stopped (`held`) until `lbctl cluster join`, as the vendor does: a
node put back from an old backup must never grab the floating IPs from the node that served
meanwhile.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import socket
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm

from .appliance import Paths, appliance_version
from .fileio import write_atomic
from .inputs import InputInvalid

if TYPE_CHECKING:
    from .cluster.model import ClusterConfig
    from .site.model import Site

FORMAT = "lbappliance-backup-1"
MAX_MEMBER_BYTES = 1 << 20  # 1 MiB: a site file or a key is a few KiB
# The whole archive, decompressed, headers included (a small gzip can hold a huge tar header).
MAX_ARCHIVE_BYTES = 8 << 20


class BackupError(Exception):
    """A backup cannot be written or restored; the message names the member and the reason."""


def _cluster_members() -> dict[str, Path]:
    from .cluster import state

    return {f"cluster/{p.name}": p for p in (state.STATE_FILE, state.CLUSTER_KEY, state.AUTHORIZED_KEYS)}


def _members() -> dict[str, Path | None]:
    """Every member a backup may hold, and where it lives on the node (None: handled apart)."""
    from .firewall.ruleset import SITE_RULES_FILE

    return {"backup.json": None, "site.yaml": None, "firewall/site-rules.nft": SITE_RULES_FILE, **_cluster_members()}


def backup(paths: Paths) -> bytes:
    """The node's backup as gzip'd tar bytes. Raises BackupError when no site was ever applied."""
    from .cluster.pairing import current_site_text

    site_text = current_site_text(paths)
    if site_text is None:
        raise BackupError("nothing to back up: no site was applied on this appliance")
    files: dict[str, bytes] = {
        "backup.json": json.dumps(
            {
                "format": FORMAT,
                "version": appliance_version(paths.os_release),
                "hostname": socket.gethostname(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        ).encode(),
        "site.yaml": site_text.encode(),
    }
    for name, where in _members().items():
        if where is not None and where.exists():
            files[name] = where.read_bytes()
    out = io.BytesIO()
    # mtime fixed: two backups of the same configuration differ only in backup.json.
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@dataclass
class Backup:
    """A backup read back: its members' bytes by name."""

    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def paired(self) -> bool:
        return "cluster/cluster.yaml" in self.files


def read_backup(path: Path) -> Backup:
    """Read and check a backup file. Raises BackupError naming the member and the reason."""
    allowed = _members()
    result = Backup()
    try:
        with gzip.open(path, "rb") as compressed:
            data = compressed.read(MAX_ARCHIVE_BYTES + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BackupError(f"{path}: not a readable backup ({exc})") from None
    if len(data) > MAX_ARCHIVE_BYTES:
        raise BackupError(f"{path}: larger than {MAX_ARCHIVE_BYTES >> 20} MiB unpacked: not a backup of this appliance")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                if info.name not in allowed:
                    raise BackupError(f"{path}: member {info.name!r} is not part of a backup")
                if not info.isreg():
                    raise BackupError(f"{path}: member {info.name!r} is not a regular file")
                if info.size > MAX_MEMBER_BYTES:
                    raise BackupError(f"{path}: member {info.name!r} is larger than {MAX_MEMBER_BYTES} bytes")
                if info.name in result.files:
                    raise BackupError(f"{path}: member {info.name!r} appears twice")
                handle = tar.extractfile(info)
                result.files[info.name] = handle.read() if handle else b""
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise BackupError(f"{path}: not a readable backup ({exc})") from None
    try:
        meta = json.loads(result.files.get("backup.json", b"{}"))
    except ValueError:
        meta = {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BackupError(f"{path}: backup.json does not say format {FORMAT!r}: not a backup of this appliance")
    if "site.yaml" not in result.files:
        raise BackupError(f"{path}: member 'site.yaml' is missing")
    return result


def _check(backup: Backup) -> tuple[Site, ClusterConfig | None]:
    """The backup's site and pair, each member checked by its own engine before anything changes
    (every problem at once, naming the member, the field and the line). Raises BackupError."""
    from .cluster.model import CLUSTER_KIND
    from .firewall.siterules import parse as parse_site_rules
    from .site.schema import SITE_KIND

    problems: list[str] = []
    site = cluster = None
    try:
        site = SITE_KIND.parse_bytes(backup.files["site.yaml"], _site_context())
    except InputInvalid as exc:
        problems += [f"backup member site.yaml: {line}" for line in exc.lines()]
    if backup.paired:
        try:
            cluster = CLUSTER_KIND.parse_bytes(backup.files["cluster/cluster.yaml"])
        except InputInvalid as exc:
            problems += [f"backup member cluster/cluster.yaml: {line}" for line in exc.lines()]
    cluster_files = sorted(name for name in backup.files if name.startswith("cluster/"))
    if cluster_files and not backup.paired:
        problems.append(
            f"backup members {', '.join(cluster_files)}: without cluster/cluster.yaml they belong to no pair"
        )
    if backup.paired:
        problems += [f"backup member {name}: {reason}" for name, reason in _check_cluster_files(backup, cluster)]
    rules = backup.files.get("firewall/site-rules.nft")
    if rules is not None:
        try:
            parse_site_rules(rules.decode())
        except UnicodeDecodeError:
            problems.append("backup member firewall/site-rules.nft: not UTF-8 text")
        except InputInvalid as exc:
            problems += [f"backup member firewall/site-rules.nft: {line}" for line in exc.lines()]
    if problems or site is None:
        raise BackupError("the backup is refused, nothing was changed:\n  " + "\n  ".join(problems))
    return site, cluster


AUTHORIZED_LINE = re.compile(r'restrict,command="[^"]*" (ssh-ed25519 [A-Za-z0-9+/=]+) lbappliance-cluster')


def peer_cluster_key(backup: Backup) -> str:
    """The peer's cluster key from the backup's authorized_keys (one line, as link.authorize()
    writes it); LinkError or ValueError when it is anything else."""
    from .cluster import link

    lines = backup.files.get("cluster/authorized_keys", b"").decode().splitlines()
    match = AUTHORIZED_LINE.fullmatch(lines[0]) if len(lines) == 1 else None
    if not match:
        raise ValueError("not the one line of the peer's cluster key that pairing writes")
    return link.checked_public_key(match.group(1))


def _check_cluster_files(backup: Backup, cluster: ClusterConfig | None) -> list[tuple[str, str]]:
    """(member, reason) for every pair file that restore could not use as it is (`cluster`: the
    backup's cluster.yaml, None when the engine refused it)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    from .cluster import link
    from .cluster.pairing import hostname

    problems = []
    for name in ("cluster/id_ed25519", "cluster/authorized_keys"):
        if name not in backup.files:
            problems.append((name, "missing: a pair's backup holds it"))
    if cluster is not None and cluster.node.name != hostname():
        problems.append(
            ("cluster/cluster.yaml", f"is node {cluster.node.name!r}'s, and this appliance is {hostname()!r}")
        )
    if "cluster/id_ed25519" in backup.files:
        try:
            key = load_ssh_private_key(backup.files["cluster/id_ed25519"], None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError("not an Ed25519 key")
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            problems.append(("cluster/id_ed25519", f"not an unencrypted OpenSSH Ed25519 private key ({exc})"))
    if "cluster/authorized_keys" in backup.files:
        try:
            peer_cluster_key(backup)
        except (ValueError, UnicodeDecodeError, link.LinkError) as exc:
            problems.append(("cluster/authorized_keys", str(exc)))
    return problems


def _written_by_restore() -> list[Path]:
    from .cluster import state
    from .firewall.ruleset import SITE_RULES_FILE

    return [
        SITE_RULES_FILE,
        state.STATE_FILE,
        state.CLUSTER_KEY,
        state.CLUSTER_KEY.with_suffix(".pub"),
        state.KNOWN_HOSTS,
        state.AUTHORIZED_KEYS,
        state.HOLD_FILE,
    ]


def restore(paths: Paths, path: Path) -> list[str]:
    """Put a backup back on this node and apply its site here (never replicated). Returns notes.
    Members the backup does not hold stay as they are on the node. Raises BackupError (nothing
    changed), or ApplyError after every file restore wrote was put back as it was."""
    from .cluster import heartbeat, pairing, state
    from .config.apply import apply_site
    from .firewall.ruleset import SITE_RULES_FILE

    backup = read_backup(path)
    site, cluster = _check(backup)
    if state.paired() and not backup.paired:
        raise BackupError(
            "this appliance is paired and the backup is of a single appliance: 'lbctl cluster unpair' first"
        )
    site_text = backup.files["site.yaml"].decode()
    saved = {p: (p.read_bytes() if p.exists() else None) for p in _written_by_restore()}
    was_running = heartbeat.running()
    notes = []
    try:
        if cluster is not None:
            pairing.hold()  # before anything could start heartbeat on the restored files
            if was_running:
                heartbeat.stop()
                notes.append("heartbeat stopped")
        rules = backup.files.get("firewall/site-rules.nft")
        if rules is not None:
            write_atomic(SITE_RULES_FILE, rules, mode=0o600)
        if cluster is not None:
            pairing.write_cluster(cluster, peer_cluster_key(backup), backup.files["cluster/id_ed25519"])
        outcome = apply_site(paths, site, site_text, allowed_removals=None)
        notes.append(f"site applied as generation {outcome.generation.name}")
        if cluster is not None:
            pairing.install_heartbeat(paths, cluster)
            notes.append("heartbeat held until 'lbctl cluster join'")
    except BaseException:
        for where, data in saved.items():
            if data is None:
                where.unlink(missing_ok=True)
            else:
                write_atomic(where, data, mode=0o600)
        if was_running:
            heartbeat.start()  # not held before: the node rejoins as it was
        raise
    return notes


def _site_context() -> dict[str, object]:
    from .boot.provision import site_context

    return site_context(None)
