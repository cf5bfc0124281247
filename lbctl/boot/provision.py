"""First-boot (and every-boot) provisioning of the appliance, without a network, in one process.

Inputs come from systemd credentials (QEMU ``-smbios type=11`` or ``-fw_cfg``, hypervisor
provisioning) or from a small config disk whose filesystem label is ``LBCONFIG``. The table
``INPUTS`` below is the single description of them: the appliance reads it here, the build host
(builder/provision.py) writes provisioning media from it, and the README documents it.

Semantics, as an integrator would expect from cloud-init-like tools:

* An input that is new or changed is validated, stored on the data partition and applied.
* An input that is unchanged is not re-applied, so changes made later on the appliance (lbctl
  apply) survive a reboot with the provisioning media still attached.
* Stored admin credentials and the network configuration are re-applied at every boot, because
  /etc/shadow and /run/systemd/network belong to the root slot or to the boot, not to the data.
* Any invalid input stops provisioning with ``LBAPPLIANCE FAILED <reason>`` on the serial console;
  the reason is the same text `lbctl validate --kind ...` prints, every problem of the input.

Everything runs in this one Python process (site and network validation and the site's apply
included): a second interpreter costs seconds at boot under emulation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..appliance import DATA_DIR, NETWORKD_DIR, RUN_DIR, Paths, appliance_version
from ..fileio import write_atomic
from ..inputs import InputInvalid, Problem
from . import console, credentials

STARTED = time.monotonic()
CONFIG_DISK_LABEL = "LBCONFIG"
PROVISION_DIR = DATA_DIR / "provision"
MAX_PROBLEMS_ON_CONSOLE = 5


class ProvisionError(Exception):
    """Provisioning stopped; `lines` are the reasons (the first names the input)."""

    def __init__(self, lines: list[str]):
        super().__init__("; ".join(lines))
        self.lines = lines


# --- the inputs --------------------------------------------------------------------------------

# OpenSSH public key types (PROTOCOL.key, RFC 4253 6.6, RFC 5656, RFC 8709) the appliance's sshd takes.
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa",
)
OPTIONS_TOKEN = re.compile(r'(?:[^\s"]|"(?:[^"\\]|\\.)*")+')


def ssh_key_problem(line: str) -> str | None:
    """Why an authorized_keys line (sshd(8), AUTHORIZED_KEYS FILE FORMAT) is not a public key."""
    tokens = OPTIONS_TOKEN.findall(line)
    if tokens and tokens[0] not in SSH_KEY_TYPES and len(tokens) > 1:
        tokens = tokens[1:]  # the options field comes first
    if len(tokens) < 2:
        return "not a valid OpenSSH public key (expected 'TYPE BASE64 [COMMENT]')"
    key_type, blob = tokens[0], tokens[1]
    if key_type == "ssh-dss":
        return "DSA keys are not accepted by the appliance's OpenSSH; use an ed25519 or ECDSA key"
    if key_type not in SSH_KEY_TYPES:
        return f"not a valid OpenSSH public key (unknown key type {key_type[:40]!r})"
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return "not a valid OpenSSH public key (the key is not base64)"
    # The key blob starts with its own type as an SSH string: uint32 length, then the name.
    name = key_type.encode()
    if raw[:4] != len(name).to_bytes(4, "big") or raw[4 : 4 + len(name)] != name:
        return "not a valid OpenSSH public key (the key data does not match its type)"
    return None


def validate_ssh_keys(text: str, inputs: Mapping[str, str]) -> None:
    problems = [
        Problem((), reason, n)
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#") and (reason := ssh_key_problem(line.strip())) is not None
    ]
    if not problems and not any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()):
        problems = [Problem((), "contains no SSH public key")]
    if problems:
        raise InputInvalid(problems)


PASSWORD_HASH = re.compile(r"\$(y|gy|7|2b|2y|6|5)\$[./A-Za-z0-9$=,]+")


def validate_password_hash(text: str, inputs: Mapping[str, str]) -> None:
    if not PASSWORD_HASH.fullmatch(text.strip()):
        raise InputInvalid(
            [
                Problem(
                    (),
                    "not a crypt(3) hash ($y$, $6$, $5$ or $2b$); make one with "
                    "'openssl passwd -6' or 'mkpasswd -m yescrypt'",
                )
            ]
        )


def validate_network(text: str, inputs: Mapping[str, str]) -> None:
    from .network import NETWORK_KIND

    NETWORK_KIND.parse_text(text)


# Site models validated in this run, by text: applying a new site does not parse it again.
_validated_sites: dict[str, object] = {}


def validate_site(text: str, inputs: Mapping[str, str]) -> None:
    from ..site.schema import SITE_KIND

    _validated_sites[text] = SITE_KIND.parse_text(text, site_context(inputs.get("network")))


def site_context(network_text: str | None) -> dict[str, object]:
    """Facts about this appliance that site checks use: its own interface addresses and networks."""
    from .network import NETWORK_KIND

    text = network_text if network_text is not None else stored("network")
    if not text:
        return {}
    try:
        network = NETWORK_KIND.parse_text(text)
    except InputInvalid:
        return {}
    return {"own_addresses": network.own_addresses(), "connected_networks": network.connected_networks()}


def validate_firewall(text: str, inputs: Mapping[str, str]) -> None:
    from ..firewall.settings import FIREWALL_KIND

    FIREWALL_KIND.parse_text(text)


def validate_firewall_rules(text: str, inputs: Mapping[str, str]) -> None:
    from ..firewall.siterules import parse

    parse(text)


def validate_webui_pem(text: str, inputs: Mapping[str, str]) -> None:
    from ..webui.tls import split_pem

    split_pem(text.encode())


@dataclass(frozen=True)
class Input:
    key: str  # stable name, also the file name under DATA_DIR/provision
    credential: str  # systemd credential name
    disk_file: str  # file name on the LBCONFIG config disk
    summary: str
    # Raises InputInvalid; gets the text and every input in effect (new ones over stored ones).
    validate: Callable[[str, Mapping[str, str]], None]


INPUTS: tuple[Input, ...] = (
    Input(
        "admin-ssh-keys",
        "lb.admin.ssh-keys",
        "admin-ssh-keys",
        "OpenSSH public keys (authorized_keys lines) for the admin account, root",
        validate_ssh_keys,
    ),
    Input(
        "admin-password-hash",
        "lb.admin.password-hash",
        "admin-password-hash",
        "crypt(3) hash of the admin (root) password, e.g. from 'openssl passwd -6'",
        validate_password_hash,
    ),
    Input(
        "network",
        "lb.network",
        "network.yaml",
        "management network: hostname, addresses per interface, gateway, DNS, NTP (YAML)",
        validate_network,
    ),
    Input(
        "site",
        "lb.site",
        "site.yaml",
        "site file for lbctl: the virtual services and their real servers (YAML)",
        validate_site,
    ),
    Input(
        "firewall",
        "lb.firewall",
        "firewall.yaml",
        "firewall settings: the management networks SSH, the web UI (9443) and the metrics (8405) are open from (YAML)",
        validate_firewall,
    ),
    Input(
        "firewall-rules",
        "lb.firewall-rules",
        "firewall-rules.nft",
        "the site's own firewall rules (nftables syntax; see docs/lbctl.md, Firewall)",
        validate_firewall_rules,
    ),
    Input(
        "webui-certificate",
        "lb.webui.pem",
        "webui.pem",
        "the web UI's TLS certificate: one PEM file, the unencrypted private key then the certificate chain",
        validate_webui_pem,
    ),
)
INPUTS_BY_KEY = {i.key: i for i in INPUTS}


# --- sources ---------------------------------------------------------------------------------


def read_credentials() -> dict[str, str]:
    """Credentials imported for this service (ImportCredential=lb.*), by input key."""
    import os

    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    found: dict[str, str] = {}
    if not directory:
        return found
    for item in INPUTS:
        path = Path(directory) / item.credential
        if path.is_file():
            found[item.key] = path.read_bytes().decode("utf-8", "replace")
    return found


def find_config_disk() -> Path | None:
    # blkid probes the devices itself, so this does not depend on udev having made by-label links.
    result = subprocess.run(["blkid", "-L", CONFIG_DISK_LABEL], capture_output=True, text=True)
    device = result.stdout.strip()
    return Path(device) if result.returncode == 0 and device else None


def read_config_disk() -> dict[str, str]:
    device = find_config_disk()
    found: dict[str, str] = {}
    if device is None:
        return found
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RUN_DIR) as mountpoint:  # /run: provisioning runs before /tmp
        mount = subprocess.run(["mount", "-o", "ro", str(device), mountpoint], capture_output=True, text=True)
        if mount.returncode != 0:
            raise ProvisionError([f"config disk {device} ({CONFIG_DISK_LABEL}): cannot mount: {mount.stderr.strip()}"])
        try:
            for item in INPUTS:
                path = Path(mountpoint) / item.disk_file
                if path.is_file():
                    found[item.key] = path.read_bytes().decode("utf-8", "replace")
        finally:
            subprocess.run(["umount", mountpoint], check=False)
    return found


def collect() -> tuple[dict[str, str], dict[str, str]]:
    """Read every source; credentials win over the config disk. Returns (texts, origins)."""
    texts: dict[str, str] = {}
    origins: dict[str, str] = {}
    for origin, source in (("config disk", read_config_disk()), ("credential", read_credentials())):
        for key, text in source.items():
            texts[key] = text
            origins[key] = origin
    return texts, origins


# --- what was applied ----------------------------------------------------------------------------


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def marker(key: str) -> Path:
    return PROVISION_DIR / f"{key}.sha256"


def is_new(key: str, text: str) -> bool:
    """True when this input differs from the one applied last (or none was)."""
    m = marker(key)
    return not (m.exists() and m.read_text().strip() == digest(text))


def store(key: str, text: str) -> None:
    """Keep an input on the data partition, with the digest that marks it applied."""
    PROVISION_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(PROVISION_DIR / key, text, 0o600)
    write_atomic(marker(key), digest(text) + "\n", 0o600)


def stored(key: str) -> str | None:
    path = PROVISION_DIR / key
    return path.read_text() if path.exists() else None


# --- applying --------------------------------------------------------------------------------


def apply_admin_credentials(changed: set[str]) -> bool:
    """Install new admin credentials, restore the kept password; True if the admin has any."""
    if "admin-ssh-keys" in changed:
        write_atomic(credentials.ADMIN_KEYS_FILE, stored("admin-ssh-keys") or "", 0o644)
    if "admin-password-hash" in changed:
        credentials.write_hash(stored("admin-password-hash") or "")
    credentials.restore()
    return credentials.admin_has_credential()


def apply_network() -> None:
    """Install the management network for this boot: rendered files are kept on the data
    partition and re-rendered only when network.yaml or the appliance version changes."""
    text = stored("network") or ""
    rendered = PROVISION_DIR / "networkd"
    source = digest(text + "\0" + appliance_version(Paths.from_env().os_release))
    stamp = rendered / ".source"
    if not (stamp.exists() and stamp.read_text().strip() == source):
        from .network import NETWORK_KIND, NetworkConfig, render_network

        network = NETWORK_KIND.parse_text(text) if text.strip() else NetworkConfig()
        if rendered.exists():
            shutil.rmtree(rendered)
        for name, content in render_network(network).items():
            write_atomic(rendered / name, content, 0o644)
        write_atomic(rendered / "hostname", (network.hostname or "") + "\n", 0o644)
        write_atomic(stamp, source + "\n", 0o644)
    NETWORKD_DIR.mkdir(parents=True, exist_ok=True)
    for path in sorted(rendered.glob("*.network")):
        shutil.copyfile(path, NETWORKD_DIR / path.name)
    hostname = (rendered / "hostname").read_text().strip()
    if hostname:
        Path("/etc/hostname").write_text(hostname + "\n")
        subprocess.run(["hostname", hostname], check=False)


def apply_site(changed: bool) -> None:
    """Apply a new or changed site file; otherwise make sure some configuration is in place."""
    from ..config import generations
    from ..config.apply import ApplyError, init
    from ..config.apply import apply_site as apply_generation
    from ..config.networkd import install_networkd_dropins

    paths = Paths.from_env()
    text = stored("site")
    if text is not None and changed:
        from ..site.model import Site
        from ..site.schema import SITE_KIND

        site = _validated_sites.get(text)
        if not isinstance(site, Site):
            site = SITE_KIND.parse_text(text, site_context(None))
        try:
            # The provisioned site is the whole site: what it no longer has is removed on purpose.
            outcome = apply_generation(paths, site, text, allowed_removals=None)
        except ApplyError as exc:
            raise ProvisionError(
                [f"lb.site: lbctl apply failed: {line}" for line in str(exc).splitlines()[:3]]
            ) from None
        print(f"site applied as generation {outcome.generation.name}")
        for note in outcome.notes:
            print(f"note: {note}")
    elif init(paths) is None:
        # A configuration is in place from an earlier boot. Its VIP and SNAT addresses live in
        # networkd drop-ins under /run, which is new at every boot: put them back before
        # networkd starts (this unit runs before it), so HAProxy can bind the VIPs again.
        current = generations.target_of(paths.current)
        if current is not None:
            install_networkd_dropins(current)


def install_firewall_inputs(changed: set[str]) -> bool:
    """Put new firewall inputs where the firewall reads them; True if any changed."""
    from ..firewall.ruleset import SITE_RULES_FILE
    from ..firewall.settings import SETTINGS_FILE

    targets = {"firewall": (SETTINGS_FILE, 0o644), "firewall-rules": (SITE_RULES_FILE, 0o600)}
    for key, (target, mode) in targets.items():
        if key in changed:
            write_atomic(target, stored(key) or "", mode)
    return bool(changed & set(targets))


def apply_firewall_inputs() -> None:
    """Load the firewall with new settings or rules (a new site loads it with its own apply)."""
    from ..config import generations
    from ..config.apply import site_of
    from ..firewall import apply as fw

    current = generations.target_of(Paths.from_env().current)
    try:
        print(fw.apply(site_of(current) if current else None), flush=True)
    except fw.FirewallError as exc:
        raise ProvisionError([f"firewall inputs: {exc}"]) from None


def input_name(item: Input, origin: str) -> str:
    return item.credential if origin == "credential" else f"{CONFIG_DISK_LABEL}/{item.disk_file}"


@contextmanager
def step(title: str) -> Iterator[None]:
    """Say in the journal how long a step of provisioning took (it is on the boot's critical path)."""
    started = time.monotonic()
    yield
    print(f"{title}: {time.monotonic() - started:.2f} s", flush=True)


def run() -> int:
    print(f"started {time.monotonic() - STARTED:.2f} s after the interpreter", flush=True)
    with step("firewall"):  # first: in force before anything listens, whatever the inputs hold
        from ..firewall.apply import boot as firewall_boot

        print(firewall_boot(), flush=True)
    with step("configuration format"):  # before anything reads the data partition's configuration
        from ..update.state import ConfigFormatError, check_config_format

        try:
            check_config_format()
        except ConfigFormatError as exc:
            raise ProvisionError([str(exc)]) from None
    with step("read the inputs"):
        texts, origins = collect()
    changed = {key for key, text in texts.items() if is_new(key, text)}
    in_effect = {**{i.key: t for i in INPUTS if (t := stored(i.key)) is not None}, **texts}
    with step("validate the new inputs"):
        for item in INPUTS:  # validate everything new before storing anything
            if item.key in changed:
                try:
                    item.validate(texts[item.key], in_effect)
                except InputInvalid as exc:
                    name = input_name(item, origins[item.key])
                    raise ProvisionError([f"provisioning input {name}: {line}" for line in exc.lines()]) from None
    for key in changed:
        store(key, texts[key])
    with step("admin credentials"):
        has_admin = apply_admin_credentials(changed)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    flag = RUN_DIR / "need-admin-password"
    if has_admin:
        flag.unlink(missing_ok=True)
    else:
        flag.write_text("no admin password or SSH key was provisioned\n")
    if "webui-certificate" in changed:
        with step("web UI certificate"):
            from ..webui.tls import install

            print(f"web UI certificate installed: SHA-256 {install((stored('webui-certificate') or '').encode())}")
    with step("network"):
        apply_network()
    firewall_changed = install_firewall_inputs(changed)
    with step("site"):
        apply_site("site" in changed)
    if firewall_changed and "site" not in changed:
        with step("firewall inputs"):
            apply_firewall_inputs()
    print(f"provisioning done; new or changed inputs: {', '.join(sorted(changed)) or 'none'}")
    return 0


def console_reason(lines: list[str]) -> str:
    """The FAILED line's reason: the problems in the order of the input, a bounded number of them."""
    shown = lines[:MAX_PROBLEMS_ON_CONSOLE]
    more = len(lines) - len(shown)
    return "; ".join(shown) + (f"; and {more} more (journalctl -u lb-provision)" if more else "")


def main() -> int:
    try:
        return run()
    except ProvisionError as exc:
        for line in exc.lines:
            print(f"error: {line}", file=sys.stderr)
        firewall_when_failed()
        console.failed(console_reason(exc.lines))
        return 1
    except Exception as exc:  # an appliance must say why it is not ready, never just hang
        firewall_when_failed()
        console.failed(f"provisioning crashed: {type(exc).__name__}: {exc}")
        raise


def firewall_when_failed() -> None:
    """Provisioning stopped before a site's apply loaded a firewall (a first boot with bad input):
    sshd and networkd still start after it, so load the ruleset without services (management
    only) rather than leave the appliance open."""
    from ..firewall import apply as fw
    from ..firewall.ruleset import RULESET_FILE

    if RULESET_FILE.exists():
        return
    try:
        print(fw.apply(None), flush=True)
    except Exception as exc:  # the FAILED line matters more; say it in the journal
        print(f"error: firewall: {exc}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
