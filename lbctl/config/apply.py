"""Putting a configuration into service: apply, rollback and the first-boot init.

apply:     render into a scratch directory -> haproxy -c -> numbered generation -> links swapped
           (current -> new, last-good -> the one before) -> VIP drop-ins for networkd -> seamless
           reload through the master CLI, verified by watching the master start a new worker.
rollback:  the same activation with last-good as the new generation.
init:      the same for the empty site, only if no configuration was ever applied.

Whatever fails, the previous state is put back (links, drop-ins and, if a reload was attempted,
HAProxy itself) and ApplyError says what happened; the running configuration stays.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from ..appliance import NETWORKD_DIR, Paths, appliance_version
from ..fileio import write_atomic
from ..firewall.ruleset import FirewallError
from ..site.model import Site, empty_site
from . import generations as state
from . import haproxy as runtime
from .networkd import NetworkError, install_networkd_dropins, networkd_is_live, reload_networkd

RELOAD_TIMEOUT_SECONDS = 30


class ApplyError(Exception):
    pass


@dataclass
class Outcome:
    generation: Path
    changed: bool = True
    reloaded: bool = False
    notes: list[str] = field(default_factory=list)


def haproxy_binary() -> str:
    name = os.environ.get("LBCTL_HAPROXY", "haproxy")
    # Units started early at boot may have a PATH without /usr/sbin.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") or name


def check_config(config: Path) -> None:
    """haproxy -c: the appliance's own HAProxy has the last word on the generated file."""
    try:
        result = subprocess.run([haproxy_binary(), "-c", "-f", str(config)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ApplyError(f"cannot run '{haproxy_binary()} -c': {exc}") from None
    if result.returncode != 0:
        output = (result.stdout + result.stderr).splitlines()
        lines = [line for line in output if "[ALERT]" in line or "[WARNING]" in line]
        raise ApplyError(
            "HAProxy rejects the generated configuration (haproxy -c):\n  " + "\n  ".join(lines or output[-10:])
        )


def ensure_server_state_file(paths: Paths) -> None:
    # HAProxy warns at every start when the file is missing; a file with only the format
    # version holds no states and is what the first start should see.
    if not paths.server_state_file.exists():
        paths.server_state_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(paths.server_state_file, "1\n")


def save_server_state(paths: Paths) -> bool:
    """Dump the running servers' states for the next HAProxy process; False if none answers."""
    try:
        text = runtime.show_servers_state(paths.admin_socket)
    except runtime.HAProxyAPIError:
        return False
    write_atomic(paths.server_state_file, text)
    return True


# --- HAProxy reload ---------------------------------------------------------------------------


def reload_haproxy(paths: Paths) -> bool:
    """Seamless reload through the master CLI, verified. False if HAProxy is not running."""
    try:
        before = runtime.show_proc(paths.master_socket)
    except runtime.NotRunning:
        return False
    except runtime.HAProxyAPIError as exc:
        raise ApplyError(f"cannot talk to the HAProxy master: {exc}") from None
    save_server_state(paths)
    try:
        answer = runtime.request_reload(paths.master_socket)
    except runtime.HAProxyAPIError:
        answer = ""  # the master re-executes itself and may drop us; watch it instead
    if "Success=0" in answer:
        raise ApplyError("HAProxy could not load the new configuration and keeps the previous one:\n" + answer.strip())
    deadline = time.monotonic() + RELOAD_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            now = runtime.show_proc(paths.master_socket)
        except runtime.HAProxyAPIError:
            continue  # the master is between exec and listening again
        if now.failed_reloads > before.failed_reloads:
            raise ApplyError(
                "HAProxy could not start the new configuration and keeps the previous one "
                "(the reason is in its log: journalctl -u haproxy)"
            )
        if now.reloads > before.reloads and now.workers and not set(now.workers) & set(before.workers):
            wait_for_worker(paths, set(now.workers), deadline)
            return True
    raise ApplyError(f"HAProxy did not start a new worker within {RELOAD_TIMEOUT_SECONDS} s of the reload")


def wait_for_worker(paths: Paths, workers: set[int], deadline: float) -> None:
    """The new worker answers on the runtime API (so that 'lbctl status' sees the new services)."""
    while time.monotonic() < deadline:
        try:
            if int(runtime.show_info(paths.admin_socket).get("Pid", "0")) in workers:
                return
        except runtime.HAProxyAPIError:
            pass
        time.sleep(0.1)
    raise ApplyError("the new HAProxy worker does not answer on the runtime API")


# --- activation -------------------------------------------------------------------------------


def sync_network(generation: Path | None, networkd_dir: Path, notes: list[str], previous: Path | None = None) -> None:
    """The generation's addresses on the interfaces: networkd's drop-ins (a single appliance), or
    on the active node of an HA pair the floating IPs directly (heartbeat's resource script).
    Addresses the previous generation had and this one has not are removed here: networkd keeps
    addresses it no longer configures (KeepConfiguration=static, for the floating IPs' sake)."""
    empty = Path("/nonexistent-lbctl-generation")
    live = networkd_is_live(networkd_dir)
    if install_networkd_dropins(generation or empty, networkd_dir) and live:
        note = reload_networkd()
        if note:
            notes.append(note)
    if not live or previous is None or previous == generation:
        return
    from ..cluster import floating
    from ..cluster.state import paired

    active = paired() and floating.holds(previous)
    gone = floating.remove_stale(previous, generation)
    if gone:
        notes.append(f"removed {', '.join(gone)} (not in this configuration)")
    if paired() and generation is not None:
        # The active node gets the new floating IPs now; the passive one the new SNAT on lo.
        (floating.take if active else floating.release)(generation)


def activate(
    paths: Paths,
    generation: Path,
    networkd_dir: Path | None = None,
    site: Site | None = None,
    firewall: str | None = None,
) -> Outcome:
    """Make `generation` current (the current one becomes last-good), addresses, HAProxy and the
    firewall (`firewall`, the checked ruleset of `site`) included. On failure everything is put
    back as it was and ApplyError raised."""
    networkd_dir = networkd_dir or NETWORKD_DIR
    previous = state.target_of(paths.current)
    previous_good = state.target_of(paths.last_good)
    outcome = Outcome(generation=generation)
    ensure_server_state_file(paths)
    state.point(paths.current, generation)
    if previous is not None and previous != generation.resolve():
        state.point(paths.last_good, previous)
    reload_attempted = False
    try:
        sync_network(generation, networkd_dir, outcome.notes, previous)
        reload_attempted = True
        outcome.reloaded = reload_haproxy(paths)
        if not outcome.reloaded:
            outcome.notes.append("HAProxy is not running; it starts with this configuration")
        if firewall is not None:
            from ..firewall import apply as fw

            outcome.notes.append(fw.apply(site, text=firewall, paths=paths))
        return outcome
    except (ApplyError, NetworkError, OSError, FirewallError) as exc:
        restore_notes = restore(paths, previous, previous_good, networkd_dir, reload_attempted, generation)
        raise ApplyError(f"{exc}\n  nothing was changed: {restore_notes}") from None


def restore(
    paths: Paths,
    previous: Path | None,
    previous_good: Path | None,
    networkd_dir: Path,
    reload_haproxy_too: bool,
    failed: Path | None = None,
) -> str:
    if previous is not None:
        state.point(paths.current, previous)
    else:
        state.unpoint(paths.current)
    if previous_good is not None:
        state.point(paths.last_good, previous_good)
    else:
        state.unpoint(paths.last_good)
    notes = ["the previous configuration is current again"]
    try:
        sync_network(previous, networkd_dir, [], failed)
    except (NetworkError, OSError) as exc:
        notes.append(f"but restoring the network addresses failed: {exc}")
    if reload_haproxy_too and previous is not None:
        try:
            reload_haproxy(paths)  # take the master out of its wait mode after a failed reload
            notes.append("and HAProxy runs it")
        except ApplyError as exc:
            notes.append(f"but reloading HAProxy with it failed too: {exc}")
    return "; ".join(notes)


def same_files(a: Path, b: Path) -> bool:
    """Two generations render the same (the kept site.yaml may differ in comments only)."""

    def listing(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "site.yaml"}

    names = listing(a)
    return names == listing(b) and all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def build_generation(paths: Paths, site: Site, site_text: str | None) -> Path:
    """Render and check a generation in a scratch directory; the caller commits or removes it."""
    from .render import RenderSettings, render, write_files  # jinja2: only when something is rendered

    scratch = state.scratch_generation(paths)
    try:
        write_files(render(site, RenderSettings.for_paths(paths, appliance_version(paths.os_release))), scratch)
        if site_text is not None:
            (scratch / "site.yaml").write_text(site_text)
        check_config(scratch / "haproxy.cfg")
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return scratch


def running_services(paths: Paths) -> list[str]:
    """The services of the current generation (services.json), in its order."""
    current = state.target_of(paths.current)
    try:
        summary = json.loads((current / "services.json").read_text()) if current else {}
    except (OSError, ValueError):
        return []
    return [s["name"] for s in summary.get("services", [])]


def dropped_services(paths: Paths, site: Site) -> list[str]:
    """The running services `site` does not have, in the running configuration's order."""
    keeps = {s.name for s in site.services}
    return [name for name in running_services(paths) if name not in keeps]


def check_removals(paths: Paths, site: Site, allowed: Collection[str] | None) -> None:
    """A site that drops services the running configuration has is applied only when the
    removal is said explicitly (`allowed` names exactly those services; None: any removal)."""
    keeps = {s.name for s in site.services}
    dropped = dropped_services(paths, site)
    if allowed is None:
        return
    still = sorted(set(allowed) & keeps)
    if still:
        raise ApplyError(f"--remove {', '.join(still)}: the site file still has {'it' if len(still) == 1 else 'them'}")
    unsaid = [name for name in dropped if name not in allowed]
    if unsaid:
        flags = " ".join(f"--remove {name}" for name in unsaid)
        raise ApplyError(
            f"the site file does not have {', '.join(unsaid)}, which the running configuration serves; "
            f"nothing was changed. To remove {'it' if len(unsaid) == 1 else 'them'} on purpose: "
            f"lbctl apply {flags} FILE"
        )


def apply_site(
    paths: Paths,
    site: Site,
    site_text: str,
    networkd_dir: Path | None = None,
    allowed_removals: Collection[str] | None = (),
) -> Outcome:
    """Put `site` into service (see the module's docstring). A running service the site lacks is
    removed only if named in `allowed_removals` (None: any; provisioning's input is the whole site)."""
    with state.locked(paths):
        check_removals(paths, site, allowed_removals)
        scratch = build_generation(paths, site, site_text)
        try:
            firewall = checked_firewall(paths, site)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        current = state.target_of(paths.current)
        if current is not None and same_files(scratch, current):
            shutil.rmtree(scratch)
            outcome = Outcome(generation=current, changed=False)
            sync_network(current, networkd_dir or NETWORKD_DIR, outcome.notes)
            return outcome
        generation = state.commit_generation(paths, scratch)
        outcome = activate(paths, generation, networkd_dir, site, firewall)
        state.prune(paths)
        return outcome


def site_of(generation: Path) -> Site:
    """The site a generation was rendered from (its kept site.yaml; the empty site without one)."""
    from ..site.schema import SITE_KIND

    kept = generation / "site.yaml"
    return SITE_KIND.read(str(kept)) if kept.exists() else empty_site()


def checked_firewall(paths: Paths, site: Site) -> str | None:
    """The firewall ruleset of `site`, checked by nft; None where nft cannot check it here (a build
    host without nft, where nothing is loaded either). Raises ApplyError with nft's reason."""
    from ..firewall import apply as fw

    text = fw.firewall_for(site, version=appliance_version(paths.os_release))
    try:
        fw.check_text(text)
    except FirewallError as exc:
        if not fw.enforcing(paths) and "cannot run" in str(exc):
            return None
        raise ApplyError(f"the firewall ruleset for this site is refused: {exc}") from None
    return text


def rollback(paths: Paths, networkd_dir: Path | None = None) -> Outcome:
    with state.locked(paths):
        good = state.target_of(paths.last_good)
        if good is None:
            raise ApplyError("there is no earlier configuration to roll back to (no last-good generation)")
        check_config(good / "haproxy.cfg")
        site = site_of(good)
        return activate(paths, good, networkd_dir, site, checked_firewall(paths, site))


def reset_to_empty(paths: Paths, networkd_dir: Path | None = None) -> Outcome:
    """The empty site's configuration, whatever ran before (a secondary leaving its pair)."""
    with state.locked(paths):
        site = empty_site()
        generation = state.commit_generation(paths, build_generation(paths, site, None))
        outcome = activate(paths, generation, networkd_dir, site, checked_firewall(paths, site))
        state.prune(paths)
        return outcome


def init(paths: Paths, networkd_dir: Path | None = None) -> Outcome | None:
    """The empty site's configuration, if none was ever applied; None if one is in place."""
    with state.locked(paths):
        if state.target_of(paths.current) is not None:
            return None
        site = empty_site()
        generation = state.commit_generation(paths, build_generation(paths, site, None))
        return activate(paths, generation, networkd_dir, site, checked_firewall(paths, site))
