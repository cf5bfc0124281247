"""builder.mkosi without mkosi: the inputs digest, the apt sources, the disk layout and the build
record, and build()'s orchestration with mkosi replaced by a stand-in that writes a small disk.

The digest decides whether a multi-minute build is skipped, so it must change with every input
that shapes the image and with nothing else.
"""

from __future__ import annotations

import json
import shutil
import stat
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from builder import keys, mkosi, version
from builder.mkosi import BuildError, BuiltImage

SECTOR = 512
MIB = 2**20
GPT = """label: gpt
first-lba: 2048
start=2048, size=4096, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp"
start=6144, size=4096, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="lbroot_0.0.1"
"""


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small checkout (image/ with the real sources template, overlay/) that mkosi.py hashes
    instead of the real one."""
    root = tmp_path / "checkout"
    (root / "image/templates").mkdir(parents=True)
    shutil.copy(mkosi.IMAGE_DIR / "templates/mkosi.sources.j2", root / "image/templates")
    (root / "image/mkosi.conf").write_text("[Distribution]\nDistribution=debian\n")
    script = root / "image/mkosi.finalize"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    (root / "overlay/etc/lbappliance").mkdir(parents=True)
    (root / "overlay/etc/lbappliance/motd").write_text("welcome\n")
    (root / "overlay/etc/lbappliance/link").symlink_to("motd")
    monkeypatch.setattr(mkosi, "ROOT", root)
    monkeypatch.setattr(mkosi, "IMAGE_DIR", root / "image")
    monkeypatch.setattr(mkosi, "TREES", (root / "overlay", root / "lbctl"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    return root


def digest() -> str:
    return mkosi.inputs_digest("0.1.0", 20 * 2**30)


# --- inputs_digest ------------------------------------------------------------------------------


def test_digest_is_stable_when_nothing_changes(tree: Path) -> None:
    before = digest()
    (tree / "overlay/etc/lbappliance/motd").write_text("welcome\n")  # rewritten, same bytes
    pycache = tree / "overlay/etc/lbappliance/__pycache__"
    pycache.mkdir()
    (pycache / "x.cpython-311.pyc").write_bytes(b"\0compiled")  # not an input
    assert digest() == before


@pytest.mark.parametrize("path", ["overlay/etc/lbappliance/motd", "image/mkosi.conf"])
def test_digest_follows_file_content(tree: Path, path: str) -> None:
    before = digest()
    (tree / path).write_text((tree / path).read_text() + "# changed\n")
    assert digest() != before


@pytest.mark.parametrize("path", ["overlay/etc/lbappliance/motd", "image/mkosi.finalize"])
def test_digest_follows_the_exec_bit(tree: Path, path: str) -> None:
    """A script that loses its exec bit breaks the image although its bytes are the same."""
    before = digest()
    (tree / path).chmod((tree / path).stat().st_mode ^ (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    assert digest() != before


def test_digest_follows_new_files_renames_and_symlink_targets(tree: Path) -> None:
    seen = {digest()}
    (tree / "overlay/etc/lbappliance/issue").write_text("")
    seen.add(digest())
    (tree / "overlay/etc/lbappliance/issue").rename(tree / "overlay/etc/lbappliance/issue.net")
    seen.add(digest())
    (tree / "overlay/etc/lbappliance/link").unlink()
    (tree / "overlay/etc/lbappliance/link").symlink_to("issue.net")
    seen.add(digest())
    assert len(seen) == 4


@pytest.mark.parametrize(
    "env, value",
    [
        ("LB_MIRROR", "http://mirror.example/debian"),
        ("LB_SECURITY_MIRROR", "http://mirror.example/debian-security"),
        ("LB_SNAPSHOT", "20251120T000000Z"),
        ("SOURCE_DATE_EPOCH", "1767225601"),
    ],
)
def test_digest_follows_the_settings(tree: Path, monkeypatch: pytest.MonkeyPatch, env: str, value: str) -> None:
    before = digest()
    monkeypatch.setenv(env, value)
    assert digest() != before


def test_digest_follows_version_and_size(tree: Path) -> None:
    assert len({digest(), mkosi.inputs_digest("0.1.1", 20 * 2**30), mkosi.inputs_digest("0.1.0", 2**30)}) == 3


def test_digest_of_the_real_checkout_is_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    assert digest() == digest()


# --- apt sources ------------------------------------------------------------------------------


def sources(build_dir: Path) -> str:
    """The deb822 sources mkosi will use, without comment lines."""
    text = (mkosi.render_package_manager_tree(build_dir) / "etc/apt/sources.list.d/mkosi.sources").read_text()
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))


def test_sources_use_the_mirrors_and_trixie_suites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LB_MIRROR", "http://mirror.example/debian")
    monkeypatch.setenv("LB_SECURITY_MIRROR", "http://mirror.example/debian-security")
    text = sources(tmp_path)
    stanzas = [s for s in text.split("\n\n") if "Types:" in s]
    assert len(stanzas) == 2
    assert "URIs: http://mirror.example/debian\n" in stanzas[0]
    assert "Suites: trixie trixie-updates\n" in stanzas[0]
    assert "URIs: http://mirror.example/debian-security\n" in stanzas[1]
    assert "Suites: trixie-security\n" in stanzas[1]
    assert "debian-debug" not in text
    assert "snapshot.debian.org" not in text and "Check-Valid-Until" not in text


def test_sources_with_a_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot's Release files are expired by design; apt must be told not to check."""
    monkeypatch.setenv("LB_MIRROR", "http://mirror.example/debian")  # the snapshot wins
    monkeypatch.setenv("LB_SNAPSHOT", "20251120T000000Z")
    text = sources(tmp_path)
    assert "URIs: http://snapshot.debian.org/archive/debian/20251120T000000Z/\n" in text
    assert "URIs: http://snapshot.debian.org/archive/debian-security/20251120T000000Z/\n" in text
    assert "mirror.example" not in text and "deb.debian.org" not in text
    assert text.count("Check-Valid-Until: no\n") == 2
    assert "debian-debug" not in text


def test_sources_refuse_an_invalid_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LB_MIRROR", "ftp://x")
    with pytest.raises(ValueError, match="LB_MIRROR"):
        mkosi.render_package_manager_tree(tmp_path)


# --- extend_to_virtual_size ---------------------------------------------------------------------


def make_gpt_disk(path: Path, size: int = 8 * MIB) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
    subprocess.run(["sfdisk", "--quiet", str(path)], input=GPT, text=True, check=True)
    return path


def partitions(path: Path) -> list[dict]:
    out = subprocess.run(["sfdisk", "--json", str(path)], capture_output=True, text=True, check=True).stdout
    return [
        {k: p[k] for k in ("start", "size", "type", "uuid", "name")}
        for p in json.loads(out)["partitiontable"]["partitions"]
    ]


def gpt_header(path: Path, lba: int) -> tuple[bytes, int, int]:
    """(signature, my_lba, alternate_lba) of the GPT header at this LBA."""
    with path.open("rb") as f:
        f.seek(lba * SECTOR)
        header = f.read(SECTOR)
    return header[:8], *struct.unpack_from("<QQ", header, 24)


def test_extend_moves_the_backup_gpt_to_the_new_end(tmp_path: Path) -> None:
    raw = make_gpt_disk(tmp_path / "disk.raw")
    before = partitions(raw)
    size = 64 * MIB
    mkosi.extend_to_virtual_size(raw, size)
    assert raw.stat().st_size == size
    last = size // SECTOR - 1
    assert gpt_header(raw, 1) == (b"EFI PART", 1, last)
    assert gpt_header(raw, last) == (b"EFI PART", last, 1)
    assert partitions(raw) == before
    verify = subprocess.run(["sfdisk", "--verify", str(raw)], capture_output=True, text=True)
    assert verify.returncode == 0 and "No errors detected" in verify.stdout, verify.stdout + verify.stderr
    assert verify.stderr == ""


def test_extend_keeps_the_image_sparse(tmp_path: Path) -> None:
    raw = make_gpt_disk(tmp_path / "disk.raw")
    mkosi.extend_to_virtual_size(raw, 1024 * MIB)
    assert mkosi.allocated_bytes(raw) < 4 * MIB


def test_extend_refuses_to_shrink(tmp_path: Path) -> None:
    raw = make_gpt_disk(tmp_path / "disk.raw")
    with pytest.raises(BuildError, match="larger than the"):
        mkosi.extend_to_virtual_size(raw, 4 * MIB)
    assert raw.stat().st_size == 8 * MIB


# --- BuiltImage ---------------------------------------------------------------------------------


def built_image(**changes: Any) -> BuiltImage:
    fields: dict[str, Any] = dict(
        version="0.1.0",
        raw="/b/x.raw",
        root_partition="/b/x.root.raw",
        uki="/b/x.efi",
        package_list="/b/x.manifest",
        virtual_size=20 * 2**30,
        inputs_digest="ab" * 32,
        built="2026-01-01T00:00:00Z",
        source_date_epoch=1767225600,
    )
    return BuiltImage(**{**fields, **changes})


def test_built_image_roundtrip(tmp_path: Path) -> None:
    image = built_image()
    image.save(tmp_path / "image.json")
    assert BuiltImage.load(tmp_path / "image.json") == image


@pytest.mark.parametrize("content", [None, "", "{not json", "[]", '{"version": "0.1.0"}'])
def test_a_missing_or_unusable_record_loads_as_none(tmp_path: Path, content: str | None) -> None:
    """A stale or half-written build/image.json must mean 'build again', not a traceback."""
    path = tmp_path / "image.json"
    if content is not None:
        path.write_text(content)
    assert BuiltImage.load(path) is None


# --- mkosi_version and run_mkosi ------------------------------------------------------------------


def fake_mkosi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version_line: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "mkosi"
    script.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


@pytest.mark.parametrize("line, expected", [("mkosi 25.3", (25, 3)), ("mkosi 24~devel", (24,)), ("mkosi 26", (26,))])
def test_mkosi_version_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, expected: tuple[int, ...]
) -> None:
    fake_mkosi(tmp_path, monkeypatch, line)
    assert mkosi.mkosi_version() == expected


def test_an_unreadable_mkosi_version_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mkosi(tmp_path, monkeypatch, "mkosi unknown")
    with pytest.raises(BuildError, match="mkosi version"):
        mkosi.mkosi_version()


def test_run_mkosi_logs_everything_shows_steps_and_reports_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "mkosi.log"
    script = "echo '‣ Building lbappliance'; echo 'apt noise'; echo '‣ Running finalize'; exit 3"
    with pytest.raises(BuildError) as exc:
        mkosi.run_mkosi(["sh", "-c", script], log)
    assert "exit code 3" in str(exc.value) and str(log) in str(exc.value)
    assert log.read_text() == "‣ Building lbappliance\napt noise\n‣ Running finalize\n"
    err = capsys.readouterr().err
    progress_lines = [line for line in err.splitlines() if "s] ‣" in line]
    assert [line.split("] ", 1)[1] for line in progress_lines] == ["‣ Building lbappliance", "‣ Running finalize"]
    assert "apt noise" in err  # the tail is shown on failure


def test_run_mkosi_success_is_quiet_apart_from_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mkosi.run_mkosi(["sh", "-c", "echo '‣ step'; echo noise"], tmp_path / "mkosi.log")
    err = capsys.readouterr().err
    assert "‣ step" in err and "noise" not in err


# --- build() with a stand-in for mkosi ----------------------------------------------------------


@pytest.fixture
def fake_build(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Redirect build/ and the cache to tmp_path and replace mkosi by a function that records its
    argv and writes the outputs mkosi would (a small GPT disk for the raw image)."""
    monkeypatch.setenv("LB_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("LB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LB_KEY_DIR", str(tmp_path / "keys"))
    keys.create(tmp_path / "keys")
    monkeypatch.setattr(mkosi, "mkosi_version", lambda: (25, 3))
    calls: list[list[str]] = []

    def run(args: list[str], log_path: Path) -> None:
        calls.append(args)
        out = Path(next(a for a in args if a.startswith("--output-dir=")).split("=", 1)[1])
        stem = f"{mkosi.IMAGE_ID}_{version()}"
        make_gpt_disk(out / f"{stem}.raw")
        for suffix in (".root.raw", ".efi", ".manifest"):
            (out / f"{stem}{suffix}").write_text("x")
        log_path.write_text("ok\n")

    monkeypatch.setattr(mkosi, "run_mkosi", run)
    return calls


def test_build_runs_mkosi_lays_out_the_disk_and_records_it(fake_build: list[list[str]], tmp_path: Path) -> None:
    built = mkosi.build(virtual_size=64 * MIB)
    assert len(fake_build) == 1
    args = fake_build[0]
    assert args[:3] == ["mkosi", "--directory", str(mkosi.IMAGE_DIR)] and args[-2:] == ["--force", "build"]
    assert f"--image-version={version()}" in args and "--source-date-epoch=1767225600" in args
    assert f"--sandbox-tree={tmp_path / 'build/pkgmngr'}:/" in args
    assert (tmp_path / "build/pkgmngr/etc/apt/sources.list.d/mkosi.sources").is_file()
    assert all((tmp_path / "cache" / sub).is_dir() for sub in ("mkosi", "packages", "workspace"))
    assert Path(built.raw).stat().st_size == 64 * MIB
    trusted = keys.KeyDir(tmp_path / "keys").public_keys()
    assert built.inputs_digest == mkosi.inputs_digest(version(), 64 * MIB, "".join(k.text() for k in trusted))
    # The image carries the release and the next public key (and no secret key).
    assert f"--extra-tree={tmp_path / 'build/trusted-keys'}:/usr/lib/lbappliance/keys" in args
    assert sorted(p.name for p in (tmp_path / "build/trusted-keys").iterdir()) == ["next.pub", "release.pub"]
    assert BuiltImage.load(tmp_path / "build/image.json") == built


def test_build_uses_package_manager_tree_before_mkosi_25(
    fake_build: list[list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mkosi, "mkosi_version", lambda: (24,))
    mkosi.build(virtual_size=64 * MIB)
    assert f"--package-manager-tree={tmp_path / 'build/pkgmngr'}:/" in fake_build[0]


def test_build_is_skipped_when_inputs_are_unchanged(
    fake_build: list[list[str]], tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = mkosi.build(virtual_size=64 * MIB)
    assert mkosi.build(virtual_size=64 * MIB) == first
    assert len(fake_build) == 1
    mkosi.build(virtual_size=64 * MIB, force=True)  # --force
    assert len(fake_build) == 2
    (tree / "overlay/etc/lbappliance/motd").write_text("changed\n")  # an input changed
    mkosi.build(virtual_size=64 * MIB)
    assert len(fake_build) == 3
    monkeypatch.setenv("LB_MIRROR", "http://mirror.example/debian")  # a setting changed
    mkosi.build(virtual_size=64 * MIB)
    assert len(fake_build) == 4


def test_build_runs_again_when_the_recorded_raw_image_is_gone(fake_build: list[list[str]]) -> None:
    Path(mkosi.build(virtual_size=64 * MIB).raw).unlink()
    mkosi.build(virtual_size=64 * MIB)
    assert len(fake_build) == 2
