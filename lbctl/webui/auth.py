"""Sign-in, sessions, CSRF tokens and the failed sign-in limit of the web UI.

* **The password** is the admin (root) account's: its crypt(3) hash kept on the data partition
  (lbctl.boot.credentials: provisioned as lb.admin.password-hash, or set with `passwd` at the
  console). It is checked with libxcrypt's crypt_rn(3), the same library and function family
  that PAM's pam_unix uses, so every hash the appliance accepts ($y$ yescrypt, $6$, $5$, $2b$)
  works. No hash, no sign-in: there is no default password.
* **Sessions** live in this process's memory only: a random 256-bit id in a cookie that is
  Secure, HttpOnly and SameSite=Strict, with the `__Host-` prefix (RFC 6265bis 4.1.3.2: no
  Domain, Path=/, Secure), ending after SESSION_IDLE_SECONDS without use or SESSION_MAX_SECONDS
  in all. A changed admin password ends every session. A restart of the service signs everyone out.
* **CSRF.** Every state-changing request (POST) carries the session's token (the synchronizer
  token pattern, OWASP CSRF Prevention Cheat Sheet); a POST whose Origin header names another
  site is refused as well.
* **Failed sign-ins** are counted per client address: after FAILURES_ALLOWED in
  FAILURE_WINDOW_SECONDS that address waits until the oldest failure is out of the window, and
  every failure and every block is logged (the journal of lb-webui.service).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("lbctl.webui")

ADMIN_USER = "admin"  # the name on the sign-in form; the account is the appliance's root
SESSION_COOKIE = "__Host-lbadmin"
SESSION_IDLE_SECONDS = 30 * 60
SESSION_MAX_SECONDS = 12 * 3600
MAX_SESSIONS = 32  # the oldest goes when more sign in
FAILURES_ALLOWED = 5
FAILURE_WINDOW_SECONDS = 300
MAX_PASSWORD_BYTES = 1024  # longer is refused before hashing (yescrypt costs time per byte)

# libxcrypt: struct crypt_data is CRYPT_DATA_INTERNAL_SIZE + ... = 32768 bytes (crypt.h).
_CRYPT_DATA_BYTES = 32768


class _LibCrypt:
    """crypt_rn(3) from libxcrypt (libcrypt.so.1), loaded on first use."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
        lib = ctypes.CDLL(name, use_errno=True)
        self.crypt_rn = lib.crypt_rn
        self.crypt_rn.restype = ctypes.c_char_p
        self.crypt_rn.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int)

    def crypt(self, phrase: bytes, setting: bytes) -> bytes | None:
        data = ctypes.create_string_buffer(_CRYPT_DATA_BYTES)
        result: bytes | None = self.crypt_rn(phrase, setting, data, _CRYPT_DATA_BYTES)
        if result is None or result.startswith(b"*"):  # '*0' / '*1': the setting was refused
            return None
        return result


_libcrypt: _LibCrypt | None = None


def crypt(phrase: str, setting: str) -> str | None:
    """crypt(3) of `phrase` with the salt and method of `setting` (a full hash works); None when
    libxcrypt refuses the setting."""
    global _libcrypt
    if _libcrypt is None:
        _libcrypt = _LibCrypt()
    result = _libcrypt.crypt(phrase.encode(), setting.encode())
    return result.decode() if result is not None else None


@dataclass(frozen=True)
class PasswordFile:
    """The admin password hash (one line, crypt(3) format)."""

    path: Path

    def read(self) -> str | None:
        """The hash, or None when there is none (no password set, or a locked account '!', '*')."""
        try:
            value = self.path.read_text().strip()
        except OSError:
            return None
        return value if value.startswith("$") else None

    def check(self, password: str) -> bool:
        stored = self.read()
        if stored is None or not password or "\0" in password or len(password.encode()) > MAX_PASSWORD_BYTES:
            return False  # crypt(3) would read a password only up to a NUL
        computed = crypt(password, stored)
        return computed is not None and hmac.compare_digest(computed, stored)

    def fingerprint(self) -> str:
        """Changes whenever the hash does (sessions remember it); '' without a hash."""
        stored = self.read()
        return hashlib.sha256(stored.encode()).hexdigest()[:16] if stored else ""


@dataclass
class Session:
    id: str
    csrf: str
    address: str
    password: str  # PasswordFile.fingerprint() at sign-in
    created: float
    seen: float
    notices: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) for the next page


@dataclass
class Sessions:
    """The signed-in sessions, by id. Thread-safe (gunicorn's worker serves several threads)."""

    clock: Callable[[], float] = time.monotonic
    _by_id: dict[str, Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, address: str, password: str) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), address, password, now, now)
        with self._lock:
            self._expire(now)
            while len(self._by_id) >= MAX_SESSIONS:
                oldest = min(self._by_id.values(), key=lambda s: s.seen)
                del self._by_id[oldest.id]
            self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None, password: str, touch: bool = True) -> Session | None:
        """The live session with this id; None when unknown, expired, or signed in with another
        admin password than `password` (the current fingerprint). `touch`: this request is the
        user's (not the overview's own refresh), so the idle time starts again."""
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            self._expire(now)
            session = self._by_id.get(session_id)
            if session is None:
                return None
            if not password or not hmac.compare_digest(session.password, password):
                del self._by_id[session_id]
                return None
            if touch:
                session.seen = now
            return session

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._by_id.pop(session_id or "", None)

    def _expire(self, now: float) -> None:
        for sid in [
            s.id
            for s in self._by_id.values()
            if now - s.seen > SESSION_IDLE_SECONDS or now - s.created > SESSION_MAX_SECONDS
        ]:
            del self._by_id[sid]


def csrf_ok(session: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf, token or "")


MAX_TRACKED = 10000  # client addresses (or IPv6 /64s) counted at once


def client_key(address: str) -> str:
    """What the limit counts by: the IPv4 address, or the IPv6 /64 (one host may hold a whole
    /64, RFC 4291 2.5.1, and would otherwise get a fresh count per address)."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass
class FailureLimit:
    """Failed sign-ins per client (client_key) in a sliding window. A sign-in first takes an
    attempt (`begin`), counted as a failure until it succeeds, so that parallel requests cannot
    slip between the check and the count."""

    allowed: int = FAILURES_ALLOWED
    window: float = FAILURE_WINDOW_SECONDS
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, address: str) -> tuple[int, int]:
        """Take an attempt for `address`: (0, the attempts in the window with this one) when it may
        try now, or (seconds to wait, the attempts) when it has used up the window's."""
        key, now = client_key(address), self.clock()
        with self._lock:
            times = self._recent(key, now)
            if len(times) >= self.allowed:
                return max(1, int(times[0] + self.window - now + 0.999)), len(times)
            times.append(now)
            self._failures[key] = times
            if len(self._failures) > MAX_TRACKED:
                self._prune(now)
            return 0, len(times)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(client_key(address), None)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        return times

    def _prune(self, now: float) -> None:
        """Forget clients whose failures left the window; if still too many (a sweep across
        addresses), the ones that failed longest ago. Runs once per MAX_TRACKED/10 new clients."""
        for key in [k for k, t in self._failures.items() if not t or now - t[-1] >= self.window]:
            del self._failures[key]
        excess = len(self._failures) - MAX_TRACKED * 9 // 10
        if excess > 0:
            for key in sorted(self._failures, key=lambda k: self._failures[k][-1])[:excess]:
                del self._failures[key]
