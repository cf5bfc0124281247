"""A small, protocol-faithful MS-SQL (TDS 7.4) server for the tests: no real SQL Server runs here.

It speaks exactly what a client login and one query need (MS-TDS, learn.microsoft.com/openspecs):
  PRELOGIN (0x12)      -> PRELOGIN response: version, ENCRYPTION = NOT_SUP (2.2.6.5)
  LOGIN7 (0x10)        -> LOGINACK + ENVCHANGE(database) + DONE (2.2.7.14, 2.2.7.9, 2.2.7.6)
  SQL batch (0x01)     -> for 'SELECT @@SERVERNAME' one NVARCHAR row with this server's name
                          (COLMETADATA, ROW, DONE); for anything else an empty DONE
It is enough for python-tds (pytds) to log in and query, and for HAProxy's PRELOGIN check.

    python3 tds_server.py --port 1433 --name srv1 --log peers.log

Every accepted connection's peer address is appended to the log ("ACCEPT <ip>"), so a test can
see the source address the load balancer used; each message type is logged too.
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import struct
import threading

PRELOGIN, LOGIN7, SQL_BATCH, REPLY = 0x12, 0x10, 0x01, 0x04


def packet(ptype: int, payload: bytes) -> bytes:
    # header: type, status (0x01 end of message), length (BE, header included), spid, packet id, window
    return struct.pack(">BBHHBB", ptype, 0x01, len(payload) + 8, 0, 1, 0) + payload


def b_varchar(text: str) -> bytes:
    return bytes([len(text)]) + text.encode("utf-16-le")


def prelogin_response() -> bytes:
    options = [
        (0x00, bytes([15, 0, 0x07, 0xD0, 0, 0])),  # VERSION 15.0.2000, subbuild 0
        (0x01, bytes([0x02])),  # ENCRYPTION: NOT_SUP
        (0x02, b"\x00"),  # INSTOPT
        (0x03, b""),  # THREADID
        (0x04, b"\x00"),
    ]  # MARS off
    offset = len(options) * 5 + 1
    header, data = b"", b""
    for token, value in options:
        header += struct.pack(">BHH", token, offset + len(data), len(value))
        data += value
    return header + b"\xff" + data


def done(status: int = 0, rows: int = 0) -> bytes:
    return struct.pack("<BHHQ", 0xFD, status, 0xC1, rows)


def login_response(name: str) -> bytes:
    body = bytes([1]) + struct.pack(">I", 0x74000004) + b_varchar("Microsoft SQL Server") + bytes([15, 0, 0x07, 0xD0])
    loginack = struct.pack("<BH", 0xAD, len(body)) + body
    env_body = bytes([1]) + b_varchar(name) + b_varchar("master")  # database changed to <name>
    envchange = struct.pack("<BH", 0xE3, len(env_body)) + env_body
    return loginack + envchange + done()


COLLATION = bytes([0x09, 0x04, 0xD0, 0x00, 0x34])  # Latin1_General_CI_AS


def servername_result(name: str) -> bytes:
    colmetadata = (
        struct.pack("<BH", 0x81, 1)
        + struct.pack("<IH", 0, 0x0001)  # usertype, nullable
        + bytes([0xE7])
        + struct.pack("<H", 256)
        + COLLATION
        + b_varchar("servername")
    )
    value = name.encode("utf-16-le")
    row = bytes([0xD1]) + struct.pack("<H", len(value)) + value
    return colmetadata + row + done(status=0x10, rows=1)


class Handler(socketserver.BaseRequestHandler):
    server: Server

    def log(self, line: str) -> None:
        with self.server.lock, open(self.server.log_path, "a") as f:
            f.write(line + "\n")

    def read_message(self) -> tuple[int, bytes] | None:
        payload, ptype = b"", None
        while True:
            header = self.recv_exact(8)
            if header is None:
                return None
            ptype, status, length = struct.unpack(">BBH", header[:4])
            body = self.recv_exact(length - 8)
            if body is None:
                return None
            payload += body
            if status & 0x01:
                return ptype, payload

    def recv_exact(self, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = self.request.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def handle(self) -> None:
        self.log(f"ACCEPT {self.client_address[0]}")
        while True:
            message = self.read_message()
            if message is None:
                return
            ptype, payload = message
            if ptype == PRELOGIN:
                self.log("PRELOGIN")
                self.request.sendall(packet(REPLY, prelogin_response()))
            elif ptype == LOGIN7:
                self.log("LOGIN7")
                self.request.sendall(packet(REPLY, login_response(self.server.name)))
            elif ptype == SQL_BATCH:
                headers_length = struct.unpack("<I", payload[:4])[0]
                query = payload[headers_length:].decode("utf-16-le", errors="replace")
                self.log(f"QUERY {query.strip()}")
                reply = servername_result(self.server.name) if "@@SERVERNAME" in query.upper() else done()
                self.request.sendall(packet(REPLY, reply))
            else:
                self.log(f"UNSUPPORTED 0x{ptype:02x}")
                return


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], name: str, log_path: str):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, Handler)
        self.name, self.log_path, self.lock = name, log_path, threading.Lock()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=1433)
    parser.add_argument("--name", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    with Server((args.address, args.port), args.name, args.log) as server:
        print(f"TDS server {args.name} on {args.address}:{args.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
