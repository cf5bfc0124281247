#!/usr/bin/env python3
"""Hold many DICOM associations open at once, then C-ECHO on each and release them.

    echo_hold.py --host VIP --port 104 --source 10.77.1.10 [--source ...] --per-source 25 [--hold 3]

One thread and non-blocking sockets speak the DICOM upper layer (PS3.8) and the C-ECHO DIMSE
(PS3.7) directly: A-ASSOCIATE-RQ for Verification, then, once every association is open (or has
failed), one C-ECHO-RQ on each, A-RELEASE-RQ, close. pynetdicom runs two polling threads per
association, so a few hundred of them starve one 2-core client before they stress HAProxy; this
client costs next to nothing per association, so the figure is the appliance's. The peer at the
other end is real (dcmtk storescp), and it checks every PDU this client sends.

Prints JSON: requested, established, seconds_until_all_open, echo_ok, failures (first 20).
"""

from __future__ import annotations

import argparse
import errno
import json
import selectors
import socket
import struct
import sys
import time

VERIFICATION = b"1.2.840.10008.1.1"
IMPLICIT_VR_LITTLE_ENDIAN = b"1.2.840.10008.1.2"
APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
IMPLEMENTATION_CLASS_UID = b"2.25.329800735698586629295641978511506172918"
MAX_PDU = 16384
PCID = 1


def item(kind: int, body: bytes) -> bytes:
    """A PS3.8 variable item: type, reserved, 16-bit big-endian length, body."""
    return struct.pack(">BBH", kind, 0, len(body)) + body


def pdu(kind: int, body: bytes) -> bytes:
    """A PS3.8 PDU: type, reserved, 32-bit big-endian length, body."""
    return struct.pack(">BBI", kind, 0, len(body)) + body


def associate_rq(called: str, calling: str) -> bytes:
    context = item(0x20, bytes([PCID, 0, 0, 0]) + item(0x30, VERIFICATION) + item(0x40, IMPLICIT_VR_LITTLE_ENDIAN))
    user_info = item(0x50, item(0x51, struct.pack(">I", MAX_PDU)) + item(0x52, IMPLEMENTATION_CLASS_UID))
    fixed = struct.pack(">HH", 1, 0) + called.encode().ljust(16) + calling.encode().ljust(16) + bytes(32)
    return pdu(0x01, fixed + item(0x10, APPLICATION_CONTEXT) + context + user_info)


def element(group: int, elem: int, value: bytes) -> bytes:
    """An implicit VR little endian data element (values padded to even length)."""
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", group, elem, len(value)) + value


def c_echo_rq(message_id: int) -> bytes:
    elements = (
        element(0, 0x0002, VERIFICATION)
        + element(0, 0x0100, struct.pack("<H", 0x0030))
        + element(0, 0x0110, struct.pack("<H", message_id))
        + element(0, 0x0800, struct.pack("<H", 0x0101))
    )
    command = element(0, 0x0000, struct.pack("<I", len(elements))) + elements
    pdv = struct.pack(">I", len(command) + 2) + bytes([PCID, 0x03]) + command  # command, last fragment
    return pdu(0x04, pdv)


RELEASE_RQ = pdu(0x05, bytes(4))


def accepted_verification(body: bytes) -> bool:
    """Whether an A-ASSOCIATE-AC accepted our one presentation context."""
    offset = 68  # version, reserved, AE titles, reserved
    while offset + 4 <= len(body):
        kind, _, length = struct.unpack_from(">BBH", body, offset)
        if kind == 0x21:
            return body[offset + 4] == PCID and body[offset + 6] == 0
        offset += 4 + length
    return False


def echo_status(body: bytes) -> int | None:
    """The Status of a C-ECHO-RSP in a P-DATA-TF body, or None if it is not one."""
    offset, fields = 0, {}
    while offset + 6 <= len(body):
        length = struct.unpack_from(">I", body, offset)[0]
        control, data = body[offset + 5], body[offset + 6 : offset + 4 + length]
        offset += 4 + length
        if not control & 0x01:
            continue  # a data set fragment: C-ECHO-RSP has none
        pos = 0
        while pos + 8 <= len(data):
            group, elem, size = struct.unpack_from("<HHI", data, pos)
            value = data[pos + 8 : pos + 8 + size]
            pos += 8 + size
            if group == 0 and elem in (0x0100, 0x0900) and size == 2:
                fields[elem] = struct.unpack("<H", value)[0]
    return fields.get(0x0900) if fields.get(0x0100) == 0x8030 else None


class Association:
    def __init__(self, index: int, source: str):
        self.index, self.source = index, source
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.state = "new"  # new, connecting, requested, open, echoing, releasing, released, failed
        self.reason = ""
        self.echo_ok = False
        self.associate_seconds = 0.0
        self.started = 0.0

    @property
    def live(self) -> socket.socket:
        """The open socket (the association's handlers run only while it is)."""
        assert self.sock is not None, "the association's socket is closed"
        return self.sock

    def fail(self, reason: str) -> None:
        self.state, self.reason = "failed", reason
        if self.sock:
            self.sock.close()
            self.sock = None

    def pdus(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buffer += data
        found = []
        while len(self.buffer) >= 6:
            kind, _, length = struct.unpack_from(">BBI", self.buffer)
            if len(self.buffer) < 6 + length:
                break
            found.append((kind, self.buffer[6 : 6 + length]))
            self.buffer = self.buffer[6 + length :]
        return found


def run(args: argparse.Namespace) -> dict:
    sel = selectors.DefaultSelector()
    total = len(args.source) * args.per_source
    assocs = [Association(n, args.source[n % len(args.source)]) for n in range(total)]
    started = time.monotonic()

    def start(a: Association) -> None:
        a.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        a.sock.setblocking(False)
        a.sock.bind((a.source, 0))
        a.started = time.monotonic()
        a.state = "connecting"
        a.sock.connect_ex((args.host, args.port))
        sel.register(a.sock, selectors.EVENT_WRITE, a)

    def on_writable(a: Association) -> None:
        error = a.live.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            sel.unregister(a.live)
            a.fail(f"connect: {errno.errorcode.get(error, error)}")
            return
        a.live.sendall(associate_rq(args.aec, args.aet))
        a.state = "requested"
        sel.modify(a.live, selectors.EVENT_READ, a)

    def on_readable(a: Association) -> None:
        try:
            data = a.live.recv(65536)
        except OSError as exc:
            data, a.reason = b"", str(exc)
        if not data:
            sel.unregister(a.live)
            a.fail(a.reason or f"connection closed while {a.state}")
            return
        for kind, body in a.pdus(data):
            if kind == 0x02 and a.state == "requested":
                if not accepted_verification(body):
                    sel.unregister(a.live)
                    a.fail("Verification presentation context not accepted")
                    return
                a.state, a.associate_seconds = "open", time.monotonic() - a.started
            elif kind == 0x04 and a.state == "echoing":
                a.echo_ok = echo_status(body) == 0x0000
                a.live.sendall(RELEASE_RQ)
                a.state = "releasing"
            elif kind == 0x06 and a.state == "releasing":
                sel.unregister(a.live)
                a.live.close()
                a.sock, a.state = None, "released"
                return
            else:
                names = {0x03: "A-ASSOCIATE-RJ", 0x07: "A-ABORT"}
                sel.unregister(a.live)
                a.fail(f"{names.get(kind, f'PDU type {kind:#x}')} while {a.state}")
                return

    def pump(done, deadline: float) -> None:
        while not done() and time.monotonic() < deadline:
            for key, events in sel.select(timeout=0.05):
                a = key.data
                if events & selectors.EVENT_WRITE and a.state == "connecting":
                    on_writable(a)
                elif events & selectors.EVENT_READ:
                    on_readable(a)
            # Open at --rate per second: a ramp, not one burst of SYNs at the real servers' backlog.
            due = min(total, int((time.monotonic() - started) * args.rate) + 1)
            for a in assocs[:due]:
                if a.state == "new":
                    start(a)

    pump(lambda: all(a.state in ("open", "failed") for a in assocs), started + args.timeout)
    all_open_seconds = time.monotonic() - started
    for a in assocs:
        if a.state not in ("open", "failed"):
            if a.sock:
                sel.unregister(a.live)
            a.fail(f"not open after {args.timeout:.0f} s (was {a.state})")
    held = sum(1 for a in assocs if a.state == "open")
    if args.status_file:  # tell the caller: all are open now, look at HAProxy
        with open(args.status_file, "w") as f:
            json.dump({"held": held}, f)
    time.sleep(args.hold)
    for n, a in enumerate(assocs):
        if a.state == "open":
            a.live.sendall(c_echo_rq(n + 1))
            a.state = "echoing"
    pump(lambda: all(a.state in ("released", "failed") for a in assocs), time.monotonic() + args.timeout)
    for a in assocs:
        if a.state not in ("released", "failed"):
            a.fail(f"no answer within {args.timeout:.0f} s (was {a.state})")
    failures = [
        {"source": a.source, "reason": a.reason or "C-ECHO status not Success"}
        for a in assocs
        if not (a.state == "released" and a.echo_ok)
    ]
    return {
        "requested": total,
        "established": held,
        "seconds_until_all_open": all_open_seconds,
        "median_associate_seconds": sorted(a.associate_seconds for a in assocs)[total // 2],
        "echo_ok": sum(1 for a in assocs if a.state == "released" and a.echo_ok),
        "failures": failures[:20],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--aec", default="ANY-SCP", help="called AE title")
    parser.add_argument("--aet", default="LBBENCH", help="calling AE title")
    parser.add_argument("--source", action="append", required=True, help="client address to bind (repeatable)")
    parser.add_argument("--per-source", type=int, default=1)
    parser.add_argument("--hold", type=float, default=3.0, help="seconds to hold them all open")
    parser.add_argument("--rate", type=float, default=500.0, help="new associations per second")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--status-file")
    json.dump(run(parser.parse_args()), sys.stdout)


if __name__ == "__main__":
    main()
