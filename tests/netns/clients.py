"""Clients in the lab's client namespace: dcmtk, openssl, ldap-utils, python-tds, pynetdicom."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.netns.netlab import Lab

PEERS = Path(__file__).parent / "peers"


def dicom_client(lab: Lab, mode: str, *args: str, timeout: float = 120) -> Any:
    result = lab.exec("cl", [sys.executable, str(PEERS / "dicom_client.py"), mode, *args], timeout=timeout)
    return json.loads(result.stdout)


def worklist_servers(
    lab: Lab, host: str, sources: list[str], repeat: int = 1, port: int = 8104
) -> dict[str, list[str]]:
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
    code = (
        f"import pytds\n"
        f"with pytds.connect({host!r}, port={port}, user='pacs', password='secret', database='master',"
        f" autocommit=True, login_timeout=5) as c:\n"
        f"    cur = c.cursor(); cur.execute('SELECT @@SERVERNAME'); print(cur.fetchone()[0])\n"
    )
    return lab.exec("cl", [sys.executable, "-c", code], timeout=30).stdout.strip()
