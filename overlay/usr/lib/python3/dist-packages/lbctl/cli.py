"""The lbctl command line."""
from __future__ import annotations

import json
import sys

import click

from .paths import Paths
from .runtime import RuntimeError_, show_info, show_stat
from .version import appliance_version


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Validate, render, apply and report the load-balancer configuration."""
    ctx.obj = Paths.from_env()


@cli.command()
@click.pass_obj
def version(paths: Paths) -> None:
    """Print the appliance version."""
    click.echo(appliance_version(paths.os_release))


def collect_status(paths: Paths) -> dict:
    status: dict = {"version": appliance_version(paths.os_release), "healthy": False,
                    "haproxy": {"running": False}, "services": [], "problems": []}
    try:
        info = show_info(paths.admin_socket)
        rows = show_stat(paths.admin_socket)
    except RuntimeError_ as exc:
        status["problems"].append(str(exc))
        return status
    status["haproxy"] = {"running": True, "version": info.get("Version", ""),
                         "uptime_seconds": int(info.get("Uptime_sec", "0") or 0)}
    for row in rows:
        if row["svname"] == "FRONTEND":
            status["services"].append({"name": row["pxname"], "state": row["status"]})
    closed = [s["name"] for s in status["services"] if s["state"] != "OPEN"]
    if closed:
        status["problems"].append("frontends not open: " + ", ".join(closed))
    status["healthy"] = not status["problems"]
    return status


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(paths: Paths, as_json: bool) -> None:
    """Show the appliance, its virtual services and their real servers."""
    st = collect_status(paths)
    if as_json:
        click.echo(json.dumps(st, indent=2))
    else:
        click.echo(f"lbappliance {st['version']}: {'healthy' if st['healthy'] else 'NOT healthy'}")
        for problem in st["problems"]:
            click.echo(f"  problem: {problem}")
        for svc in st["services"]:
            click.echo(f"  {svc['name']:<16} {svc['state']}")
    sys.exit(0 if st["healthy"] else 1)


@cli.command()
@click.pass_obj
def init(paths: Paths) -> None:
    """Put a configuration without services in place if none was ever applied (first boot)."""
    from .state import ensure_initial_config

    created = ensure_initial_config(paths)
    click.echo("initial configuration in place" if created else "a configuration is already in place")


def main() -> None:
    cli()
