"""HAProxy runtime API client (the stats socket at level admin), no third-party code."""
from __future__ import annotations

import csv
import io
import socket
from pathlib import Path


class RuntimeError_(Exception):
    """The runtime API could not be reached or answered with an error."""


def command(sock_path: Path, line: str, timeout: float = 5.0) -> str:
    """Send one command and return the whole answer (HAProxy closes the connection after it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(sock_path))
        except OSError as exc:
            raise RuntimeError_(f"cannot reach the HAProxy runtime API at {sock_path}: {exc.strerror}") from None
        s.sendall(line.encode() + b"\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def show_info(sock_path: Path) -> dict[str, str]:
    info = {}
    for line in command(sock_path, "show info").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def show_stat(sock_path: Path) -> list[dict[str, str]]:
    """'show stat' as a list of rows keyed by the CSV header (pxname, svname, status, ...)."""
    text = command(sock_path, "show stat")
    if not text.startswith("# "):
        raise RuntimeError_(f"unexpected answer to 'show stat': {text[:80]!r}")
    return list(csv.DictReader(io.StringIO(text[2:])))
