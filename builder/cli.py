"""lbimage: the command line of the build tool."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import click

from . import mkosi, progress, qemu, settings, version
from .keys import KeysError
from .settings import SettingError

HYPERVISORS_HELP = "comma-separated hypervisors to package (vmware,hyperv,kvm,xen,nutanix) or 'all'"


def fail(message: str) -> NoReturn:
    click.echo(f"lbimage: error: {message}", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version(), prog_name="lbimage")
def cli() -> None:
    """Build, package, verify and boot-test the PACS load-balancer appliance.

    Settings come from the environment; see 'lbimage settings'.
    """


@cli.command()
@click.option("--hypervisor", "hypervisors", default="all", show_default=True, help=HYPERVISORS_HELP)
@click.option("--force", is_flag=True, help="Rebuild the image even if its inputs did not change.")
def build(hypervisors: str, force: bool) -> None:
    """Build the image with mkosi and package it for the hypervisors into dist/."""
    from .packaging import load_profiles, package

    try:
        profiles = load_profiles(hypervisors)
        with progress.step("build the appliance image"):
            built = mkosi.build(virtual_size=profiles.hardware.disk_bytes, force=force)
        package(built, profiles, settings.path("LB_DIST_DIR"))
    except (SettingError, mkosi.BuildError, ValueError, KeysError) as exc:
        fail(str(exc))


@cli.command()
@click.option("--hypervisor", "hypervisors", default="all", show_default=True, help=HYPERVISORS_HELP)
def package(hypervisors: str) -> None:
    """Package the last built image for the hypervisors (no rebuild)."""
    from .packaging import load_profiles
    from .packaging import package as package_image

    built = mkosi.BuiltImage.load(settings.path("LB_BUILD_DIR") / "image.json")
    if built is None:
        fail("no built image; run 'lbimage build' (or 'make image') first")
    try:
        package_image(built, load_profiles(hypervisors), settings.path("LB_DIST_DIR"))
    except ValueError as exc:
        fail(str(exc))


@cli.command()
@click.argument("dist", type=click.Path(exists=True, file_okay=False, path_type=Path), default="dist")
def verify(dist: Path) -> None:
    """Recheck every file in DIST against DIST/manifest.json."""
    from .manifest import verify as verify_manifest

    problems = verify_manifest(dist)
    for problem in problems:
        click.echo(f"FAIL {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"{dist}/manifest.json: every file present with the recorded size and sha256")


@cli.command()
@click.option(
    "--disk",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Disk file to boot (default: the raw image of the last build).",
)
@click.option("--format", "disk_format", default=None, help="qemu format of the disk (default: from its suffix).")
@click.option("--disk-bus", type=click.Choice(sorted(qemu.DISK_BUSES)), default="virtio", show_default=True)
@click.option("--nic-model", type=click.Choice(sorted(qemu.NIC_MODELS)), default="virtio", show_default=True)
@click.option("--nics", type=click.IntRange(1, 8), default=4, show_default=True)
@click.option(
    "--ssh-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Public key to provision for root (default: a throwaway key, printed).",
)
@click.option("--site", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Site file to provision.")
@click.option(
    "--network", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="network.yaml to provision."
)
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to wait for READY.")
@click.option("--stay", is_flag=True, help="Keep the VM running after READY until Ctrl-C.")
def boot(
    disk: Path | None,
    disk_format: str | None,
    disk_bus: str,
    nic_model: str,
    nics: int,
    ssh_key: Path | None,
    site: Path | None,
    network: Path | None,
    timeout: float,
    stay: bool,
) -> None:
    """Boot an appliance disk in QEMU (KVM if it works, else TCG) and wait for READY."""
    from . import provision

    if disk is None:
        built = mkosi.BuiltImage.load(settings.path("LB_BUILD_DIR") / "image.json")
        if built is None:
            fail("no built image; pass --disk or run 'lbimage build' first")
        disk = Path(built.raw)
    fmt = disk_format or {".qcow2": "qcow2", ".vmdk": "vmdk", ".vhdx": "vhdx", ".vhd": "vpc"}.get(disk.suffix, "raw")
    workdir = Path(tempfile.mkdtemp(prefix="lbimage-boot-"))
    if ssh_key is None:
        private, public = provision.make_ssh_key(workdir)
        click.echo(f"throwaway SSH key: {private}")
    else:
        if ssh_key.suffix != ".pub" or not ssh_key.with_suffix("").exists():
            fail(f"--ssh-key {ssh_key}: give the public key file (NAME.pub) with its private key NAME beside it")
        private, public = ssh_key.with_suffix(""), ssh_key.read_text()
    inputs = {"admin-ssh-keys": public}
    if site:
        inputs["site"] = site.read_text()
    if network:
        inputs["network"] = network.read_text()
    spec = qemu.VMSpec(
        disk=disk,
        disk_format=fmt,
        disk_bus=disk_bus,
        nics=[qemu.Nic(model=nic_model, ssh=(n == 0)) for n in range(nics)],
        credentials=provision.as_credentials(inputs),
    )
    try:
        vm = qemu.boot_until_ready(spec, workdir, ssh_key=private, timeout=timeout)
    except qemu.BootError as exc:
        fail(str(exc))
    try:
        click.echo(f"console log: {vm.console_log}")
        click.echo("ssh: " + " ".join(vm.ssh_argv("")).strip())
        if stay:
            click.echo("VM running; Ctrl-C stops it.")
            if vm.proc is not None:
                vm.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        vm.stop()


@cli.command()
@click.option("--rotate", is_flag=True, help="next becomes release, release is retired, a new next is made.")
def keys(rotate: bool) -> None:
    """Create the release and next signing key pairs in LB_KEY_DIR (never overwrites a key)."""
    from . import keys as release_keys

    try:
        directory = settings.path("LB_KEY_DIR")
        done = release_keys.rotate(directory) if rotate else release_keys.create(directory)
        for line in done or [f"{directory} holds its keys already; nothing to do"]:
            progress.say(line)
        for key in release_keys.KeyDir(directory).public_keys():
            progress.say(f"images built now trust key {key.id}")
    except (SettingError, release_keys.KeysError, OSError) as exc:
        fail(str(exc))


@cli.command("update-archive")
@click.option("--level", type=click.IntRange(1, 22), default=None, help="zstd level (default 19).")
@click.option(
    "--signature",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A minisign signature of the manifest made on another machine (see docs/update.md).",
)
def update_archive(level: int | None, signature: Path | None) -> None:
    """Write the signed offline update of the last built image, and its checksum, into dist/."""
    from lbctl.update.archive import ZSTD_LEVEL

    from . import keys as release_keys
    from . import update

    built = mkosi.BuiltImage.load(settings.path("LB_BUILD_DIR") / "image.json")
    if built is None:
        fail("no built image; run 'make image' first")
    try:
        if built.version != version():
            fail(f"the last built image is {built.version}, not {version()}: run 'make image' with the same LB_VERSION")
        with progress.step(f"update archive of {built.version}"):
            update.build(built, settings.path("LB_DIST_DIR"), release_keys.key_dir(), level or ZSTD_LEVEL, signature)
    except (SettingError, release_keys.KeysError, ValueError, OSError) as exc:
        fail(str(exc))


@cli.command("kvm-probe")
def kvm_probe() -> None:
    """Say whether KVM really works here (else QEMU runs under TCG)."""
    usable = qemu.kvm_usable()
    click.echo("kvm: usable" if usable else "kvm: not usable here; QEMU will use TCG")


@cli.command("docs")
def regenerate_docs() -> None:
    """Rewrite the generated reference blocks in README.md and docs/ from the code's tables."""
    from .docs import regenerate

    changed = regenerate()
    click.echo("updated: " + ", ".join(changed) if changed else "every generated block is current")


@cli.command("settings")
def show_settings() -> None:
    """List the build settings, their environment variables and current values."""
    for env, setting in settings.FIELDS.items():
        try:
            value = settings.get(env)
        except SettingError as exc:
            value = f"INVALID ({exc})"
        click.echo(f"{env:<20} {value}\n{'':<20} {setting.doc}")


def main() -> None:
    if os.geteuid() != 0 and len(sys.argv) > 1 and sys.argv[1] in ("build", "boot"):
        fail("mkosi and QEMU need root here; run as root (e.g. 'sudo make image')")
    cli()
