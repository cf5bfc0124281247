"""The lbctl command line.

Exit status: 0 success; 1 the command failed (invalid site, HAProxy refused, ...), with one
'error: ...' line per problem on stderr; 2 wrong usage. lbctl never shows a Python traceback
unless LBCTL_DEBUG=1 is set.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from .appliance import Paths, appliance_version
from .config.apply import ApplyError, Outcome
from .inputs import InputInvalid, InputKind
from .site.model import Site


def fail(lines: list[str] | str) -> NoReturn:
    for line in [lines] if isinstance(lines, str) else lines:
        for part in str(line).splitlines() or [""]:
            click.echo(part if part.startswith(("error:", "  ")) else f"error: {part}", err=True)
    sys.exit(1)


def input_kinds() -> dict[str, InputKind[Any]]:
    """The inputs `lbctl validate --kind` and `lbctl schema --kind` know, by name."""
    from .boot.network import NETWORK_KIND
    from .cluster.model import CLUSTER_KIND
    from .firewall.settings import FIREWALL_KIND
    from .site.schema import SITE_KIND

    return {k.name: k for k in (SITE_KIND, NETWORK_KIND, FIREWALL_KIND, CLUSTER_KIND)}


KINDS = ("site", "network", "firewall", "cluster")  # the names of input_kinds(), without importing them


def load(file: str) -> tuple[Site, str]:
    """The site model of a file and its text; every problem printed and exit 1 if it is invalid."""
    from .actions import site_context
    from .site.schema import SITE_KIND

    try:
        site: Site = SITE_KIND.read(file, site_context())
    except InputInvalid as exc:
        fail([f"error: {line}" for line in exc.lines()])
    return site, Path(file).read_text()


def report(outcome: Outcome, verb: str) -> None:
    if not outcome.changed:
        click.echo(f"configuration unchanged (generation {outcome.generation.name}); nothing to reload")
    else:
        click.echo(
            f"{verb} generation {outcome.generation.name}"
            + ("; HAProxy reloaded seamlessly" if outcome.reloaded else "")
        )
    for note in outcome.notes:
        click.echo(f"note: {note}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Validate, render, apply and report the load-balancer configuration.

    A site file (YAML) names the service preset, the SNAT address and, per virtual service, its
    VIP and real servers; see 'lbctl schema' and docs/lbctl.md. Typical use:

    \b
      lbctl validate site.yaml      check it, changing nothing
      lbctl apply site.yaml         put it into service (seamless reload)
      lbctl status                  the System Overview
      lbctl server drain DICOM Server1
      lbctl rollback                back to the configuration before
    """
    ctx.obj = Paths.from_env()


@cli.command()
@click.pass_obj
def version(paths: Paths) -> None:
    """Print the appliance version."""
    click.echo(appliance_version(paths.os_release))


KINDS_HELP = "Which input the file is: site (the default), network (network.yaml), firewall (firewall.yaml), cluster."


@cli.command()
@click.option("--kind", default="site", show_default=True, type=click.Choice(KINDS), help=KINDS_HELP)
@click.argument("file", type=click.Path(dir_okay=False))
def validate(kind: str, file: str) -> None:
    """Check an input file; print every problem as 'error: <field.path>: <reason> (line N)'.

    The same engine and the same messages as provisioning at first boot.
    """
    if kind == "site":
        site, _ = load(file)
        names = ", ".join(s.name for s in site.services)
        click.echo(f"{file}: valid; preset {site.preset.name}, {len(site.services)} service(s): {names}")
        return
    try:
        input_kinds()[kind].read(file)
    except InputInvalid as exc:
        fail([f"error: {line}" for line in exc.lines()])
    click.echo(f"{file}: valid {kind} input")


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory to write haproxy.cfg, manifest.json and networkd/ into.",
)
@click.pass_obj
def render(paths: Paths, file: str, out_dir: str) -> None:
    """Write every file generated from a site file into a directory, touching nothing else.

    Runs on any machine: the paths inside the files (runtime API socket, server state file)
    follow LBCTL_ADMIN_SOCKET and LBCTL_STATE_DIR, as on the appliance by default.
    """
    from .config.render import RenderSettings, write_files
    from .config.render import render as render_files

    site, _ = load(file)
    files = render_files(site, RenderSettings.for_paths(paths, appliance_version(paths.os_release)))
    write_files(files, Path(out_dir))
    for name in sorted(files):
        click.echo(str(Path(out_dir) / name))


@cli.command()
@click.option(
    "--remove",
    "removals",
    multiple=True,
    metavar="SERVICE",
    help="Remove this running service, which the site file no longer has (repeat for each).",
)
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def apply(paths: Paths, removals: tuple[str, ...], file: str) -> None:
    """Validate, render, check with 'haproxy -c', switch to it and reload HAProxy seamlessly.

    Persistence tables survive the reload. On any failure the running configuration stays and
    the error is printed. The configuration before becomes last-good ('lbctl rollback').
    If HAProxy is not running, the configuration is put in place for its start. A running
    service that the site file lacks is removed only with --remove SERVICE.
    """
    from . import actions

    _act(actions.refuse_on_secondary, "apply")
    site, text = load(file)
    report_change(_act(actions.apply_parsed, paths, site, text, removals), "applied")


def _act(action: Any, *args: Any) -> Any:
    """Run one of lbctl.actions; its refusal is the command's error."""
    from .actions import ActionError

    try:
        return action(*args)
    except ActionError as exc:
        fail(str(exc))


def report_change(change: Any, verb: str) -> None:
    """The outcome of an apply or rollback, then the replication to the HA peer (exit 1 if it failed)."""
    report(change.outcome, verb)
    if change.replicated:
        click.echo(f"replicated: {change.replicated}")
    if change.replication_error:
        fail(change.replication_error)


@cli.command()
@click.pass_obj
def rollback(paths: Paths) -> None:
    """Go back to the last-good configuration (the one before the last apply).

    The configuration left becomes last-good, so a second rollback undoes the first.
    """
    from . import actions

    report_change(_act(actions.rollback, paths), "rolled back to")


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def backup(paths: Paths, file: str) -> None:
    """Write this node's configuration to FILE (gzip'd tar, mode 600; '-' for standard output).

    It holds the applied site, the site's own firewall rules and, on an HA pair, the pair's files
    (with this node's cluster key). The lockdown, network.yaml and the admin credentials are not
    in it.
    """
    from .backup import BackupError
    from .backup import backup as make_backup

    try:
        data = make_backup(paths)
    except BackupError as exc:
        fail(str(exc))
    if file == "-":
        sys.stdout.buffer.write(data)
        return
    from .fileio import write_atomic

    write_atomic(Path(file), data, mode=0o600)
    click.echo(f"backup written to {file} ({len(data)} bytes)")


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def restore(paths: Paths, file: str) -> None:
    """Put a backup back on this node and apply its site here.

    Everything is validated before anything changes. A member of an HA pair keeps heartbeat
    stopped afterwards until 'lbctl cluster join', so that a node restored from an old backup
    never takes the floating IPs from the node that served meanwhile.
    """
    from .backup import BackupError
    from .backup import restore as do_restore

    try:
        notes = do_restore(paths, Path(file))
    except (BackupError, ApplyError) as exc:
        fail(str(exc))
    click.echo("restored: " + "; ".join(notes))


@cli.command()
@click.pass_obj
def init(paths: Paths) -> None:
    """Put the configuration of an empty site in place if none was ever applied (first boot)."""
    from .config.apply import init as do_init

    try:
        outcome = do_init(paths)
    except ApplyError as exc:
        fail(str(exc))
    if outcome is None:
        click.echo("a configuration is already in place")
    else:
        report(outcome, "initial configuration (no services) in place as")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(paths: Paths, as_json: bool) -> None:
    """The System Overview: every VIP and real server with its state, last check and sessions.

    Exits 0 when healthy (HAProxy runs every virtual service), 1 otherwise. Real servers that
    are DOWN are reported but do not make the appliance unhealthy.
    """
    from .status import collect_status, format_overview

    st = collect_status(paths)
    click.echo(json.dumps(st.to_json(), indent=2) if as_json else format_overview(st))
    sys.exit(0 if st.healthy else 1)


@cli.command()
@click.argument("action", type=click.Choice(["drain", "halt", "online"]))
@click.argument("service")
@click.argument("label")
@click.pass_obj
def server(paths: Paths, action: str, service: str, label: str) -> None:
    """Drain, halt or bring back a real server, like the vendor WebUI.

    \b
      drain   no new clients; existing connections (and clients persistent to it) continue
      halt    maintenance: no clients at all, its open connections are closed
      online  back in service (from drain or halt)

    The state survives reloads and reboots, until 'online'.
    """
    from . import actions

    click.echo(_act(actions.server_action, paths, action, service, label))


@cli.command()
@click.option("--kind", default="site", show_default=True, type=click.Choice(KINDS), help=KINDS_HELP)
def schema(kind: str) -> None:
    """Print an input's key reference (Markdown), generated from its table."""
    click.echo(input_kinds()[kind].reference(), nl=False)


@cli.command()
@click.argument("name", default="pacs")
def preset(name: str) -> None:
    """Print a service preset as a table (Markdown)."""
    from .docs import preset_table
    from .site.preset import PresetError, available_presets

    if name not in available_presets():
        fail(f"{name}: no such preset (known: {', '.join(available_presets())})")
    try:
        click.echo(preset_table(name), nl=False)
    except PresetError as exc:
        fail(str(exc))


@cli.command()
@click.pass_obj
def generations(paths: Paths) -> None:
    """List the kept configurations, marking current and last-good."""
    from .config import generations as state

    current, good = state.target_of(paths.current), state.target_of(paths.last_good)
    for generation in state.numbered(paths):
        mark = "current" if generation == current else ("last-good" if generation == good else "")
        summary = generation / "services.json"
        services = [s["name"] for s in json.loads(summary.read_text())["services"]] if summary.exists() else []
        click.echo(f"{generation.name}  {mark:<9}  {', '.join(services) or '(no services)'}")


# --- the firewall ------------------------------------------------------------------------------


@cli.group()
def firewall() -> None:
    """The appliance's firewall: status and counters, lockdown, the site's own rules, commit-confirm.

    \b
      lbctl firewall status                     rule groups with their counters, lockdown, pending change
      lbctl firewall lockdown --network 10.1.0.0/16   management (SSH, web UI) only from there
      lbctl firewall rules site-rules.nft       install the site's own rules (nftables syntax)
      lbctl firewall apply --confirm 120        load; revert in 120 s unless confirmed
      lbctl firewall confirm                    keep the change
    """


def _current_site(paths: Paths) -> Site | None:
    from .config import generations
    from .config.apply import site_of

    current = generations.target_of(paths.current)
    return site_of(current) if current else None


def _firewall_change(paths: Paths, confirm: int | None, **render: Any) -> None:
    from .appliance import appliance_version
    from .firewall import apply as fw

    site = _current_site(paths)
    try:
        text = fw.firewall_for(site, version=appliance_version(paths.os_release), **render)
        click.echo(fw.apply(site, confirm_seconds=confirm, text=text, paths=paths))
    except (fw.FirewallError, InputInvalid) as exc:
        fail(str(exc))


CONFIRM_HELP = "Revert by itself after this many seconds unless 'lbctl firewall confirm' follows."


@firewall.command("apply")
@click.option("--confirm", "confirm", type=click.IntRange(10, 3600), metavar="SECONDS", help=CONFIRM_HELP)
@click.pass_obj
def firewall_apply(paths: Paths, confirm: int | None) -> None:
    """Render the ruleset from the applied site, firewall.yaml and the site's rules, and load it."""
    _firewall_change(paths, confirm)


@firewall.command("confirm")
def firewall_confirm() -> None:
    """Keep the firewall change that is waiting for confirmation."""
    from .firewall import apply as fw

    try:
        click.echo(fw.confirm())
    except fw.FirewallError as exc:
        fail(str(exc))


@firewall.command("revert")
def firewall_revert() -> None:
    """Go back to the confirmed ruleset now (a change waiting for confirmation is dropped)."""
    from .firewall import apply as fw

    try:
        click.echo(fw.revert())
    except fw.FirewallError as exc:
        fail(str(exc))


@firewall.command("rules")
@click.option("--confirm", "confirm", type=click.IntRange(10, 3600), metavar="SECONDS", help=CONFIRM_HELP)
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.pass_obj
def firewall_rules(paths: Paths, confirm: int | None, file: str) -> None:
    """Install the site's own rules (the guide's Firewall Script, nftables syntax) and load them.

    The file is checked with the generated ruleset in one 'nft -c' first; a refused file changes
    nothing. It is kept on the data partition and never replicated to an HA peer.
    """
    from .fileio import write_atomic
    from .firewall import apply as fw
    from .firewall import ruleset
    from .firewall.siterules import parse

    text = Path(file).read_text()
    try:
        rules = parse(text)
    except InputInvalid as exc:
        fail([f"error: {file}: {line}" for line in exc.lines()])
    _firewall_change(paths, confirm, rules=rules)
    if not fw.pending() or confirm is not None:
        write_atomic(ruleset.SITE_RULES_FILE, text, 0o600)


@firewall.command("edit")
@click.pass_obj
def firewall_edit(paths: Paths) -> None:
    """Edit the site's own rules in $EDITOR, then check and load them as 'lbctl firewall rules'."""
    import tempfile

    from .firewall import ruleset

    with tempfile.NamedTemporaryFile("w+", suffix=".nft", delete=False) as scratch:
        scratch.write(ruleset.SITE_RULES_FILE.read_text() if ruleset.SITE_RULES_FILE.exists() else RULES_SKELETON)
    click.edit(filename=scratch.name)
    ctx = click.get_current_context()
    ctx.invoke(firewall_rules, file=scratch.name, confirm=None)
    Path(scratch.name).unlink(missing_ok=True)


RULES_SKELETON = """\
# The site's own firewall rules (nftables syntax), kept on this appliance only.
# Each block names one of the appliance's chains; its rules run after the generated ones.
# chain input {
#     ip saddr 10.0.9.0/24 udp dport 161 accept
# }
# chain postrouting {
#     ip saddr { 10.10.5.59, 10.10.5.60 } tcp dport { 104, 11112 } snat ip to 10.10.5.100
# }
"""


@firewall.command("lockdown")
@click.option("--network", "networks", metavar="CIDR[,CIDR...]", help="Management only from these networks.")
@click.option("--open", "open_", is_flag=True, help="Lift the lockdown: management from anywhere.")
@click.option("--force", is_flag=True, help="Even if it would cut off this session's own address.")
@click.option(
    "--confirm",
    "confirm",
    type=click.IntRange(10, 3600),
    default=120,
    show_default=True,
    metavar="SECONDS",
    help=CONFIRM_HELP,
)
@click.pass_obj
def firewall_lockdown(paths: Paths, networks: str | None, open_: bool, force: bool, confirm: int) -> None:
    """The vendor's lockdown wizard: SSH and the web UI only from the management networks.

    Refuses a lockdown that would cut off the SSH session it runs from unless --force. The change
    reverts by itself after --confirm seconds (120) unless 'lbctl firewall confirm' follows.
    """
    import ipaddress

    import yaml

    from .fileio import write_atomic
    from .firewall import apply as fw
    from .firewall.settings import FIREWALL_KIND, SETTINGS_FILE

    if bool(networks) == open_:
        fail("give either --network CIDR[,CIDR...] or --open")
    listed = [n.strip() for n in (networks or "").split(",") if n.strip()]
    text = yaml.safe_dump({"management_networks": listed})
    try:
        settings = FIREWALL_KIND.parse_text(text)
    except InputInvalid as exc:
        fail([f"error: --network: {line}" for line in exc.lines()])
    session = os.environ.get("SSH_CONNECTION", "").split()
    if settings.locked_down and session and not force:
        client = ipaddress.ip_address(session[0])
        if not any(client in network for network in settings.management_networks):
            fail(
                f"this session comes from {client}, outside {', '.join(listed)}: the lockdown would cut it off "
                "(--force to do it anyway)"
            )
    _firewall_change(paths, confirm, settings=settings)
    write_atomic(SETTINGS_FILE, text, 0o644)
    if fw.pending():
        click.echo("run 'lbctl firewall confirm' from a management network to keep it")


@firewall.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def firewall_status(as_json: bool) -> None:
    """The lockdown, a change waiting for confirmation, and every rule group with its counters."""
    from .firewall import apply as fw
    from .firewall import ruleset
    from .firewall.settings import load_settings

    settings = load_settings()
    try:
        counters = ruleset.counters()
    except ruleset.FirewallError as exc:
        fail(str(exc))
    groups: dict[tuple[str, str], list[int]] = {}
    for c in counters:
        total = groups.setdefault((c.chain, c.comment or "(uncommented)"), [0, 0])
        total[0] += c.packets
        total[1] += c.bytes
    lockdown = [str(n) for n in settings.management_networks]
    rows = [{"chain": chain, "group": group, "packets": p, "bytes": b} for (chain, group), (p, b) in groups.items()]
    if as_json:
        state = {"lockdown": lockdown, "pending_confirmation": fw.pending(), "groups": rows}
        click.echo(json.dumps(state, indent=2))
        return
    click.echo(f"lockdown: {', '.join(lockdown) or 'none (management open from anywhere)'}")
    if fw.pending():
        click.echo("a change is waiting for confirmation ('lbctl firewall confirm')")
    click.echo(f"{'CHAIN':<12} {'GROUP':<22} {'PACKETS':>10} {'BYTES':>12}")
    for g in rows:
        click.echo(f"{g['chain']:<12} {g['group']:<22} {g['packets']:>10} {g['bytes']:>12}")


# --- the HA pair --------------------------------------------------------------------------------


@cli.group()
def cluster() -> None:
    """The HA pair: pairing, state, moving the floating IPs by hand, unpairing.

    \b
      secondary$ lbctl cluster token                 a one-time pairing token (10 minutes)
      primary$   lbctl cluster pair --peer ADDRESS --token TOKEN
      lbctl cluster status                           roles, heartbeat, configurations, replication
      lbctl cluster takeover | standby               move the floating IPs here | to the peer
      lbctl cluster unpair                           two single appliances again
      lbctl cluster join                             start heartbeat after a restore

    After pairing, every 'lbctl apply' on the primary is replicated to the secondary.
    """


def _cluster_call(action: Any, *args: Any) -> Any:
    from .cluster.heartbeat import HeartbeatError
    from .cluster.link import LinkError
    from .cluster.pairing import ClusterError

    try:
        return action(*args)
    except (ClusterError, HeartbeatError, LinkError, ApplyError) as exc:
        fail(str(exc))
    except InputInvalid as exc:
        fail([f"error: {line}" for line in exc.lines()])


@cluster.command("token")
@click.pass_obj
def cluster_token(paths: Paths) -> None:
    """On the future secondary: print a one-time pairing token, valid 10 minutes."""
    import time

    from .cluster import link
    from .cluster.pairing import hostname, make_token

    token, expires = _cluster_call(make_token, paths)
    click.echo(f"pairing token for {hostname()}: {token.text()}")
    click.echo(f"valid until {time.strftime('%H:%M:%S UTC', time.gmtime(expires))}, for one pairing")
    click.echo(f"this appliance's SSH host key: {link.fingerprint_text(link.own_host_key())}")
    click.echo(f"on the primary: lbctl cluster pair --peer <this appliance's address> --token {token.text()}")


@cluster.command("pair")
@click.option("--peer", "peer", required=True, metavar="ADDRESS", help="The secondary's own address.")
@click.option("--token", "token", required=True, help="What 'lbctl cluster token' printed on the secondary.")
@click.pass_obj
def cluster_pair(paths: Paths, peer: str, token: str) -> None:
    """On the primary: pair with the appliance at ADDRESS, which becomes the secondary.

    Checks the peer's SSH host key against the token and pins it, makes a cluster key on each
    node (restricted to lbctl's replication command), heartbeat's shared key, and copies this
    node's site to the peer, which applies it. On any failure neither node changes.
    """
    from .cluster.pairing import pair

    cluster = _cluster_call(pair, paths, peer, token, click.echo)
    click.echo(
        f"paired: {cluster.node.name} (primary) and {cluster.peer.name} (secondary); heartbeat on "
        + ", ".join(f"{p.interface} -> {p.peer}" for p in cluster.paths)
        + (f"; ping node {cluster.ping_node}" if cluster.ping_node else "; no ping node (no default gateway)")
    )


@cluster.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def cluster_status(paths: Paths, as_json: bool) -> None:
    """This node's role and state, the peer's state and last heartbeat, whether both run the same
    site, and the last replication. Exit 0 when paired without problems."""
    import dataclasses

    from .cluster.state import paired
    from .status import format_cluster

    if not paired():
        fail("this appliance is not paired (a single appliance)")
    from .cluster.report import collect_cluster

    status = collect_cluster(paths, ask_peer=True)
    click.echo(json.dumps(dataclasses.asdict(status), indent=2) if as_json else format_cluster(status))
    sys.exit(1 if status.problems else 0)


@cluster.command("takeover")
def cluster_takeover() -> None:
    """Take the floating IPs over to this node now (maintenance of the peer)."""
    from . import actions

    click.echo(_act(actions.cluster_move, "takeover") + " ('lbctl cluster status')")


@cluster.command("standby")
def cluster_standby() -> None:
    """Hand the floating IPs to the peer now (maintenance of this node)."""
    from . import actions

    click.echo(_act(actions.cluster_move, "standby") + " ('lbctl cluster status')")


@cluster.command("unpair")
@click.pass_obj
def cluster_unpair(paths: Paths) -> None:
    """Dissolve the pair: the primary keeps its services and floating IPs, the secondary drops its
    services, so that two single appliances never serve the same VIPs."""
    from .cluster.pairing import unpair

    note = _cluster_call(unpair, paths)
    click.echo(f"unpaired; {note}")


@cluster.command("join")
def cluster_join() -> None:
    """Start heartbeat on a node held back after a restore from a backup."""
    from .cluster.pairing import join

    _cluster_call(join)
    click.echo("heartbeat started; this node rejoins the pair")


@cluster.command("heal", hidden=True)
@click.pass_obj
def cluster_heal(paths: Paths) -> None:
    """Resolve a healed split brain (both nodes holding the floating IPs); lb-garp runs it."""
    from .cluster.pairing import heal

    click.echo(_cluster_call(heal, paths))


@cluster.command("accept-pairing", hidden=True)
@click.pass_obj
def cluster_accept_pairing(paths: Paths) -> None:
    """The pairing request from the primary (the token key's forced command): JSON on stdin."""
    from .cluster.pairing import accept_pairing, serve

    sys.exit(serve(paths, accept_pairing))


@cluster.command("receive", hidden=True)
@click.pass_obj
def cluster_receive(paths: Paths) -> None:
    """A request from the peer (its cluster key's forced command): JSON on stdin and stdout."""
    from .cluster.pairing import receive, serve

    sys.exit(serve(paths, receive))


@cli.group()
def update() -> None:
    """Offline updates: apply a signed archive to the inactive slot, report both slots.

    \b
      lbctl update apply lbappliance-0.2.0-update.tar     verify, write slot + UKI, reboot
      lbctl update status                                 slots, tries left, last outcome

    The archive and its checksum file come from 'make update-archive' (docs/update.md).
    """


def ha_warning(paths: Paths) -> str | None:
    """On the active node of a healthy pair, the reboot moves the floating IPs: say so."""
    from .cluster.state import paired

    if not paired():
        return None
    try:
        from .cluster.report import collect_cluster

        cluster = collect_cluster(paths, ask_peer=False)
    except Exception:  # the update must not depend on the pair's health report
        return None
    if cluster.state == "active" and cluster.peer_state in ("active", "up"):
        return (
            f"this node ({cluster.node}) holds the floating IPs: the reboot moves traffic to {cluster.peer}. "
            "The rolling update updates the passive node first (docs/update.md)."
        )
    return None


@update.command("apply")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("checksum", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--allow-downgrade", is_flag=True, help="Apply an older version (or the running one's).")
@click.option("--reboot-later", is_flag=True, help="Do not reboot now; the new version starts at the next boot.")
@click.pass_obj
def update_apply(paths: Paths, archive: Path, checksum: Path | None, allow_downgrade: bool, reboot_later: bool) -> None:
    """Verify ARCHIVE against CHECKSUM (default: ARCHIVE.sha256) and the image's release keys,
    write it to the inactive slot and reboot into it. Nothing is written unless every check passes."""
    from .update import apply as upd

    if checksum is None:
        checksum = archive.with_name(archive.name + ".sha256")
        if not checksum.exists():
            fail(f"no checksum file: give it as the second argument, or put {checksum.name} beside the archive")
    warning = ha_warning(paths)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    try:
        plan = upd.apply(archive, checksum, allow_downgrade)
    except upd.UpdateRefused as exc:
        fail(f"update refused, nothing was written: {exc}")
    except upd.UpdateFailed as exc:
        fail(f"update failed: {exc}")
    if reboot_later:
        click.echo(f"{plan.version} is installed in slot {plan.target.name}; it starts at the next reboot")
        return
    click.echo(f"{plan.version} is installed in slot {plan.target.name}; rebooting into it")
    os.execvp("systemctl", ["systemctl", "reboot"])


@update.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def update_status(as_json: bool) -> None:
    """Both slots' versions, the booted one, the tries left, the last update's outcome."""
    from .update import report
    from .update.disk import DiskError

    try:
        st = report.collect()
    except (DiskError, OSError) as exc:
        fail(str(exc))
    click.echo(json.dumps(st.to_json(), indent=2) if as_json else report.render(st))


def main() -> None:
    try:
        cli()
    except SystemExit:
        raise
    except Exception as exc:  # a traceback helps no operator; LBCTL_DEBUG=1 shows it
        from .cluster.model import ClusterStateError

        if isinstance(exc, ClusterStateError):
            click.echo(f"error: {exc}; 'lbctl cluster unpair' dissolves the pair on this node", err=True)
            sys.exit(1)
        if os.environ.get("LBCTL_DEBUG"):
            raise
        click.echo(f"error: lbctl: unexpected {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
