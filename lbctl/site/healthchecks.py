"""Health checks of real servers: what each check is, where it applies, and how HAProxy runs it.

Checks are native to HAProxy wherever a protocol allows it (a TCP connect, a scripted tcp-check
dialogue, the built-in LDAP bind): no fork per check, no PATH, chroot or timeout pitfalls of
external checks. Only `ping` is an external script, because HAProxy cannot send ICMP itself.

The catalogue below is the one description of the checks: validation reads `applies_to`, the
renderer reads `directives()`, and `lbctl checks` and the docs print `summary`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..appliance import CHECK_SCRIPTS_DIR
from ..quoting import haproxy_string

# --- DICOM upper-layer PDUs (PS3.8 section 9.3) for the C-ECHO check ----------------------------

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
# Our own implementation class UID (a UUID-derived 2.25 UID, PS3.5 B.2) and version name, so that
# a PACS log shows who associated.
IMPLEMENTATION_CLASS_UID = "2.25.79737940777586796171799904349244922782"
IMPLEMENTATION_VERSION_NAME = "LBCTL"
MAX_PDU_LENGTH = 16384
A_RELEASE_RQ = bytes.fromhex("05000000000400000000")
# (0000,0900) Status, VR length 2, value 0x0000 (Success), as it appears in a C-ECHO-RSP.
C_ECHO_RSP_SUCCESS = bytes.fromhex("00000009020000000000")


def _item(item_type: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(payload)) + payload


def _uid_item(item_type: int, uid: str) -> bytes:
    return _item(item_type, uid.encode("ascii"))


def _ae(title: str) -> bytes:
    return title.encode("ascii").ljust(16, b" ")


def a_associate_rq(
    called_ae: str,
    calling_ae: str,
    implementation_uid: str = IMPLEMENTATION_CLASS_UID,
    version_name: str | None = IMPLEMENTATION_VERSION_NAME,
) -> bytes:
    """A-ASSOCIATE-RQ proposing Verification in Implicit VR Little Endian (context ID 1)."""
    presentation_context = _item(
        0x20, bytes([1, 0, 0, 0]) + _uid_item(0x30, VERIFICATION_SOP_CLASS) + _uid_item(0x40, IMPLICIT_VR_LITTLE_ENDIAN)
    )
    user_info = (
        _item(0x51, struct.pack(">I", MAX_PDU_LENGTH))
        + _uid_item(0x52, implementation_uid)
        + (_item(0x55, version_name.encode("ascii")) if version_name else b"")
    )
    body = (
        struct.pack(">HH", 1, 0)
        + _ae(called_ae)
        + _ae(calling_ae)
        + bytes(32)
        + _uid_item(0x10, DICOM_APPLICATION_CONTEXT)
        + presentation_context
        + _item(0x50, user_info)
    )
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def _element(group: int, element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", group, element, len(value)) + value


def c_echo_rq(message_id: int = 1) -> bytes:
    """P-DATA-TF carrying a C-ECHO-RQ command set (Implicit VR Little Endian, context ID 1)."""
    sop_class = VERIFICATION_SOP_CLASS.encode("ascii")
    sop_class += b"\0" * (len(sop_class) % 2)  # UIDs are padded to even length
    elements = (
        _element(0x0000, 0x0002, sop_class)
        + _element(0x0000, 0x0100, struct.pack("<H", 0x0030))  # C-ECHO-RQ
        + _element(0x0000, 0x0110, struct.pack("<H", message_id))
        + _element(0x0000, 0x0800, struct.pack("<H", 0x0101))
    )  # no data set
    command = _element(0x0000, 0x0000, struct.pack("<I", len(elements))) + elements
    pdv = struct.pack(">IBB", len(command) + 2, 1, 0x03) + command  # context 1, command, last
    return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv


# --- MS-SQL TDS PRELOGIN (MS-TDS 2.2.6.5) -------------------------------------------------------

# PRELOGIN with VERSION, ENCRYPTION=NOT_SUP, INSTOPT, THREADID, MARS; a server answers with a
# tabular-result packet (type 0x04, status 0x01 end of message) carrying its own PRELOGIN.
TDS_PRELOGIN = bytes.fromhex(
    "1201002f0000010000001a00060100200001020021000103002200040400260001ff09000000000002000000000000"
)


# --- LDAP (RFC 4511) -----------------------------------------------------------------------------

# BindRequest, messageID 1, version 3, empty name, simple authentication with an empty password
# (RFC 4511 4.2; the same bytes as HAProxy's ldap-check), and UnbindRequest, messageID 2 (4.3).
LDAP_BIND_RQ = bytes.fromhex("300c020101600702010304008000")
LDAP_UNBIND_RQ = bytes.fromhex("30050201024200")
# BindResponse (APPLICATION 1, 0x61) for messageID 1 whose resultCode (ENUMERATED) is success;
# a regex over HAProxy's hex dump of the answer (upper-case digits), with the BER short-form
# lengths left open.
LDAP_BIND_SUCCESS = "^30[0-9A-F]{2}02010161[0-9A-F]{2}0A0100"


# --- the catalogue ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckContext:
    """What a check needs to know about the service it checks."""

    tls: bool
    called_ae_title: str
    calling_ae_title: str
    ping_command: str = ""  # the generation's ping wrapper (it pings from the SNAT address)


Directive = tuple[str, str]  # (HAProxy directive, comment explaining it; may be "")


@dataclass(frozen=True)
class Check:
    name: str
    summary: str
    applies_to: tuple[str, ...] | None  # protocols (preset 'protocol'); None = every service
    external: bool  # runs a script: needs fork, a PATH and no chroot
    server_options: Callable[[CheckContext], str]
    directives: Callable[[CheckContext], list[Directive]]


def _plain(ctx: CheckContext) -> str:
    return "check"


def _tls_aware(ctx: CheckContext) -> str:
    # The protocol dialogue runs inside TLS on a secure service. The check does not judge the
    # server's certificate (clients do); it proves the TLS endpoint and the protocol behind it.
    return "check check-ssl verify none" if ctx.tls else "check"


def _connect_step(ctx: CheckContext) -> Directive:
    # linger: HAProxy closes a check's connection with RST unless told to linger; a PACS or a SQL
    # Server logs every reset (SQL Server error 17830/10054), one line per check per server.
    ssl = " ssl" if ctx.tls else ""
    return (f"tcp-check connect{ssl} linger", "linger: close with FIN, not RST (a server logs every reset)")


def _comment(text: str) -> str:
    return "comment " + haproxy_string(text)


def _connect(ctx: CheckContext) -> list[Directive]:
    what = "a TLS handshake with" if ctx.tls else "a TCP connect to"
    return [
        ("option tcp-check", f"{what} the real server's port, then a clean close"),
        _connect_step(ctx),
    ]


def _dicom_echo(ctx: CheckContext) -> list[Directive]:
    rq = a_associate_rq(ctx.called_ae_title, ctx.calling_ae_title)
    titles = f"A-ASSOCIATE-RQ {ctx.calling_ae_title.strip()} -> {ctx.called_ae_title.strip()} (Verification)"
    return [
        ("option tcp-check", "a DICOM verification: associate, C-ECHO, release"),
        _connect_step(ctx),
        (f"tcp-check send-binary {rq.hex()} {_comment(titles)}", ""),
        (f"tcp-check expect rbinary ^02 {_comment('A-ASSOCIATE-AC expected (03: rejected, 07: aborted)')}", ""),
        (f"tcp-check send-binary {c_echo_rq().hex()} {_comment('P-DATA-TF C-ECHO-RQ')}", ""),
        (
            f"tcp-check expect binary {C_ECHO_RSP_SUCCESS.hex()} {_comment('C-ECHO-RSP with Status 0000 (success)')}",
            "",
        ),
        (f"tcp-check send-binary {A_RELEASE_RQ.hex()} {_comment('A-RELEASE-RQ')}", ""),
        (f"tcp-check expect rbinary ^06 {_comment('A-RELEASE-RP')}", ""),
    ]


def _mssql(ctx: CheckContext) -> list[Directive]:
    return [
        ("option tcp-check", "a native TDS PRELOGIN probe; no ODBC driver needed"),
        _connect_step(ctx),
        (f"tcp-check send-binary {TDS_PRELOGIN.hex()} {_comment('TDS PRELOGIN')}", ""),
        (
            f"tcp-check expect rbinary ^0401 {_comment('TDS PRELOGIN response (tabular result, end of message)')}",
            "",
        ),
    ]


def _ldap(ctx: CheckContext) -> list[Directive]:
    # HAProxy's own 'option ldap-check' sends the same bind but cannot linger; this is it as a
    # tcp-check dialogue, with the unbind a well-behaved client sends before it closes.
    return [
        ("option tcp-check", "an anonymous LDAPv3 bind; the server must answer success, then an unbind"),
        _connect_step(ctx),
        (f"tcp-check send-binary {LDAP_BIND_RQ.hex()} {_comment('BindRequest, LDAPv3, anonymous simple')}", ""),
        (f"tcp-check expect rbinary {LDAP_BIND_SUCCESS} {_comment('BindResponse with resultCode success (0)')}", ""),
        (f"tcp-check send-binary {LDAP_UNBIND_RQ.hex()} {_comment('UnbindRequest')}", ""),
    ]


def _ping(ctx: CheckContext) -> list[Directive]:
    return [
        ("option external-check", "the vendor's ping check: one ICMP echo from the SNAT address, 2 s deadline"),
        ('external-check path "/usr/bin:/bin"', "HAProxy gives scripts an empty PATH otherwise"),
        (f"external-check command {ctx.ping_command}", "this configuration's ping, from the SNAT address"),
    ]


CHECKS: dict[str, Check] = {
    c.name: c
    for c in (
        Check(
            "connect",
            "TCP connect to the real server's port, as the vendor's 'Connect to port' (a TLS handshake on a "
            "TLS service)",
            None,
            False,
            _tls_aware,
            _connect,
        ),
        Check(
            "ping", "ICMP echo to the real server, as the vendor's ping.sh external check", None, True, _plain, _ping
        ),
        Check(
            "mssql", "TDS PRELOGIN exchange: SQL Server's network stack answers", ("sql",), False, _tls_aware, _mssql
        ),
        Check(
            "dicom-echo",
            "DICOM association with the configured AE titles, C-ECHO, release",
            ("dicom",),
            False,
            _tls_aware,
            _dicom_echo,
        ),
        Check(
            "ldap",
            "anonymous LDAPv3 bind answered with success, over TLS on LDAP-Secure",
            ("ldap",),
            False,
            _tls_aware,
            _ldap,
        ),
    )
}

# The ping script's deadline (ping -w 2); HAProxy kills an external check after 'inter', so
# the check interval of a ping-checked service must leave room for it.
PING_DEADLINE_SECONDS = 2


def ping_script() -> Path:
    return CHECK_SCRIPTS_DIR / "ping"
