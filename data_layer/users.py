"""The app's users, in its own database table ``bi_users``: a name, a role, the regions the user
may see (none listed: every region) and a password hash; and their API tokens, in ``bi_tokens``.

User names are compared without case (``Ana`` signs in as ``ana``) and stored in lower case.

Roles, from least to most: ``viewer`` (dashboards and API reads), ``analyst`` (and downloads,
append and upsert imports), ``admin`` (and replace imports, user management). Passwords are
hashed with scrypt by Werkzeug (a well-kept implementation of a standard scheme), never stored
or logged as given. A token is 256 random bits, stored as its SHA-256 (a hash that cannot be
reversed for so long a random value; scrypt's slowness guards guessable passwords, not these).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, Connection, MetaData, String, Table, Text, delete, insert, inspect, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from data_layer.engine import run
from data_layer.schema import ID_LIMIT, TEXT_LIMIT

ROLES = ("viewer", "analyst", "admin")
#: The shortest password accepted (NIST SP 800-63B's minimum for a chosen password).
MIN_PASSWORD_LENGTH = 8

users_metadata = MetaData()
users = Table(
    "bi_users",
    users_metadata,
    Column("name", String(ID_LIMIT), primary_key=True),
    Column("role", String(12), nullable=False),
    Column("regions", Text, nullable=False, default="[]"),  # JSON list; empty: every region
    Column("password_hash", String(TEXT_LIMIT), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("email", String(TEXT_LIMIT)),  # where emailed reports and alerts go; none: they get none
)

tokens = Table(
    "bi_tokens",
    users_metadata,
    Column("id", String(16), primary_key=True),  # public: the token's name in lists and the audit log
    Column("user_name", String(ID_LIMIT), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("revoked_at", String(32)),
)
sessions = Table(
    "bi_sessions",
    users_metadata,
    Column("id_hash", String(64), primary_key=True),  # SHA-256 of the id the session cookie holds
    Column("user_name", String(ID_LIMIT), nullable=False, index=True),
    Column("created_at", String(32), nullable=False),
)
TOKEN_PREFIX = "bi_"
#: The longest a sign-in lasts, however active its user (the session cookie also ends after
#: ``BI_SESSION_HOURS`` without a request).
MAX_SESSION_AGE = timedelta(days=30)


class UserError(ValueError):
    """A user cannot be added or changed as asked; the message says why."""


@dataclass(frozen=True)
class User:
    """A user as the app sees one: no password."""

    name: str
    role: str
    regions: tuple[str, ...]
    email: str | None = None

    def may(self, role: str) -> bool:
        """True when this user's role is ``role`` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class Token:
    """An API token as lists show it: never its secret."""

    id: str
    user_name: str
    created_at: str
    revoked_at: str | None


def create_users_table(conn: Connection) -> None:
    """Make ``bi_users``, ``bi_tokens`` and ``bi_sessions`` when they are not there (in the caller's transaction)."""
    users_metadata.create_all(conn, tables=[users, tokens, sessions], checkfirst=True)
    if "email" not in {column["name"] for column in inspect(conn).get_columns(users.name)}:  # made before emails
        conn.exec_driver_sql(f"ALTER TABLE {users.name} ADD COLUMN email VARCHAR({TEXT_LIMIT})")


def add_user(conn: Connection, name: str, role: str, password: str, regions: Iterable[str] = ()) -> User:
    """Add a user; :class:`UserError` when the name is taken or empty, the role unknown or the password short."""
    name = _name(name)
    create_users_table(conn)
    if _find(conn, name) is not None:
        raise UserError(f"a user named {name!r} exists already")
    user = User(name, _role(role), _regions(regions))
    conn.execute(insert(users).values(name=user.name, role=user.role, regions=json.dumps(list(user.regions)),
                                      password_hash=_hash(password),
                                      created_at=_now()))
    return _existing(conn, user.name)


def remove_user(conn: Connection, name: str) -> None:
    """Remove a user; :class:`UserError` when there is none of that name."""
    name = _existing(conn, name).name
    conn.execute(delete(tokens).where(tokens.c.user_name == name))
    end_sessions(conn, name)
    conn.execute(delete(users).where(users.c.name == name))


def set_role(conn: Connection, name: str, role: str) -> User:
    name = _existing(conn, name).name
    conn.execute(update(users).where(users.c.name == name).values(role=_role(role)))
    return _existing(conn, name)


def set_regions(conn: Connection, name: str, regions: Iterable[str]) -> User:
    name = _existing(conn, name).name
    conn.execute(update(users).where(users.c.name == name).values(regions=json.dumps(list(_regions(regions)))))
    return _existing(conn, name)


def set_email(conn: Connection, name: str, email: str | None) -> User:
    """Where the user's emailed reports and alerts go (None: nowhere); :class:`UserError` for an address that is
    not one."""
    name = _existing(conn, name).name
    create_users_table(conn)
    conn.execute(update(users).where(users.c.name == name).values(email=_email(email) if email else None))
    return _existing(conn, name)


def set_password(conn: Connection, name: str, password: str) -> None:
    """A new password; every session of the user ends (their tokens stay: ``bi-app tokens revoke`` ends those)."""
    name = _existing(conn, name).name
    conn.execute(update(users).where(users.c.name == name).values(password_hash=_hash(password)))
    end_sessions(conn, name)


def list_users(conn: Connection) -> list[User]:
    """Every user, by name."""
    if not inspect(conn).has_table(users.name):
        return []
    return [_user(row) for row in run(conn, select(*_user_columns(conn)).order_by(users.c.name)).mappings()]


def authenticate(conn: Connection, name: str, password: str) -> User | None:
    """The user whose name and password these are, else None (as slow for an unknown name as for a
    wrong password)."""
    row = _find(conn, name) if inspect(conn).has_table(users.name) else None
    if not check_password_hash(row["password_hash"] if row else _decoy_hash(), password) or row is None:
        return None
    return _user(row)


def find_user(conn: Connection, name: str) -> User | None:
    """The user of that name, if there is one."""
    row = _find(conn, name) if inspect(conn).has_table(users.name) else None
    return _user(row) if row else None


@functools.cache
def _decoy_hash() -> str:
    """A hash to check a password against when the user does not exist, so a wrong name takes as long
    as a wrong password. Made on first sign-in, not at import: scrypt takes 0.1 s, which every
    ``bi-app`` command would pay."""
    return generate_password_hash(secrets.token_urlsafe(32), method="scrypt")


def start_session(conn: Connection, user: User) -> str:
    """A new session of ``user``: the id its cookie holds (stored only as a hash). Sessions older than
    :data:`MAX_SESSION_AGE` are cleared on the way."""
    create_users_table(conn)
    oldest = (datetime.now(UTC) - MAX_SESSION_AGE).isoformat(timespec="seconds")
    conn.execute(delete(sessions).where(sessions.c.created_at < oldest))
    session_id = secrets.token_urlsafe(32)
    conn.execute(insert(sessions).values(id_hash=_token_hash(session_id), user_name=user.name, created_at=_now()))
    return session_id


def session_user(conn: Connection, session_id: str) -> User | None:
    """The user of a session that has not ended (signed out, new password, user removed, or past
    :data:`MAX_SESSION_AGE`), read as they are now (role and regions); else None."""
    oldest = (datetime.now(UTC) - MAX_SESSION_AGE).isoformat(timespec="seconds")
    query = (select(*_user_columns(conn)).join(sessions, sessions.c.user_name == users.c.name)
             .where(sessions.c.id_hash == _token_hash(session_id), sessions.c.created_at >= oldest))
    row = run(conn, query).mappings().first()
    return _user(row) if row else None


def end_session(conn: Connection, session_id: str) -> None:
    """Sign a session out: its cookie no longer signs anyone in, wherever it was copied to."""
    conn.execute(delete(sessions).where(sessions.c.id_hash == _token_hash(session_id)))


def end_sessions(conn: Connection, name: str) -> None:
    """End every session of the user ``name``."""
    if inspect(conn).has_table(sessions.name):
        conn.execute(delete(sessions).where(sessions.c.user_name == name))


def create_token(conn: Connection, name: str) -> tuple[Token, str]:
    """A new API token of the user ``name``: its listing and its secret, which is shown this once and
    stored only as a hash. It carries the user's role and regions as they are when it is used."""
    user = _existing(conn, name)
    token = Token(secrets.token_hex(4), user.name, _now(), None)
    secret = f"{TOKEN_PREFIX}{token.id}_{secrets.token_urlsafe(32)}"
    conn.execute(insert(tokens).values(id=token.id, user_name=token.user_name, token_hash=_token_hash(secret),
                                       created_at=token.created_at))
    return token, secret


def list_tokens(conn: Connection, name: str | None = None) -> list[Token]:
    """Every token (of the user ``name`` only, when given), revoked ones included, oldest first."""
    if not inspect(conn).has_table(tokens.name):
        return []
    query = select(tokens).order_by(tokens.c.created_at, tokens.c.id)
    if name is not None:
        query = query.where(tokens.c.user_name == _existing(conn, name).name)
    return [Token(row["id"], row["user_name"], row["created_at"], row["revoked_at"])
            for row in run(conn, query).mappings()]


def revoke_token(conn: Connection, token_id: str) -> Token:
    """Stop a token from working; :class:`UserError` when there is no such token or it is revoked already."""
    token = next((t for t in list_tokens(conn) if t.id == token_id.strip()), None)
    if token is None:
        raise UserError(f"no token {token_id!r} (bi-app tokens list shows them)")
    if token.revoked_at is not None:
        raise UserError(f"token {token.id} was revoked on {token.revoked_at}")
    revoked = Token(token.id, token.user_name, token.created_at, _now())
    conn.execute(update(tokens).where(tokens.c.id == token.id).values(revoked_at=revoked.revoked_at))
    return revoked


def user_for_token(conn: Connection, secret: str) -> tuple[User, str] | None:
    """The user a token (as sent) stands for, and the token's id; None for an unknown, malformed or
    revoked token, or one whose user is gone."""
    if not secret.startswith(TOKEN_PREFIX) or not inspect(conn).has_table(tokens.name):
        return None
    token_id = secret[len(TOKEN_PREFIX):].split("_", 1)[0]
    row = run(conn, select(tokens).where(tokens.c.id == token_id)).mappings().first()
    if row is None or row["revoked_at"] is not None or not hmac.compare_digest(row["token_hash"], _token_hash(secret)):
        return None
    user = find_user(conn, row["user_name"])
    return (user, token_id) if user is not None else None


def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _find(conn: Connection, name: str):  # noqa: ANN202 - a row mapping or None
    key = unicodedata.normalize("NFC", name.strip().lower())
    return run(conn, select(*_user_columns(conn)).where(users.c.name == key)).mappings().first()


_with_email: set[str] = set()


def _user_columns(conn: Connection) -> list:
    """The columns of ``bi_users`` to read: all but ``email`` in a table made before it (which a read-only
    connection cannot add; the first sign-in or user change adds it)."""
    url = conn.engine.url.render_as_string()
    if url not in _with_email:
        if "email" not in {column["name"] for column in inspect(conn).get_columns(users.name)}:
            return [column for column in users.c if column.name != "email"]
        _with_email.add(url)
    return list(users.c)


def _existing(conn: Connection, name: str) -> User:
    user = find_user(conn, name)
    if user is None:
        raise UserError(f"no user named {name!r}")
    return user


def _user(row) -> User:  # noqa: ANN001 - a row mapping
    return User(row["name"], row["role"], tuple(json.loads(row["regions"] or "[]")), row.get("email"))


def _email(email: str) -> str:
    address = email.strip()
    local, _at, domain = address.rpartition("@")
    if (not local or "." not in domain or len(address) > TEXT_LIMIT
            or any(c.isspace() or c in "<>,;\"" for c in address)):
        raise UserError(f"{email!r} is not an email address (name@example.com)")
    return address


def _name(name: str) -> str:
    name = unicodedata.normalize("NFC", name.strip().lower())
    if not name or len(name) > ID_LIMIT or any(c.isspace() for c in name):
        raise UserError(f"a user name is 1 to {ID_LIMIT} characters without spaces, got {name!r}")
    return name


def _role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role


def _regions(regions: Iterable[str]) -> tuple[str, ...]:
    # NFC: a name typed in decomposed form (as some systems paste it) is the region's own, not a look-alike.
    cleaned = tuple(sorted({unicodedata.normalize("NFC", region.strip()) for region in regions if region.strip()}))
    too_long = [region for region in cleaned if len(region) > TEXT_LIMIT]
    if too_long:
        raise UserError(f"a region name is at most {TEXT_LIMIT} characters: {too_long[0][:40]!r}...")
    return cleaned


def _hash(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if not password.strip():
        raise UserError("a password of spaces only is no password")
    return generate_password_hash(password, method="scrypt")
