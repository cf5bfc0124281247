"""Putting a firewall ruleset into force: at boot, with every site apply, and by hand with an
optional commit-confirm.

    firewall_for(site)          render the ruleset of a site (or of none) from the settings in force
    apply(site, confirm=N)      check, load; with N, keep it only if confirmed within N seconds
    confirm() / revert()        keep the pending ruleset / go back to the confirmed one
    boot()                      load the confirmed ruleset (a pending one is reverted: it was never
                                confirmed), or the one of the applied site if none was saved

The kernel's firewall is touched only on the appliance (os-release IMAGE_ID) or where
LBCTL_FIREWALL=on says so (the tests, inside their own network namespaces). Elsewhere lbctl
renders and checks (nft -c) the ruleset but loads nothing, so running lbctl on a build host can
never change that host's firewall.

Commit-confirm follows Junos' `commit confirmed` and OPNsense's rollback timer: the new ruleset is
loaded and written to pending.nft, a detached process waits N seconds and loads ruleset.nft (the
confirmed one) again unless `lbctl firewall confirm` removed pending.nft first. A reboot in
between also comes back with the confirmed ruleset.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..appliance import IMAGE_ID, Paths, read_os_release
from ..fileio import write_atomic
from ..inputs.addresses import IPAddress
from ..site.model import Site
from . import ruleset
from .settings import FIREWALL_DIR, FirewallSettings, load_settings
from .siterules import SiteRules
from .siterules import parse as parse_site_rules

TOKEN_FILE = FIREWALL_DIR / "pending.token"
KERNEL_FILE = FIREWALL_DIR / "kernel.json"  # the confirmed ruleset's KernelSettings
PENDING_KERNEL_FILE = FIREWALL_DIR / "pending-kernel.json"
DEFAULT_CONFIRM_SECONDS = 120


FirewallError = ruleset.FirewallError


def enforcing(paths: Paths | None = None) -> bool:
    """Whether lbctl loads rulesets into the kernel here (see the module's docstring)."""
    setting = os.environ.get("LBCTL_FIREWALL", "auto")
    if setting in ("on", "off"):
        return setting == "on"
    os_release = (paths or Paths.from_env()).os_release
    return read_os_release(os_release).get("IMAGE_ID") == IMAGE_ID


def site_rules() -> SiteRules:
    path = ruleset.SITE_RULES_FILE
    return parse_site_rules(path.read_text()) if path.exists() else SiteRules()


def peer_addresses() -> tuple[IPAddress, ...]:
    """The HA peer's own addresses (admitted to management, heartbeat and peers); none unpaired."""
    from ..cluster.state import peer_addresses as paired

    return paired()


def firewall_for(
    site: Site | None, settings: FirewallSettings | None = None, rules: SiteRules | None = None, version: str = ""
) -> str:
    return ruleset.render(site, settings or load_settings(), rules or site_rules(), peer_addresses(), version)


def _stage(text: str) -> Path:
    FIREWALL_DIR.mkdir(parents=True, exist_ok=True)
    staged = FIREWALL_DIR / f".staged-{os.getpid()}.nft"
    write_atomic(staged, text, 0o600)
    return staged


def check_text(text: str) -> None:
    """nft -c of a ruleset text (FirewallError with nft's reasons); changes nothing."""
    staged = _stage(text)
    try:
        ruleset.check(staged)
    finally:
        staged.unlink(missing_ok=True)


def apply(
    site: Site | None, confirm_seconds: int | None = None, text: str | None = None, paths: Paths | None = None
) -> str:
    """Check and load the ruleset of `site` (or `text`); returns what happened, in words.

    With `confirm_seconds` the ruleset is kept only if `confirm()` follows in time. Raises
    FirewallError with nft's reason and the previous ruleset in force.
    """
    text = text if text is not None else firewall_for(site)
    staged = _stage(text)
    try:
        ruleset.check(staged)
        if not enforcing(paths):
            return "firewall ruleset checked, not loaded (not the appliance; LBCTL_FIREWALL=on loads it)"
        ruleset.load(staged)
        kernel = KernelSettings(bool(site and site.transparent), bool(site and site.outbound_snat))
        kernel.sync()
        if confirm_seconds is None:
            kernel.save()
            staged.replace(ruleset.RULESET_FILE)
            ruleset.PENDING_FILE.unlink(missing_ok=True)
            TOKEN_FILE.unlink(missing_ok=True)
            return "firewall ruleset loaded"
        staged.replace(ruleset.PENDING_FILE)
        kernel.save(PENDING_KERNEL_FILE)
        token = secrets.token_hex(8)
        write_atomic(TOKEN_FILE, token + "\n", 0o600)
        _start_revert_timer(confirm_seconds, token)
        return f"firewall ruleset loaded; it reverts in {confirm_seconds} s unless confirmed ('lbctl firewall confirm')"
    finally:
        staged.unlink(missing_ok=True)


def _start_revert_timer(seconds: int, token: str) -> None:
    """A detached process that reverts after `seconds` unless the token was confirmed away."""
    subprocess.Popen(
        [sys.executable, "-m", "lbctl.firewall.apply", "revert-after", str(seconds), token],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=os.environ.copy(),
    )


def pending() -> bool:
    return ruleset.PENDING_FILE.exists()


def confirm() -> str:
    if not pending():
        raise FirewallError("no firewall change is waiting for confirmation")
    KernelSettings.load(PENDING_KERNEL_FILE).save()
    ruleset.PENDING_FILE.replace(ruleset.RULESET_FILE)
    TOKEN_FILE.unlink(missing_ok=True)
    return "firewall ruleset confirmed; it stays in force"


def revert() -> str:
    """Load the confirmed ruleset again and drop the pending one."""
    if not ruleset.RULESET_FILE.exists():
        raise FirewallError("no confirmed firewall ruleset to go back to")
    ruleset.load(ruleset.RULESET_FILE)
    KernelSettings.load().sync()
    ruleset.PENDING_FILE.unlink(missing_ok=True)
    TOKEN_FILE.unlink(missing_ok=True)
    return "firewall reverted to the confirmed ruleset"


def revert_after(seconds: int, token: str) -> int:
    time.sleep(seconds)
    try:
        current = TOKEN_FILE.read_text().strip()
    except OSError:
        return 0  # confirmed, or replaced by a newer change (which has its own timer)
    if current != token:
        return 0
    print(revert(), flush=True)
    return 0


def boot() -> str:
    """At boot, before anything listens: the confirmed ruleset (a pending one was never
    confirmed, so it is dropped). At the very first boot there is none yet: provisioning then
    applies a site (or the empty one), which loads its ruleset before provisioning ends, and
    every listener (networkd, sshd, HAProxy) starts after provisioning; if provisioning fails
    first, it loads the management-only ruleset itself (boot.provision.firewall_when_failed)."""
    if pending():
        ruleset.PENDING_FILE.unlink()
        TOKEN_FILE.unlink(missing_ok=True)
    if ruleset.RULESET_FILE.exists():
        if not enforcing():
            return "firewall ruleset not loaded (not the appliance)"
        ruleset.load(ruleset.RULESET_FILE)
        KernelSettings.load().sync()
        return "firewall ruleset loaded"
    return "no firewall ruleset yet (first boot): provisioning's apply loads one before anything listens"


@dataclass(frozen=True)
class KernelSettings:
    """What a ruleset needs of the kernel besides itself: TPROXY's policy routing, forwarding."""

    transparent: bool = False
    forward: bool = False

    def sync(self) -> None:
        ruleset.sync_policy_routing(self.transparent)
        ruleset.sync_forwarding(self.forward)

    def save(self, path: Path | None = None) -> None:
        write_atomic(path or KERNEL_FILE, json.dumps(dataclasses.asdict(self)) + "\n", 0o600)

    @classmethod
    def load(cls, path: Path | None = None) -> KernelSettings:
        try:
            return cls(**json.loads((path or KERNEL_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return cls()


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "revert-after":
    sys.exit(revert_after(int(sys.argv[2]), sys.argv[3]))
