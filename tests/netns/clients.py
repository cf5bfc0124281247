"""Clients in the lab's client namespace: dcmtk, openssl, ldap-utils, python-tds, pynetdicom."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from netlab import Lab

PEERS = Path(__file__).parent / "peers"


def dicom_client(lab: Lab, mode: str, *args: str, timeout: float = 120) -> object:
    result = lab.exec("cl", [sys.executable, str(PEERS / "dicom_client.py"), mode, *args], timeout=timeout)
    return json.loads(result.stdout)


def worklist_servers(lab: Lab, host: str, sources: list[str], repeat: int = 1, port: int = 8104) -> dict[str, list[str]]:
    """For each source address, which server answered each C-FIND (by the worklist patient)."""
    args = ["--host", host, "--port", str(port), "--aec", "WLSRV", "--repeat", str(repeat)]
    for source in sources:
        args += ["--source", source]
    answers: dict[str, list[str]] = {}
    for entry in dicom_client(lab, "find", *args):
        assert entry["ok"], f"worklist query from {entry['source']} failed: {entry}"
        assert len(entry["patients"]) == 1, entry
        answers.setdefault(entry["source"], []).append(entry["patients"][0].split("^")[0].lower())
    return answers


def sql_server_name(lab: Lab, host: str, port: int = 1433) -> str:
    code = (f"import pytds\n"
            f"with pytds.connect({host!r}, port={port}, user='pacs', password='secret', database='master',"
            f" autocommit=True, login_timeout=5) as c:\n"
            f"    cur = c.cursor(); cur.execute('SELECT @@SERVERNAME'); print(cur.fetchone()[0])\n")
    return lab.exec("cl", [sys.executable, "-c", code], timeout=30).stdout.strip()


def make_dicom_file(path: Path, size_bytes: int = 4096) -> str:
    """A Secondary Capture object with `size_bytes` of pixel data; returns its SOP Instance UID."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Lb^Test", "LBT1", "OT"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.Columns = 1024 if size_bytes < 2**26 else 4096       # Rows is 16 bits: up to 256 MB
    ds.Rows = max(1, size_bytes // ds.Columns)
    ds.PixelData = bytes(ds.Rows * ds.Columns)
    ds.save_as(path, enforce_file_format=True)
    path.chmod(0o644)
    return str(ds.SOPInstanceUID)
