"""The audit log, in the app's database table ``bi_audit``: who signed in (or failed to), downloaded
or imported what, when, from where, with which filters and how many rows.

Entries are only added, never changed. A failed sign-in records the name as typed (it may be no
user's), never the password.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Connection, Integer, MetaData, String, Table, Text, insert, inspect, select

from data_layer.engine import run
from data_layer.schema import ID_LIMIT, TEXT_LIMIT

#: What an entry records.
ACTIONS = ("login", "login_failed", "logout", "download", "import", "import_refused", "token_created",
           "token_revoked", "user_changed", "report_changed")

audit_metadata = MetaData()
audit = Table(
    "bi_audit",
    audit_metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False, index=True),  # ISO 8601, UTC
    Column("user_name", String(ID_LIMIT), nullable=False),
    Column("action", String(20), nullable=False),
    Column("route", String(TEXT_LIMIT), nullable=False, default=""),
    Column("filters", Text, nullable=False, default=""),  # the query string the action was asked with
    Column("rows", BigInteger, nullable=True),
    Column("address", String(64), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
)


@dataclass(frozen=True)
class AuditEntry:
    """One recorded action."""

    at: str
    user_name: str
    action: str
    route: str = ""
    filters: str = ""
    rows: int | None = None
    address: str = ""
    detail: str = ""


def record(conn: Connection, entry: AuditEntry) -> None:
    """Add ``entry`` (in the caller's transaction), making the table on first use."""
    if entry.action not in ACTIONS:
        raise ValueError(f"unknown audit action {entry.action!r}")
    audit_metadata.create_all(conn, tables=[audit], checkfirst=True)
    conn.execute(insert(audit).values(
        at=entry.at, user_name=entry.user_name[:ID_LIMIT], action=entry.action, route=entry.route[:TEXT_LIMIT],
        filters=entry.filters, rows=entry.rows, address=entry.address[:64], detail=entry.detail))


def entries(conn: Connection, since: datetime | None = None) -> list[AuditEntry]:
    """The recorded actions, oldest first (from ``since`` on, when given; a naive time is UTC)."""
    if not inspect(conn).has_table(audit.name):
        return []
    query = select(audit).order_by(audit.c.at, audit.c.id)
    if since is not None:
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
        query = query.where(audit.c.at >= since.astimezone(UTC).isoformat(timespec="seconds"))
    return [AuditEntry(row["at"], row["user_name"], row["action"], row["route"], row["filters"], row["rows"],
                       row["address"], row["detail"]) for row in run(conn, query).mappings()]


def now() -> str:
    """The time an entry is stamped with: UTC, ISO 8601, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")
