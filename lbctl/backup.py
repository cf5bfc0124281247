"""Backup and restore of one node's configuration: `lbctl backup FILE`, `lbctl restore FILE`.

A backup is a gzip'd tar (mode 600: it holds the node's cluster key) of what the operator owns
on this node and cannot regenerate:

    backup.json                     what it is: format, appliance version, host name, time (UTC)
    site.yaml                       the applied site (the current generation's own copy)
    firewall/site-rules.nft         the site's own rules file, if any
    cluster/<file>                  the HA pair's files, if paired (cluster.yaml, keys, pinned host key)

The lockdown (firewall.yaml) is left out on purpose: a lockdown change goes through commit-confirm
(`lbctl firewall lockdown`) so that it cannot lock the operator out, and a restore would bypass it.
network.yaml and the admin credentials are provisioning inputs and stay as they are.

Restore reads only the members above (regular files, at most MAX_MEMBER_BYTES each), validates
everything before it changes anything, then applies the site locally. A restored member of an HA
pair keeps heartbeat stopped (`held`) until `lbctl cluster join`, as the vendor does: a node put
back from an old backup must never grab the floating IPs from the node that served meanwhile.
"""

from __future__ import annotations

import io
import json
import socket
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .appliance import Paths, appliance_version
from .fileio import write_atomic
from .inputs import InputInvalid

FORMAT = "lbappliance-backup-1"
MAX_MEMBER_BYTES = 1 << 20  # 1 MiB: a site file or a key is a few KiB


class BackupError(Exception):
    """A backup cannot be written or restored; the message names the member and the reason."""


def _cluster_members() -> dict[str, Path]:
    from .cluster import state

    return {
        f"cluster/{p.name}": p for p in (state.STATE_FILE, state.CLUSTER_KEY, state.KNOWN_HOSTS, state.AUTHORIZED_KEYS)
    }


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
        with tarfile.open(path, mode="r:gz") as tar:
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


def _check(backup: Backup, scratch: Path) -> None:
    """Every member validated by its own engine before anything changes (InputInvalid's lines
    name the member, the field and the line)."""
    from .cli import site_context
    from .cluster.model import CLUSTER_KIND
    from .firewall.siterules import parse as parse_site_rules
    from .site.schema import SITE_KIND

    problems: list[str] = []
    for name, kind, context in (("site.yaml", SITE_KIND, site_context()), ("cluster/cluster.yaml", CLUSTER_KIND, None)):
        if name not in backup.files:
            continue
        staged = scratch / name.replace("/", "-")
        staged.write_bytes(backup.files[name])
        try:
            kind.read(str(staged), context) if context is not None else kind.read(str(staged))
        except InputInvalid as exc:
            problems += [f"backup member {name}: {line.replace(str(staged) + ': ', '')}" for line in exc.lines()]
    rules = backup.files.get("firewall/site-rules.nft")
    if rules is not None:
        try:
            parse_site_rules(rules.decode())
        except UnicodeDecodeError:
            problems.append("backup member firewall/site-rules.nft: not UTF-8 text")
        except InputInvalid as exc:
            problems += [f"backup member firewall/site-rules.nft: {line}" for line in exc.lines()]
    if problems:
        raise BackupError("the backup is refused, nothing was changed:\n  " + "\n  ".join(problems))


def restore(paths: Paths, path: Path) -> list[str]:
    """Put a backup back on this node and apply its site here (never replicated). Returns notes.
    Raises BackupError (nothing changed) or ApplyError (the previous configuration stays)."""
    from .cluster import heartbeat, pairing, state
    from .config.apply import apply_site
    from .site.schema import SITE_KIND

    backup = read_backup(path)
    scratch = paths.state_dir / ".restore"
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        _check(backup, scratch)
        if state.paired() and not backup.paired:
            raise BackupError(
                "this appliance is paired and the backup is of a single appliance: 'lbctl cluster unpair' first"
            )
        site_file = scratch / "site.yaml"
        site = SITE_KIND.read(str(site_file))
        notes = []
        if backup.paired:
            # Held before heartbeat could start on the restored files.
            pairing.hold()
            if heartbeat.running():
                heartbeat.stop()
                notes.append("heartbeat stopped")
        for name, where in _members().items():
            if where is not None and name in backup.files:
                write_atomic(where, backup.files[name], mode=0o600)
        outcome = apply_site(paths, site, site_file.read_text(), allowed_removals=None)
        notes.append(f"site applied as generation {outcome.generation.name}")
        if backup.paired:
            pairing.install_heartbeat(paths, pairing.load_cluster())
            notes.append("heartbeat held until 'lbctl cluster join'")
        return notes
    finally:
        for leftover in scratch.iterdir():
            leftover.unlink()
        scratch.rmdir()
