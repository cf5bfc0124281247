"""Helpers shared by tests (import as `from helpers import ...`; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from builder import ROOT, provision, settings

# Console logs of VMs whose test failed (and of the module's appliance) are kept here.
LOG_DIR = ROOT / "build" / "test-logs"
TESTS = Path(__file__).resolve().parent


def appliance_binary(name: str) -> str | None:
    """The appliance's own program (trixie's haproxy 3.0, nft 1.1), made runnable on this host from
    the image build's package cache by tests/lbctl/bundle-binary.sh; None without a build cache or
    patchelf (the tests then use the host's, and say so where it matters)."""
    cache = settings.path("LB_CACHE_DIR") / "mkosi" / "debian~trixie~x86-64.cache"
    source = next((cache / d / name for d in ("usr/sbin", "usr/bin") if (cache / d / name).exists()), None)
    if source is None or not shutil.which("patchelf"):
        return None
    out = Path(f"/var/tmp/lbappliance-{name}")
    built = out / name
    if not built.exists() or built.stat().st_mtime < source.stat().st_mtime:
        result = subprocess.run(
            ["sh", str(TESTS / "lbctl" / "bundle-binary.sh"), str(cache), str(source), str(out)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            return None
    return str(built)


def haproxy_binaries() -> list[str]:
    """Every HAProxy a generated configuration must pass `haproxy -c` on: the host's (2.6 on
    Debian 12) and the appliance's own 3.0 once an image build filled the package cache."""
    binaries = [shutil.which("haproxy") or "haproxy"]
    own = appliance_binary("haproxy")
    return binaries + ([own] if own else [])


def artifact(manifest: dict, dist: Path, hypervisor: str, suffix: str) -> Path:
    """The file of a hypervisor's artifact whose name ends with `suffix`, per the manifest."""
    for entry in manifest["artifacts"]:
        if entry["hypervisor"] == hypervisor:
            for f in entry["files"]:
                if f["path"].endswith(suffix):
                    return dist / f["path"]
    raise AssertionError(f"manifest has no {hypervisor} file ending in {suffix}")


def provisioned(public_key: str, **inputs: str) -> dict[str, str]:
    """Credentials for a VM: the test SSH key plus any other provisioning inputs by key."""
    return provision.as_credentials({"admin-ssh-keys": public_key, **inputs})


def make_dicom_file(path: Path, size_bytes: int = 4096) -> str:
    """A Secondary Capture object with `size_bytes` of pixel data; returns its SOP Instance UID."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Lb^Test", "LBT1", "OT"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.Columns = 1024 if size_bytes < 2**26 else 4096  # Rows is 16 bits: up to 256 MB
    ds.Rows = max(1, size_bytes // ds.Columns)
    ds.PixelData = bytes(ds.Rows * ds.Columns)
    ds.save_as(path, enforce_file_format=True)
    path.chmod(0o644)
    return str(ds.SOPInstanceUID)
