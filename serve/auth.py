"""Who may do what: users with roles (YAML file, scrypt-hashed passwords), login sessions, API keys.

Users file (default <workspace>/users.yaml, written only by `sopforge users ...`)::

    users:
      alice: {role: admin, password: "scrypt$16384$8$1$<salt hex>$<hash hex>"}
      bob:   {role: employee, password: "scrypt$..."}

API keys look like ``sk-sop-<key_id>-<secret>``; the api_keys table stores only the key id and the
sha256 of the secret (a 32-byte random secret needs no slow hash), so the key is shown once.
The file is re-read when it changes, so removing a user or changing a role applies to the running
server at the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from sopforge.errors import UserError
from sopforge.workspace import Workspace, atomic_write_text

Role = Literal["admin", "employee"]
ROLES: tuple[str, ...] = ("admin", "employee")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
KEY_PREFIX = "sk-sop-"


class AuthError(UserError):
    pass


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def valid_username(name: str) -> bool:
    return bool(name) and len(name) <= 64 and all(c.isalnum() or c in "._-@" for c in name)


class UserStore:
    """The users YAML file; reads are cached by mtime, writes are atomic (mode 0600)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._cache: tuple[float, dict[str, dict[str, str]]] | None = None

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return {}
        with self._lock:
            if self._cache and self._cache[0] == mtime:
                return self._cache[1]
            try:
                data = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as e:
                raise AuthError(
                    f"{self.path}: invalid YAML ({e}); fix it or re-create users"
                ) from e
            users = data.get("users") or {} if isinstance(data, dict) else {}
            if not isinstance(users, dict):
                raise AuthError(f"{self.path}: 'users' must be a mapping of name to role/password")
            self._cache = (mtime, users)
            return users

    def _write(self, users: dict[str, dict[str, str]]) -> None:
        atomic_write_text(self.path, yaml.safe_dump({"users": users}, sort_keys=True))
        os.chmod(self.path, 0o600)
        with self._lock:
            self._cache = None

    def get(self, name: str) -> User | None:
        entry = self._read().get(name)
        if not isinstance(entry, dict) or entry.get("role") not in ROLES:
            return None
        return User(name, entry["role"])

    def authenticate(self, name: str, password: str) -> User | None:
        entry = self._read().get(name)
        if not isinstance(entry, dict) or not verify_password(
            password, str(entry.get("password", ""))
        ):
            return None
        return self.get(name)

    def list(self) -> list[User]:
        return [u for name in sorted(self._read()) if (u := self.get(name))]

    def add(self, name: str, role: str, password: str) -> User:
        if not valid_username(name):
            raise AuthError(f"user name {name!r}: use 1-64 letters, digits or . _ - @")
        if role not in ROLES:
            raise AuthError(f"role {role!r}: use one of {', '.join(ROLES)}")
        if len(password) < 8:
            raise AuthError("password must be at least 8 characters")
        users = dict(self._read())
        users[name] = {"role": role, "password": hash_password(password)}
        self._write(users)
        return User(name, role)

    def remove(self, name: str) -> None:
        users = dict(self._read())
        if name not in users:
            raise AuthError(f"no user {name!r} in {self.path}")
        del users[name]
        self._write(users)


class Sessions:
    """Browser login sessions: random token -> (user name, expiry), in memory."""

    def __init__(self, ttl_s: float = 12 * 3600):
        self.ttl_s = ttl_s
        self._by_token: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def create(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._by_token[token] = (user, time.time() + self.ttl_s)
        return token

    def user(self, token: str | None) -> str | None:
        if not token:
            return None
        with self._lock:
            entry = self._by_token.get(token)
            if entry is None:
                return None
            if entry[1] < time.time():
                del self._by_token[token]
                return None
            return entry[0]

    def end(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)


# ---- API keys ---------------------------------------------------------------------------------


def _key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(ws: Workspace, user: str) -> tuple[str, str]:
    """(key_id, full key). The full key is returned once and never stored."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with ws.transaction() as db:
        db.execute(
            "INSERT INTO api_keys (key_id, key_hash, user, created_at) VALUES (?, ?, ?, ?)",
            (key_id, _key_hash(secret), user, time.time()),
        )
    return key_id, f"{KEY_PREFIX}{key_id}-{secret}"


def revoke_key(ws: Workspace, key_id: str) -> None:
    with ws.transaction() as db:
        cur = db.execute(
            "UPDATE api_keys SET revoked_at=? WHERE key_id=? AND revoked_at IS NULL",
            (time.time(), key_id),
        )
        if cur.rowcount == 0:
            raise AuthError(f"no active API key {key_id!r} (see `sopforge keys list`)")


def list_keys(ws: Workspace) -> list[dict[str, object]]:
    rows = ws.db.execute(
        "SELECT key_id, user, created_at, revoked_at FROM api_keys ORDER BY created_at"
    ).fetchall()
    return [dict(r) for r in rows]


def key_user(ws: Workspace, key: str) -> str | None:
    """The user an API key belongs to, or None for a malformed, unknown or revoked key."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = key[len(KEY_PREFIX) :].partition("-")
    if not sep or not key_id or not secret:
        return None
    row = ws.db.execute(
        "SELECT key_hash, user FROM api_keys WHERE key_id=? AND revoked_at IS NULL", (key_id,)
    ).fetchone()
    if row is None or not hmac.compare_digest(row["key_hash"], _key_hash(secret)):
        return None
    return row["user"]
