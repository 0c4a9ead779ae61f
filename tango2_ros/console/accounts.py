"""Local accounts, roles and sessions of the console.

Passwords are stored as scrypt hashes with a salt per account (stdlib `hashlib.scrypt`, no extra dependency),
compared in constant time. The account file is written to a temporary name with mode 0600 and renamed, so a reader
never sees half of it. Sessions are random tokens held in memory: they end after `idle_s` without a request, after
`max_age_s` in all, and when the console restarts. Each session carries its own CSRF token.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tango2_ros.errors import UserError

ROLES = ("viewer", "operator", "radiologist", "admin")
LANGUAGES = ("en", "ko")
# Who may do what. Stopping the greenhouse is open to every account (a red button on the wall is too); releasing
# the stop, swapping and rolling back models need an operator; patient data and signing need a radiologist.
PERMISSIONS = {
    "view": set(ROLES),
    "estop": set(ROLES),
    "estop-release": {"operator", "admin"},
    "swap": {"operator", "admin"},
    "rollback": {"operator", "admin"},
    "ask": set(ROLES),
    "patient-data": {"radiologist"},
    "sign": {"radiologist"},
    "audit": {"admin"},
}
ACCOUNT_NAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "dklen": 32}


def allowed(role: str, action: str) -> bool:
    return role in PERMISSIONS.get(action, set())


def console_home() -> Path:
    """Where the console keeps accounts and logs: $TANGO2_CONSOLE_HOME, or ~/.tango2/console."""
    configured = os.environ.get("TANGO2_CONSOLE_HOME")
    return Path(configured) if configured else Path.home() / ".tango2" / "console"


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    language: str = "en"
    display_name: str = ""

    @property
    def signer(self) -> str:
        return self.display_name or self.name


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, maxmem=64 * 1024 * 1024, **SCRYPT)


class AccountStore:
    """accounts.json in the console's home: name -> role, language, display name, salt and scrypt hash."""

    def __init__(self, home: Path) -> None:
        self.path = home / "accounts.json"
        self._lock = threading.Lock()

    def _read(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read the console's accounts ({self.path}): {exc}") from None

    def add(self, name: str, role: str, password: str, language: str = "en", display_name: str = "",
            replace: bool = False) -> Account:
        if not ACCOUNT_NAME.match(name):
            raise UserError(f"account name {name!r}: use 2-32 characters, lower-case letters, digits, '.', '_' or "
                            "'-', starting with a letter")
        if role not in ROLES:
            raise UserError(f"role {role!r}: use one of {', '.join(ROLES)}")
        if language not in LANGUAGES:
            raise UserError(f"language {language!r}: use one of {', '.join(LANGUAGES)}")
        if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
            raise UserError(f"a password needs {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
        if len(display_name) > 64:
            raise UserError("a display name has at most 64 characters")
        salt = secrets.token_bytes(16)
        with self._lock:
            accounts = self._read()
            if name in accounts and not replace:
                raise UserError(f"account {name!r} exists (use --replace to set a new password or role)")
            accounts[name] = {"role": role, "language": language, "display_name": display_name,
                              "salt": salt.hex(), "scrypt": _hash(password, salt).hex()}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(".json.partial")
            with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
                json.dump(accounts, out, indent=1)
            os.replace(partial, self.path)
        return Account(name, role, language, display_name)

    def names(self) -> dict[str, str]:
        """Account name -> role."""
        return {name: entry["role"] for name, entry in self._read().items()}

    def verify(self, name: str, password: str) -> Account | None:
        """The account when the password is right; None otherwise (unknown names cost the same hashing)."""
        entry = self._read().get(name) if isinstance(name, str) else None
        salt = bytes.fromhex(entry["salt"]) if entry else b"\0" * 16
        computed = _hash(password[:MAX_PASSWORD_CHARS], salt)
        if entry is None or not hmac.compare_digest(computed, bytes.fromhex(entry["scrypt"])):
            return None
        return Account(name, entry["role"], entry.get("language", "en"), entry.get("display_name", ""))


@dataclass
class Session:
    token: str
    account: Account
    csrf: str
    opened: float
    last_seen: float


@dataclass
class SessionStore:
    idle_s: float = 1800.0
    max_age_s: float = 12 * 3600.0
    clock: Callable[[], float] = time.monotonic
    _sessions: dict[str, Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, account: Account) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), account, secrets.token_urlsafe(24), now, now)
        with self._lock:
            self._sessions[session.token] = session
        return session

    def get(self, token: str | None, touch: bool = True) -> Session | None:
        """The live session of this token (a request starts its idle time again; `touch=False` only looks: an open
        live feed is not someone at the keyboard); None when unknown or expired."""
        if not token:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            if now - session.last_seen > self.idle_s or now - session.opened > self.max_age_s:
                del self._sessions[token]
                return None
            if touch:
                session.last_seen = now
            return session

    def close(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)


@dataclass
class LoginThrottle:
    """After `failures` wrong passwords for one account name within `window_s`, further logins for that name are
    refused until the window has passed (a guessing attack then costs a window per few guesses)."""

    failures: int = 5
    window_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _failed: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def blocked(self, name: str) -> bool:
        now = self.clock()
        with self._lock:
            recent = [t for t in self._failed.pop(name, []) if now - t < self.window_s]
            if recent:
                self._failed[name] = recent
            return len(recent) >= self.failures

    def failed(self, name: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failed) > 10000:  # many made-up names: forget those whose failures have aged out
                self._failed = {n: times for n, times in self._failed.items() if now - times[-1] < self.window_s}
            self._failed.setdefault(name, []).append(now)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failed.pop(name, None)
