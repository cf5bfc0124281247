"""First-boot (and every-boot) provisioning of the appliance, without a network.

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
* Any invalid input stops provisioning with ``LBAPPLIANCE FAILED <reason>`` on the serial console.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import console, credentials
from .paths import DATA_DIR, TEMPLATES_DIR

CONFIG_DISK_LABEL = "LBCONFIG"
RUN_DIR = Path(os.environ.get("LB_RUN_DIR", "/run/lbappliance"))
NETWORKD_DIR = Path(os.environ.get("LB_NETWORKD_DIR", "/run/systemd/network"))
INTERFACES = ("eth0", "eth1", "eth2", "eth3")


class ProvisionError(Exception):
    """A provisioning input is invalid; the message names the input and the field."""


@dataclass(frozen=True)
class Input:
    key: str            # stable name, also the file name under DATA_DIR/provision
    credential: str     # systemd credential name
    disk_file: str      # file name on the LBCONFIG config disk
    summary: str

    def validate(self, text: str) -> None:
        VALIDATORS[self.key](text)


INPUTS: tuple[Input, ...] = (
    Input("admin-ssh-keys", "lb.admin.ssh-keys", "admin-ssh-keys",
          "OpenSSH public keys (authorized_keys lines) for the admin account, root"),
    Input("admin-password-hash", "lb.admin.password-hash", "admin-password-hash",
          "crypt(3) hash of the admin (root) password, e.g. from 'openssl passwd -6'"),
    Input("network", "lb.network", "network.yaml",
          "management network: hostname, addresses per interface, gateway, DNS, NTP (YAML)"),
    Input("site", "lb.site", "site.yaml",
          "site file for lbctl: the virtual services and their real servers (YAML)"),
)
INPUTS_BY_KEY = {i.key: i for i in INPUTS}


# --- validation ------------------------------------------------------------------------------

def validate_ssh_keys(text: str) -> None:
    lines = [(n, l.strip()) for n, l in enumerate(text.splitlines(), 1)]
    keys = [(n, l) for n, l in lines if l and not l.startswith("#")]
    if not keys:
        raise ProvisionError("contains no SSH public key")
    for number, line in keys:
        result = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=line, text=True,
                                capture_output=True)
        if result.returncode != 0:
            raise ProvisionError(f"line {number}: not a valid OpenSSH public key")


PASSWORD_HASH = re.compile(r"^\$(y|gy|7|2b|2y|6|5)\$[./A-Za-z0-9$=,]+$")


def validate_password_hash(text: str) -> None:
    value = text.strip()
    if not PASSWORD_HASH.match(value):
        raise ProvisionError("not a crypt(3) hash ($y$, $6$, $5$ or $2b$); "
                             "make one with 'openssl passwd -6' or 'mkpasswd -m yescrypt'")


def load_network(text: str) -> dict:
    """Parse and check network.yaml; return it with defaults filled in."""
    import yaml  # imported here: it costs seconds under emulation and most boots never need it

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ProvisionError(f"{where}YAML syntax error: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProvisionError("must be a mapping")
    known = {"hostname", "interfaces", "dns", "ntp"}
    for key in data:
        if key not in known:
            raise ProvisionError(f"{key}: unknown key (expected one of {', '.join(sorted(known))})")
    result: dict = {"hostname": None, "interfaces": {}, "dns": [], "ntp": []}
    hostname = data.get("hostname")
    if hostname is not None:
        if not isinstance(hostname, str) or not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", hostname):
            raise ProvisionError(f"hostname: {hostname!r} is not a valid host name")
        result["hostname"] = hostname
    interfaces = data.get("interfaces", {"eth0": {"dhcp": True}})
    if not isinstance(interfaces, dict):
        raise ProvisionError("interfaces: must be a mapping of interface name to settings")
    for name, settings in interfaces.items():
        path = f"interfaces.{name}"
        if name not in INTERFACES:
            raise ProvisionError(f"{path}: unknown interface (the appliance has {', '.join(INTERFACES)})")
        result["interfaces"][name] = load_interface(path, settings or {})
    for key in ("dns", "ntp"):
        values = data.get(key, [])
        if not isinstance(values, list):
            raise ProvisionError(f"{key}: must be a list of addresses")
        for n, value in enumerate(values):
            if key == "dns":
                parse_ip(f"{key}[{n}]", value)
            elif not isinstance(value, str) or not value:
                raise ProvisionError(f"{key}[{n}]: must be a host name or address")
        result[key] = [str(v) for v in values]
    return result


def parse_ip(path: str, value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        raise ProvisionError(f"{path}: {value!r} is not an IP address") from None


def load_interface(path: str, settings: object) -> dict:
    if not isinstance(settings, dict):
        raise ProvisionError(f"{path}: must be a mapping")
    known = {"dhcp", "address", "addresses", "gateway", "mtu"}
    for key in settings:
        if key not in known:
            raise ProvisionError(f"{path}.{key}: unknown key (expected one of {', '.join(sorted(known))})")
    dhcp = settings.get("dhcp", False)
    if not isinstance(dhcp, bool):
        raise ProvisionError(f"{path}.dhcp: must be true or false")
    addresses = list(settings.get("addresses", []))
    if "address" in settings:
        addresses.insert(0, settings["address"])
    parsed = []
    for n, value in enumerate(addresses):
        try:
            iface = ipaddress.ip_interface(str(value))
        except ValueError:
            raise ProvisionError(f"{path}.addresses[{n}]: {value!r} is not an address with a prefix, e.g. 192.168.85.2/24") from None
        if "/" not in str(value):
            raise ProvisionError(f"{path}.addresses[{n}]: {value!r} needs a prefix length, e.g. {value}/24")
        parsed.append(str(iface))
    gateway = settings.get("gateway")
    if gateway is not None:
        gateway = str(parse_ip(f"{path}.gateway", gateway))
    mtu = settings.get("mtu")
    if mtu is not None and (not isinstance(mtu, int) or not 576 <= mtu <= 9000):
        raise ProvisionError(f"{path}.mtu: must be a whole number from 576 to 9000")
    if not dhcp and not parsed:
        raise ProvisionError(f"{path}: needs 'dhcp: true' or at least one address")
    return {"dhcp": dhcp, "addresses": parsed, "gateway": gateway, "mtu": mtu}


def validate_network(text: str) -> None:
    load_network(text)


def validate_site(text: str) -> None:
    # lbctl validate is the one authority on site files; its first error becomes the reason.
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        result = subprocess.run([sys.executable, "-m", "lbctl", "validate", f.name],
                                capture_output=True, text=True)
    if result.returncode != 0:
        lines = [l.strip() for l in (result.stderr + result.stdout).splitlines() if l.strip()]
        errors = [l.removeprefix("error: ") for l in lines if l.startswith("error:")] or lines
        raise ProvisionError(errors[0] if errors else "lbctl validate failed")


VALIDATORS: dict[str, Callable[[str], None]] = {
    "admin-ssh-keys": validate_ssh_keys,
    "admin-password-hash": validate_password_hash,
    "network": validate_network,
    "site": validate_site,
}


# --- sources ---------------------------------------------------------------------------------

def read_credentials() -> dict[str, str]:
    """Credentials imported for this service (ImportCredential=lb.*), by input key."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    found: dict[str, str] = {}
    if not directory:
        return found
    for item in INPUTS:
        path = Path(directory) / item.credential
        if path.is_file():
            found[item.key] = path.read_text()
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
    with tempfile.TemporaryDirectory() as mountpoint:
        mount = subprocess.run(["mount", "-o", "ro", str(device), mountpoint], capture_output=True, text=True)
        if mount.returncode != 0:
            raise ProvisionError(f"config disk {device} ({CONFIG_DISK_LABEL}): cannot mount: {mount.stderr.strip()}")
        try:
            for item in INPUTS:
                path = Path(mountpoint) / item.disk_file
                if path.is_file():
                    found[item.key] = path.read_text()
        finally:
            subprocess.run(["umount", mountpoint], check=False)
    return found


# --- application -----------------------------------------------------------------------------

def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def marker(key: str) -> Path:
    return DATA_DIR / "provision" / f"{key}.sha256"


def is_new(key: str, text: str) -> bool:
    """True when this input differs from the one applied last (or none was)."""
    m = marker(key)
    return not (m.exists() and m.read_text().strip() == digest(text))


def store(key: str, text: str) -> None:
    """Keep an input on the data partition, with the digest that marks it applied."""
    write_atomic(DATA_DIR / "provision" / key, text, 0o600)
    write_atomic(marker(key), digest(text) + "\n", 0o600)


def write_atomic(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def stored(key: str) -> str | None:
    path = DATA_DIR / "provision" / key
    return path.read_text() if path.exists() else None


def apply_admin_credentials(changed: set[str]) -> bool:
    """Install new admin credentials, restore the kept password; True if the admin has any."""
    if "admin-ssh-keys" in changed:
        write_atomic(credentials.ADMIN_KEYS_FILE, stored("admin-ssh-keys") or "", 0o644)
    if "admin-password-hash" in changed:
        credentials.write_hash(stored("admin-password-hash") or "")
    credentials.restore()
    return credentials.admin_has_credential()


def render_network(network: dict) -> dict[str, str]:
    """The systemd-networkd files for the management network, from one template."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR / "provision"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    template = env.get_template("interface.network.j2")
    files = {}
    for name in INTERFACES:
        settings = network["interfaces"].get(name)
        files[f"10-lb-{name}.network"] = template.render(name=name, settings=settings,
                                                         dns=network["dns"], ntp=network["ntp"])
    return files


def apply_network() -> None:
    """Install the management network for this boot: rendered files are kept on the data
    partition and re-rendered only when network.yaml or the appliance version changes."""
    from .version import appliance_version
    from .paths import Paths

    text = stored("network") or ""
    rendered = DATA_DIR / "provision" / "networkd"
    source = digest(text + "\0" + appliance_version(Paths.from_env().os_release))
    stamp = rendered / ".source"
    if not (stamp.exists() and stamp.read_text().strip() == source):
        network = load_network(text)
        if rendered.exists():
            shutil.rmtree(rendered)
        for name, content in render_network(network).items():
            write_atomic(rendered / name, content, 0o644)
        write_atomic(rendered / "hostname", (network["hostname"] or "") + "\n", 0o644)
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
    text = stored("site")
    if text is not None and changed:
        result = subprocess.run([sys.executable, "-m", "lbctl", "apply", str(DATA_DIR / "provision" / "site")],
                                capture_output=True, text=True)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        if result.returncode != 0:
            lines = [l for l in result.stderr.splitlines() if l.strip()]
            raise ProvisionError(f"lb.site: lbctl apply failed: {lines[0] if lines else 'no output'}")
    else:
        from . import state
        from .apply import init
        from .network import install_networkd_dropins
        from .paths import Paths

        paths = Paths.from_env()
        # in-process: a second python would cost seconds at boot
        if init(paths) is None:
            # A configuration is in place from an earlier boot. Its VIP and SNAT addresses live in
            # networkd drop-ins under /run, which is new at every boot: put them back before
            # networkd starts (this unit runs before it), so HAProxy can bind the VIPs again.
            install_networkd_dropins(state.target_of(paths.current))


def collect() -> tuple[dict[str, str], dict[str, str]]:
    """Read every source; credentials win over the config disk. Returns (texts, origins)."""
    texts: dict[str, str] = {}
    origins: dict[str, str] = {}
    for origin, source in (("config disk", read_config_disk()), ("credential", read_credentials())):
        for key, text in source.items():
            texts[key] = text
            origins[key] = origin
    return texts, origins


def run() -> int:
    texts, origins = collect()
    changed = {key for key, text in texts.items() if is_new(key, text)}
    for item in INPUTS:                      # validate everything new before storing anything
        if item.key in changed:
            try:
                item.validate(texts[item.key])
            except ProvisionError as exc:
                name = item.credential if origins[item.key] == "credential" else f"{CONFIG_DISK_LABEL}/{item.disk_file}"
                raise ProvisionError(f"provisioning input {name}: {exc}") from None
    for key in changed:
        store(key, texts[key])
    has_admin = apply_admin_credentials(changed)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    flag = RUN_DIR / "need-admin-password"
    if has_admin:
        flag.unlink(missing_ok=True)
    else:
        flag.write_text("no admin password or SSH key was provisioned\n")
    apply_network()
    apply_site("site" in changed)
    print(f"provisioning done; new or changed inputs: {', '.join(sorted(changed)) or 'none'}")
    return 0


def main() -> int:
    try:
        return run()
    except ProvisionError as exc:
        console.failed(str(exc))
        return 1
    except Exception as exc:  # an appliance must say why it is not ready, never just hang
        console.failed(f"provisioning crashed: {type(exc).__name__}: {exc}")
        raise


if __name__ == "__main__":
    sys.exit(main())
