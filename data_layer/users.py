"""The app's users, in its own database table ``bi_users``: a name, a role, the regions the user
may see (none listed: every region) and a password hash.

Roles, from least to most: ``viewer`` (dashboards and API reads), ``analyst`` (and downloads,
append and upsert imports), ``admin`` (and replace imports, user management). Passwords are
hashed with scrypt by Werkzeug (a well-kept implementation of a standard scheme), never stored
or logged as given.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

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
)


class UserError(ValueError):
    """A user cannot be added or changed as asked; the message says why."""


@dataclass(frozen=True)
class User:
    """A user as the app sees one: no password."""

    name: str
    role: str
    regions: tuple[str, ...]

    def may(self, role: str) -> bool:
        """True when this user's role is ``role`` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


def create_users_table(conn: Connection) -> None:
    """Make ``bi_users`` when it is not there (in the caller's transaction)."""
    users_metadata.create_all(conn, tables=[users], checkfirst=True)


def add_user(conn: Connection, name: str, role: str, password: str, regions: Iterable[str] = ()) -> User:
    """Add a user; :class:`UserError` when the name is taken or empty, the role unknown or the password short."""
    name = _name(name)
    create_users_table(conn)
    if _find(conn, name) is not None:
        raise UserError(f"a user named {name!r} exists already")
    user = User(name, _role(role), _regions(regions))
    conn.execute(insert(users).values(name=user.name, role=user.role, regions=json.dumps(list(user.regions)),
                                      password_hash=_hash(password),
                                      created_at=datetime.now(UTC).isoformat(timespec="seconds")))
    return user


def remove_user(conn: Connection, name: str) -> None:
    """Remove a user; :class:`UserError` when there is none of that name."""
    _existing(conn, name)
    conn.execute(delete(users).where(users.c.name == name))


def set_role(conn: Connection, name: str, role: str) -> User:
    _existing(conn, name)
    conn.execute(update(users).where(users.c.name == name).values(role=_role(role)))
    return _existing(conn, name)


def set_regions(conn: Connection, name: str, regions: Iterable[str]) -> User:
    _existing(conn, name)
    conn.execute(update(users).where(users.c.name == name).values(regions=json.dumps(list(_regions(regions)))))
    return _existing(conn, name)


def set_password(conn: Connection, name: str, password: str) -> None:
    _existing(conn, name)
    conn.execute(update(users).where(users.c.name == name).values(password_hash=_hash(password)))


def list_users(conn: Connection) -> list[User]:
    """Every user, by name."""
    if not inspect(conn).has_table(users.name):
        return []
    return [_user(row) for row in run(conn, select(users).order_by(users.c.name)).mappings()]


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
    return generate_password_hash("a password nobody has", method="scrypt")


def _find(conn: Connection, name: str):  # noqa: ANN202 - a row mapping or None
    return run(conn, select(users).where(users.c.name == name)).mappings().first()


def _existing(conn: Connection, name: str) -> User:
    user = find_user(conn, name)
    if user is None:
        raise UserError(f"no user named {name!r}")
    return user


def _user(row) -> User:  # noqa: ANN001 - a row mapping
    return User(row["name"], row["role"], tuple(json.loads(row["regions"] or "[]")))


def _name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > ID_LIMIT or any(c.isspace() for c in name):
        raise UserError(f"a user name is 1 to {ID_LIMIT} characters without spaces, got {name!r}")
    return name


def _role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role


def _regions(regions: Iterable[str]) -> tuple[str, ...]:
    cleaned = tuple(sorted({region.strip() for region in regions if region.strip()}))
    too_long = [region for region in cleaned if len(region) > TEXT_LIMIT]
    if too_long:
        raise UserError(f"a region name is at most {TEXT_LIMIT} characters: {too_long[0][:40]!r}...")
    return cleaned


def _hash(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    return generate_password_hash(password, method="scrypt")
