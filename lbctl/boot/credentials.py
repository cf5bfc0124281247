"""The admin (root) password hash, kept on the data partition so that it survives a root swap.

/etc/shadow belongs to the root slot, which an offline update replaces. The hash therefore lives
in /var/lib/lbappliance/credentials/root.password-hash:
* 'save' copies it there whenever /etc/shadow changes (lb-credentials-save.path), so 'passwd'
  on the appliance works as usual;
* 'restore' puts it back into /etc/shadow at boot (lb-provision calls it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..appliance import DATA_DIR
from ..fileio import write_atomic

HASH_FILE = DATA_DIR / "credentials" / "root.password-hash"
ADMIN_KEYS_FILE = DATA_DIR / "ssh" / "authorized_keys" / "root"
SHADOW = Path("/etc/shadow")


def shadow_field(user: str = "root") -> str | None:
    """The user's password field in /etc/shadow as it is ('$y$...', '!$y$...', '*', ''), or None."""
    for line in SHADOW.read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user and len(fields) > 1:
            return fields[1]
    return None


def shadow_hash(user: str = "root") -> str | None:
    """The user's hash from /etc/shadow, or None when the account has no usable password."""
    value = shadow_field(user)
    return value if value and value.startswith("$") else None


def write_hash(value: str) -> None:
    HASH_FILE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(HASH_FILE, value.strip() + "\n", 0o600)


def save() -> None:
    """Keep the password, and a lock of it: 'passwd -l' ('!' before the hash) is kept as it is, so
    that the web UI refuses the password too and the next boot's restore keeps it locked. Other
    values ('*', empty) are not kept: the image's own '*' must never replace a kept hash."""
    value = shadow_field()
    usable = value is not None and value.startswith("$")
    locked = value is not None and value.startswith("!$") and HASH_FILE.exists()
    if (usable or locked) and (not HASH_FILE.exists() or HASH_FILE.read_text().strip() != value):
        write_hash(value or "")


def restore() -> None:
    if HASH_FILE.exists():
        value = HASH_FILE.read_text().strip()
        if value != shadow_field():
            subprocess.run(["usermod", "--password", value, "root"], check=True)


def admin_has_credential() -> bool:
    return HASH_FILE.exists() or ADMIN_KEYS_FILE.exists()


def main(argv: list[str]) -> int:
    if argv == ["save"]:
        save()
    elif argv == ["restore"]:
        restore()
    else:
        print("usage: python3 -m lbctl.boot.credentials save|restore", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
