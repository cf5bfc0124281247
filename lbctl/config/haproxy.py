"""HAProxy's runtime API (the stats socket at level admin) and master CLI, no third-party code.

Both speak one command per connection: send a line, read until HAProxy closes. Half-closing our
side tells the master CLI (which would otherwise wait for more commands) that we are done.
"""

from __future__ import annotations

import csv
import io
import re
import socket
from dataclasses import dataclass
from pathlib import Path


class HAProxyAPIError(Exception):
    """The runtime API could not be reached or answered with an error."""


class NotRunning(HAProxyAPIError):
    """Nothing listens on the socket: HAProxy is not running."""


def command(sock_path: Path, line: str, timeout: float = 5.0) -> str:
    """Send one command and return the whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(sock_path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotRunning(f"HAProxy is not running (nothing answers on {sock_path}: {exc.strerror})") from None
        except OSError as exc:
            raise HAProxyAPIError(f"cannot reach the HAProxy runtime API at {sock_path}: {exc.strerror}") from None
        chunks = []
        try:
            s.sendall(line.encode() + b"\n")
            s.shutdown(socket.SHUT_WR)
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except TimeoutError:
            raise HAProxyAPIError(
                f"HAProxy did not answer {line.split()[0]!r} on {sock_path} within {timeout:g} s"
            ) from None
        except OSError as exc:
            raise HAProxyAPIError(f"HAProxy closed {sock_path} while answering {line!r}: {exc.strerror}") from None
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
        raise HAProxyAPIError(f"unexpected answer to 'show stat': {text[:80]!r}")
    return list(csv.DictReader(io.StringIO(text[2:])))


def show_servers_state(sock_path: Path) -> str:
    text = command(sock_path, "show servers state")
    if not text.startswith("1\n"):
        raise HAProxyAPIError(f"unexpected answer to 'show servers state': {text[:80]!r}")
    return text


def show_table(sock_path: Path, table: str) -> list[dict[str, str]]:
    """Entries of a stick table: [{'key': '10.0.0.1', 'server_id': '1', 'server_key': 'S1', ...}]."""
    entries = []
    for line in command(sock_path, f"show table {table}").splitlines():
        if line.startswith("0x") or line.startswith("key="):
            fields = dict(
                part.split("=", 1) for part in line.split()[1 if line.startswith("0x") else 0 :] if "=" in part
            )
            entries.append(fields)
    return entries


ADMIN_STATES = ("ready", "drain", "maint")


def set_server_state(sock_path: Path, backend: str, server: str, state: str) -> None:
    if state not in ADMIN_STATES:
        raise ValueError(state)
    answer = command(sock_path, f"set server {backend}/{server} state {state}").strip()
    if answer:
        raise HAProxyAPIError(f"HAProxy refused 'set server {backend}/{server} state {state}': {answer}")


def shutdown_sessions(sock_path: Path, backend: str, server: str) -> None:
    answer = command(sock_path, f"shutdown sessions server {backend}/{server}").strip()
    if answer:
        raise HAProxyAPIError(f"HAProxy refused 'shutdown sessions server {backend}/{server}': {answer}")


# --- master CLI ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Processes:
    reloads: int  # reloads the master did
    failed_reloads: int  # of those, how many failed (HAProxy 2.6 and later print it)
    workers: tuple[int, ...]  # PIDs of the current workers (not the old ones of past reloads)


MASTER_LINE = re.compile(r"^(\d+)\s+master\s+(\d+)(?:\s+\[failed:\s*(\d+)\])?")
WORKER_LINE = re.compile(r"^(\d+)\s+worker\s")


def show_proc(master_socket: Path) -> Processes:
    reloads = failed = -1
    workers: list[int] = []
    section = "master"
    for line in command(master_socket, "show proc").splitlines():
        if line.startswith("# "):
            section = line[2:].strip()
            continue
        if m := MASTER_LINE.match(line):
            reloads, failed = int(m.group(2)), int(m.group(3) or 0)
        elif section == "workers" and (m := WORKER_LINE.match(line)):
            workers.append(int(m.group(1)))
    if reloads < 0:
        raise HAProxyAPIError(f"unexpected answer to 'show proc' on {master_socket}")
    return Processes(reloads=reloads, failed_reloads=failed, workers=tuple(workers))


def request_reload(master_socket: Path) -> str:
    """Ask the master to reload. HAProxy 3.0 answers when done ('Success=1' or 'Success=0' and
    the startup messages); 2.6 answers nothing and reloads in the background."""
    return command(master_socket, "reload", timeout=30.0)
