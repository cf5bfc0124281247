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
    from .site.schema import SITE_KIND

    return {k.name: k for k in (SITE_KIND, NETWORK_KIND)}


def load(file: str) -> tuple[Site, str]:
    """The site model of a file and its text; every problem printed and exit 1 if it is invalid."""
    from .site.schema import SITE_KIND

    try:
        site: Site = SITE_KIND.read(file, site_context())
    except InputInvalid as exc:
        fail([f"error: {line}" for line in exc.lines()])
    return site, Path(file).read_text()


def site_context() -> dict[str, object]:
    from .boot.provision import site_context as provisioned

    return provisioned(None)


def report(outcome: Outcome, verb: str) -> None:
    if not outcome.changed:
        click.echo(f"configuration unchanged (generation {outcome.generation.name}); nothing to reload")
    else:
        click.echo(f"{verb} generation {outcome.generation.name}"
                   + ("; HAProxy reloaded seamlessly" if outcome.reloaded else ""))
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


KINDS_HELP = "Which input the file is: site (the default) or network (network.yaml)."


@cli.command()
@click.option("--kind", default="site", show_default=True, type=click.Choice(["site", "network"]), help=KINDS_HELP)
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
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory to write haproxy.cfg, manifest.json and networkd/ into.")
@click.pass_obj
def render(paths: Paths, file: str, out_dir: str) -> None:
    """Write every file generated from a site file into a directory, touching nothing else.

    Runs on any machine: the paths inside the files (runtime API socket, server state file)
    follow LBCTL_ADMIN_SOCKET and LBCTL_STATE_DIR, as on the appliance by default.
    """
    from .config.render import RenderSettings, render as render_files, write_files

    site, _ = load(file)
    files = render_files(site, RenderSettings.for_paths(paths, appliance_version(paths.os_release)))
    write_files(files, Path(out_dir))
    for name in sorted(files):
        click.echo(str(Path(out_dir) / name))


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def apply(paths: Paths, file: str) -> None:
    """Validate, render, check with 'haproxy -c', switch to it and reload HAProxy seamlessly.

    Persistence tables survive the reload. On any failure the running configuration stays and
    the error is printed. The configuration before becomes last-good ('lbctl rollback').
    If HAProxy is not running, the configuration is put in place for its start.
    """
    from .config.apply import apply_site

    site, text = load(file)
    try:
        report(apply_site(paths, site, text), "applied")
    except ApplyError as exc:
        fail(str(exc))


@cli.command()
@click.pass_obj
def rollback(paths: Paths) -> None:
    """Go back to the last-good configuration (the one before the last apply).

    The configuration left becomes last-good, so a second rollback undoes the first.
    """
    from .config.apply import rollback as do_rollback

    try:
        report(do_rollback(paths), "rolled back to")
    except ApplyError as exc:
        fail(str(exc))


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


SERVER_ACTIONS = {
    # action: (HAProxy admin state, also cut existing sessions, what it means)
    "drain": ("drain", False, "no new clients; existing connections and persistent clients continue"),
    "halt": ("maint", True, "out of service now: new clients go elsewhere, its connections are closed"),
    "online": ("ready", False, "back in service"),
}


@cli.command()
@click.argument("action", type=click.Choice(list(SERVER_ACTIONS)))
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
    from .config import haproxy
    from .config.apply import save_server_state
    from .status import read_services

    summary = read_services(paths) or {"services": []}
    services = {s["name"]: s for s in summary["services"]}
    if service not in services:
        fail(f"{service}: no such virtual service (configured: {', '.join(services) or 'none'})")
    labels = [s["label"] for s in services[service]["servers"]]
    if label not in labels:
        fail(f"{service}.{label}: no such real server (configured: {', '.join(labels)})")
    admin_state, cut, meaning = SERVER_ACTIONS[action]
    try:
        haproxy.set_server_state(paths.admin_socket, service, label, admin_state)
        if cut:
            haproxy.shutdown_sessions(paths.admin_socket, service, label)
    except haproxy.HAProxyAPIError as exc:
        fail(str(exc))
    save_server_state(paths)       # so that a reboot before the next reload keeps it too
    click.echo(f"{service}/{label}: {action}: {meaning}")


@cli.command()
@click.option("--kind", default="site", show_default=True, type=click.Choice(["site", "network"]), help=KINDS_HELP)
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


def main() -> None:
    try:
        cli()
    except SystemExit:
        raise
    except Exception as exc:        # a traceback helps no operator; LBCTL_DEBUG=1 shows it
        if os.environ.get("LBCTL_DEBUG"):
            raise
        click.echo(f"error: lbctl: unexpected {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
