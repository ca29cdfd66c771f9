"""Console accounts: who may sign in and with which role (`store.vocab.Role`).

A local account keeps a salted scrypt hash of its password (`hashlib.scrypt`, n=2**14, r=8, p=1, 16-byte salt,
64-byte key; checked in constant time), never the password. An organisation's account (signed in through OIDC)
has no password here: the identity provider vouches for its email, and this table gives it its role; an email
the table does not know signs in as a viewer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Engine, delete, select, update

from store.db import write_transaction
from store.models import Account, as_utc, utcnow
from store.vocab import Role

__all__ = ["AccountRecord", "AccountError", "add_account", "authenticate", "find_account", "list_accounts",
           "remove_account", "role_of", "set_password", "set_role"]

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_KEY_BYTES = 64
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+\-]{0,255}$")
MIN_PASSWORD_LENGTH = 10


class AccountError(ValueError):
    """An account cannot be created or changed as asked (bad name, weak password, unknown role or user)."""


class AccountRecord(NamedTuple):
    username: str
    role: Role
    display_name: str | None
    local: bool  # a password is kept here (else the account signs in through the organisation's OIDC)
    created_at: datetime
    disabled: bool


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, dklen=_KEY_BYTES, maxmem=64 * 1024 * 1024, **_SCRYPT)
    encode = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${encode(salt).decode()}${encode(key).decode()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _record(row) -> AccountRecord:
    return AccountRecord(row.username, Role(row.role), row.display_name, row.password_hash is not None,
                         as_utc(row.created_at),
                         bool(row.disabled))


def _check(username: str, role: str, password: str | None) -> Role:
    if not _USERNAME.match(username):
        raise AccountError(f"username {username!r} must be 1-256 letters, digits or _.@+- (an email will do)")
    try:
        checked = Role(role)
    except ValueError:
        raise AccountError(f"unknown role {role!r}; roles: {', '.join(r.value for r in Role)}") from None
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return checked


def add_account(engine: Engine, username: str, *, role: str, password: str | None,
                display_name: str | None = None) -> AccountRecord:
    """Create an account (`password` None: it signs in through the organisation's OIDC); an existing one fails."""
    checked = _check(username, role, password)
    if find_account(engine, username) is not None:
        raise AccountError(f"account {username!r} exists already (`sluice user passwd` or `sluice user role`)")
    row = {"username": username, "role": checked.value, "display_name": display_name, "disabled": False,
           "password_hash": hash_password(password) if password is not None else None,
           "created_at": utcnow()}
    with write_transaction(engine) as conn:
        conn.execute(Account.__table__.insert().values(**row))
    record = find_account(engine, username)
    assert record is not None
    return record


def find_account(engine: Engine, username: str) -> AccountRecord | None:
    with engine.connect() as conn:
        row = conn.execute(select(Account.__table__).where(Account.__table__.c.username == username)).first()
    return None if row is None else _record(row)


def list_accounts(engine: Engine) -> list[AccountRecord]:
    with engine.connect() as conn:
        rows = conn.execute(select(Account.__table__).order_by(Account.__table__.c.username)).all()
    return [_record(row) for row in rows]


def _update(engine: Engine, username: str, **values: object) -> None:
    table = Account.__table__
    with write_transaction(engine) as conn:
        changed = conn.execute(update(table).where(table.c.username == username).values(**values)).rowcount
    if not changed:
        raise AccountError(f"no account {username!r} (`sluice user list` shows them)")


def set_password(engine: Engine, username: str, password: str) -> None:
    _check(username, Role.VIEWER, password)
    _update(engine, username, password_hash=hash_password(password))


def set_role(engine: Engine, username: str, role: str) -> None:
    _update(engine, username, role=_check(username, role, None).value)


def remove_account(engine: Engine, username: str) -> None:
    with write_transaction(engine) as conn:
        removed = conn.execute(delete(Account.__table__).where(Account.__table__.c.username == username)).rowcount
    if not removed:
        raise AccountError(f"no account {username!r} (`sluice user list` shows them)")


def authenticate(engine: Engine, username: str, password: str) -> AccountRecord | None:
    """The local account these credentials open, or None (unknown user, wrong password, disabled, OIDC-only).
    An unknown user costs the same hash as a known one, so timing does not tell which names exist."""
    with engine.connect() as conn:
        row = conn.execute(select(Account.__table__).where(Account.__table__.c.username == username)).first()
    stored = row.password_hash if row is not None and row.password_hash else hash_password("x" * 16)
    if not password_matches(password, stored) or row is None or row.password_hash is None or row.disabled:
        return None
    return _record(row)


def role_of(engine: Engine, username: str) -> Role:
    """The role of an organisation's signed-in user: their account's, or viewer when there is none."""
    record = find_account(engine, username)
    return record.role if record is not None and not record.disabled else Role.VIEWER
