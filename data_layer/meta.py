"""The app's key/value metadata: data version, last load. Absent in a seed-made database."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Integer, Numeric, delete, func, insert, inspect, literal, select, text
from sqlalchemy.exc import OperationalError

from data_layer.engine import DatabaseSlowError, is_timeout, run
from data_layer.schema import (
    LINE_COLUMNS,
    METADATA_TABLE,
    SALES_COLUMNS,
    SALES_TABLE,
    SCHEMA_VERSION,
    SEED_COLUMNS,
    bi_metadata,
    sales,
)

_MEMO_KEY = "bi_metadata_memo"
log = logging.getLogger(__name__)


def read_meta(conn: Connection) -> dict[str, str]:
    """All metadata as a dict; empty when the table does not exist.

    Read once per connection checkout (a request, a CLI command), except inside
    a transaction that writes it; once per connection on a read-only snapshot; not
    while :func:`database_is_slow` (then the last values read are given).
    """
    memo = conn.info.get(_MEMO_KEY)
    # A columnar snapshot never changes: its metadata holds for the connection's whole life.
    if memo is not None and (memo[0] is conn or conn.dialect.name == "duckdb"):
        return memo[1]
    if conn.dialect.name == "postgresql" and not conn.in_transaction():
        known = _known_version(conn.engine)
        if known is not None and time.monotonic() < known.slow_until:
            return known.meta  # the database is slow: what it last said (see data_version)
    if not inspect(conn).has_table(METADATA_TABLE):
        values: dict[str, str] = {}
    else:
        values = {key: value for key, value in run(conn, select(bi_metadata.c.key, bi_metadata.c.value))}
    conn.info[_MEMO_KEY] = (conn, values)
    return values


def write_meta(conn: Connection, values: dict[str, str]) -> None:
    """Set the given keys (in the caller's transaction)."""
    conn.info.pop(_MEMO_KEY, None)
    conn.execute(delete(bi_metadata).where(bi_metadata.c.key.in_(list(values))))
    conn.execute(insert(bi_metadata), [{"key": k, "value": str(v)} for k, v in values.items()])


#: Seconds between two looks at the orders table's change fingerprint, per database and process.
FRESHNESS_S = 5.0
_fingerprints: dict[str, tuple[float, str | None]] = {}
_fingerprints_lock = threading.Lock()
_file_rows: dict[str, tuple[str, int]] = {}  # database -> (file fingerprint, rows counted at it)
#: SQLite: the counter of changes made to the orders table by other tools (triggers; a load of ours
#: drops them while it writes and records the counter with its version).
CHANGES_TABLE = "bi_changes"


def data_version(conn: Connection) -> str | None:
    """The version of the stored data: what cache keys, snapshots and summaries are tied to.

    The version stamped by the last load while the orders table is as that load left it.
    After a change made by another tool (a row inserted, updated or deleted with plain SQL,
    a shop's ETL), noticed by :func:`change_fingerprint` at most :data:`FRESHNESS_S` seconds
    later, it is a new version derived from the stamp and the fingerprint, so summaries,
    snapshots and cached answers follow. None for a table we never loaded and cannot watch.

    On PostgreSQL, read at the start of a connection's work, the read may take
    :data:`VERSION_TIMEOUT_MS`: past that (a lock held by a long operation, an overloaded server)
    the last version this process read is used, so answers the cache or a snapshot hold are still
    served, and for :data:`SLOW_RETRY_S` seconds the database is not asked again
    (:func:`database_is_slow` says so). :class:`DatabaseSlowError` when no version was ever read.
    """
    if conn.dialect.name != "postgresql" or conn.in_transaction():
        return _current_version(conn)
    key = conn.engine.url.render_as_string(hide_password=False)
    known = _known_version(conn.engine)
    if known is not None and time.monotonic() < known.slow_until:
        conn.info[_MEMO_KEY] = (conn, known.meta)
        return known.version
    try:
        with conn.begin():
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(VERSION_TIMEOUT_MS)}")
            version = _current_version(conn)
    except OperationalError as exc:
        if not is_timeout(exc):
            raise
        if known is None:
            raise DatabaseSlowError("the database did not say which data it holds within "
                                    f"{VERSION_TIMEOUT_MS / 1000:g} s") from exc
        log.warning("The database did not give the data version within %g s; using the last known one (%s) "
                    "for %g s", VERSION_TIMEOUT_MS / 1000, known.version, SLOW_RETRY_S)
        with _versions_lock:
            _known_versions[key] = known = _KnownVersion(known.version, known.meta, time.monotonic() + SLOW_RETRY_S)
        conn.info[_MEMO_KEY] = (conn, known.meta)  # what the rest of this connection's work reads
        return known.version
    with _versions_lock:
        _known_versions[key] = _KnownVersion(version, read_meta(conn), 0.0)
    return version


def database_is_slow(engine: Engine) -> bool:
    """True while :func:`data_version` uses the last known version because ``engine``'s database was
    too slow to give it (see :data:`SLOW_RETRY_S`)."""
    known = _known_version(engine)
    return known is not None and time.monotonic() < known.slow_until


def _known_version(engine: Engine) -> _KnownVersion | None:
    with _versions_lock:
        return _known_versions.get(engine.url.render_as_string(hide_password=False))


def note_database_slow(engine: Engine) -> None:
    """Record that a query on ``engine``'s database took too long (a lock, an overloaded server): for
    :data:`SLOW_RETRY_S` seconds :func:`database_is_slow` says so and the version is not asked for."""
    key = engine.url.render_as_string(hide_password=False)
    with _versions_lock:
        known = _known_versions.get(key)
        if known is not None:
            _known_versions[key] = _KnownVersion(known.version, known.meta, time.monotonic() + SLOW_RETRY_S)


#: Milliseconds the data-version read may take on PostgreSQL before the last known version is used.
VERSION_TIMEOUT_MS = 2_000
#: Seconds the last known version is used without asking, after a read that took too long.
SLOW_RETRY_S = 10.0


@dataclass(frozen=True)
class _KnownVersion:
    version: str | None
    meta: dict[str, str]
    slow_until: float  # time.monotonic(); 0 when the last read answered in time


_known_versions: dict[str, _KnownVersion] = {}
_versions_lock = threading.Lock()


def _current_version(conn: Connection) -> str | None:
    stamped = read_meta(conn).get("data_version")
    if not changed_by_others(conn):
        return stamped
    fingerprint = str(_watched_fingerprint(conn))
    return f"{stamped or 'external'}+{hashlib.sha256(fingerprint.encode()).hexdigest()[:12]}"


def stamped_version(conn: Connection) -> str | None:
    """The version stamped by the last load, whatever other tools changed since (the models' version:
    a few rows written by others do not make them worth retraining)."""
    return read_meta(conn).get("data_version")


def _watched_fingerprint(conn: Connection) -> str | None:
    if conn.dialect.name not in ("postgresql", "sqlite"):
        return None  # a columnar snapshot never changes; its metadata holds its version
    key = conn.engine.url.render_as_string(hide_password=False)
    now = time.monotonic()
    with _fingerprints_lock:
        seen = _fingerprints.get(key)
    if seen is not None and now - seen[0] < FRESHNESS_S:
        return seen[1]
    fingerprint = change_fingerprint(conn)
    with _fingerprints_lock:
        _fingerprints[key] = (now, fingerprint)
    return fingerprint


def forget_fingerprint(engine: Engine) -> None:
    """Look at ``engine``'s fingerprint afresh on the next :func:`data_version` (after a write of ours)."""
    with _fingerprints_lock:
        _fingerprints.pop(engine.url.render_as_string(hide_password=False), None)


def change_fingerprint(conn: Connection, *, pending: bool = False) -> str | None:
    """A cheap value that changes whenever the orders table's rows do; None when it cannot be read.

    PostgreSQL: the table's statistics (rows inserted, updated and deleted, and its file, which
    TRUNCATE and rewrites change), which the server updates after each writing transaction ends;
    with ``pending``, as they will be once the caller's own transaction has committed.
    SQLite: the change counter kept by triggers on the table (:func:`watch_changes`), or for a file
    no load of ours has touched, the file's size and modification time.
    """
    if conn.dialect.name == "postgresql":
        own = ("+ COALESCE(x.n_tup_ins, 0)", "+ COALESCE(x.n_tup_upd, 0)", "+ COALESCE(x.n_tup_del, 0)") \
            if pending else ("", "", "")
        if pending and (conn.dialect.server_version_info or (0,)) >= (15,):
            # The server then publishes this transaction's counts as it commits, not up to 10 s later.
            conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        row = run(conn, text(
            f"SELECT c.relfilenode, s.n_tup_ins {own[0]}, s.n_tup_upd {own[1]}, s.n_tup_del {own[2]} "
            "FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "LEFT JOIN pg_stat_xact_user_tables x ON x.relid = c.oid WHERE c.oid = to_regclass(:table)"
        ), {"table": SALES_TABLE}).first()
        return ":".join(str(value) for value in row) if row else None
    if conn.dialect.name == "sqlite":
        tables = inspect(conn)
        # Another tool that replaced the table (pandas' to_sql) dropped our triggers with it: the counter
        # no longer counts, the file's size and time still change.
        if not tables.has_table(CHANGES_TABLE) or run(conn, text(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table"
                " AND name LIKE :ours"), {"table": SALES_TABLE, "ours": f"{CHANGES_TABLE}%"}).scalar_one() < 3:
            return _file_fingerprint(conn.engine.url.database) if tables.has_table(SALES_TABLE) else None
        return str(run(conn, text(f"SELECT changes FROM {CHANGES_TABLE}")).scalar_one())
    return None


def _file_fingerprint(path: str | None) -> str | None:
    """A SQLite file no load of ours has touched (no change counter): its size and modification time,
    and its write-ahead log's while that holds changes not yet copied into the file. None in memory."""
    if not path or path == ":memory:":
        return None
    try:
        main = os.stat(path)
    except OSError:
        return None
    try:
        log = os.stat(f"{path}-wal")
        pending = (log.st_size, log.st_mtime_ns) if log.st_size else (0, 0)
    except OSError:
        pending = (0, 0)
    return f"file:{main.st_size}:{main.st_mtime_ns}:{pending[0]}:{pending[1]}"


def changed_rows(conn: Connection, *, fresh: bool = False) -> int | None:
    """How many rows of the orders table were inserted, updated or deleted, counted since some
    fixed point (a running total: compare two readings); None when the table is not watched.
    For a SQLite file no load of ours has touched: its row count (rows inserted less rows deleted;
    updates are not seen).

    From the change fingerprint (PostgreSQL's statistics, SQLite's trigger counter), looked at
    at most every :data:`FRESHNESS_S` seconds unless ``fresh``. A PostgreSQL statistics reset
    makes the total smaller.
    """
    if conn.dialect.name == "duckdb":  # a columnar snapshot: the count of the rows it copied
        copied = read_meta(conn).get("changed_rows")
        return int(copied) if copied else None
    fingerprint = change_fingerprint(conn) if fresh else _watched_fingerprint(conn)
    if fingerprint is None:
        return None
    if fingerprint.startswith("file:"):  # a file's size and time count no rows: its rows, counted once per change
        database = conn.engine.url.render_as_string(hide_password=False)
        with _fingerprints_lock:
            counted = _file_rows.get(database)
        if counted is None or counted[0] != fingerprint:
            counted = (fingerprint, run(conn, text(f"SELECT count(*) FROM {SALES_TABLE}")).scalar_one())
            with _fingerprints_lock:
                _file_rows[database] = counted
        return counted[1]
    counts = fingerprint.split(":")
    return sum(int(n) for n in counts[1:]) if len(counts) > 1 else int(counts[0])


def watch_changes(conn: Connection) -> None:
    """SQLite: count the changes other tools make to the orders table (three triggers and a one-row
    counter); PostgreSQL keeps statistics by itself."""
    if conn.dialect.name != "sqlite":
        return
    conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {CHANGES_TABLE} (changes INTEGER NOT NULL)")
    if conn.exec_driver_sql(f"SELECT count(*) FROM {CHANGES_TABLE}").scalar_one() == 0:
        conn.exec_driver_sql(f"INSERT INTO {CHANGES_TABLE} VALUES (0)")
    for event in ("INSERT", "UPDATE", "DELETE"):
        conn.exec_driver_sql(f"CREATE TRIGGER IF NOT EXISTS {CHANGES_TABLE}_{event.lower()} AFTER {event} ON "
                             f"{SALES_TABLE} BEGIN UPDATE {CHANGES_TABLE} SET changes = changes + 1; END")


def unwatch_changes(conn: Connection) -> None:
    """SQLite: drop the change triggers for a load of ours (in its transaction; it records its version)."""
    if conn.dialect.name == "sqlite":
        for event in ("insert", "update", "delete"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {CHANGES_TABLE}_{event}")


def stored_columns(conn: Connection) -> tuple[str, ...]:
    """The order columns the table has: all of them once a load upgraded it, the line columns of
    schema version 2, else the seed's 20; as the database lists them once another tool has changed the
    table since the last load (it may have replaced it: ``to_sql(if_exists="replace")``)."""
    if changed_by_others(conn):
        key = (conn.engine.url.render_as_string(hide_password=False), _watched_fingerprint(conn))
        with _fingerprints_lock:
            listed = _listed_columns.get(key)
        if listed is None:
            present = {column["name"] for column in inspect(conn).get_columns(SALES_TABLE)}
            listed = tuple(name for name in SALES_COLUMNS if name in present)
            with _fingerprints_lock:
                _listed_columns[key] = listed
        return listed
    version = read_meta(conn).get("schema_version")
    return {SCHEMA_VERSION: SALES_COLUMNS, "2": LINE_COLUMNS}.get(version or "", SEED_COLUMNS)


#: The columns the database listed for a table changed by other tools: (database, fingerprint) -> names.
_listed_columns: dict[tuple[str, str | None], tuple[str, ...]] = {}


def changed_by_others(conn: Connection) -> bool:
    """True when another tool has written to the orders table since the last load of ours (or no load of
    ours ever stamped it): what that load recorded about it may no longer hold."""
    fingerprint = _watched_fingerprint(conn)
    return fingerprint is not None and fingerprint != read_meta(conn).get("fingerprint")


def has_ledger(conn: Connection) -> bool:
    """True when the table has the ledger columns (line types and refunds, schema version 3)."""
    return "line_type" in stored_columns(conn)


def imported(conn: Connection) -> bool:
    """True when the stored data's last load was a shop's file (``bi-app import``, the Data page)."""
    return (read_meta(conn).get("last_load_source") or "").startswith("import ")


def data_currency(conn: Connection) -> str | None:
    """The ISO 4217 code of the stored data's currency, when a load recorded one."""
    return read_meta(conn).get("currency") or None


def has_multi_line_orders(conn: Connection) -> bool:
    """True when some order has more than one line (order counts must then count distinct orders), or when
    no load of ours has counted them in the rows as they are: another tool's table (pandas' ``to_sql`` has
    no key) may hold an order in several rows. (A columnar snapshot counts them in the rows it copied.)"""
    counted = read_meta(conn).get("multi_line_orders")
    return counted is None or int(counted or 0) > 0 or changed_by_others(conn)


#: Optional fields a shop's data may lack, with what is missing when it does (for notices).
OPTIONAL_FIELDS = {
    "satisfaction_rating": "satisfaction ratings",
    "customer_id": "customer ids (every order is a guest checkout)",
    "region": "regions",
    "customer_segment": "customer segments",
    "category": "product categories",
}


def absent_fields(conn: Connection) -> list[str]:
    """The optional fields no stored row has (stamped by the last load; none for other databases)."""
    raw = read_meta(conn).get("absent_fields")
    return [name for name in raw.split(",") if name] if raw else []


@dataclass(frozen=True)
class StoredFacts:
    """What one scan of the stored lines tells: the optional fields no line has, the numeric columns
    holding a NULL, and whether every line is a sale with nothing refunded."""

    absent_fields: tuple[str, ...]
    columns_with_nulls: frozenset[str]
    only_sales: bool


#: The numeric columns whose NULLs :class:`StoredFacts` counts.
_NUMERIC = tuple(c.name for c in sales.columns if isinstance(c.type, (Numeric, Integer)))


def scan_stored_lines(conn: Connection, *, ledger: bool) -> StoredFacts:
    """:class:`StoredFacts` of the stored lines, in one scan (``ledger``: the table has the ledger columns).

    Optional fields are absent when NULL everywhere, or "Unknown" everywhere for labels.
    """
    c = sales.c
    others = func.count().filter((c.line_type != "sale") | (c.refunded_amount != 0)) if ledger else literal(0)
    row = run(conn, select(
        func.count(c.satisfaction_rating).label("satisfaction_rating"),
        func.count(c.customer_id).label("customer_id"),
        *[func.count().filter(c[name] != "Unknown").label(name) for name in ("region", "customer_segment", "category")],
        *[func.count(c[name]).label(f"filled_{name}") for name in _NUMERIC],
        others.label("others"),
        func.count().label("rows"),
    )).one()._mapping
    return StoredFacts(
        absent_fields=tuple(name for name in OPTIONAL_FIELDS if row["rows"] and row[name] == 0),
        columns_with_nulls=frozenset(name for name in _NUMERIC if row[f"filled_{name}"] < row["rows"]),
        only_sales=row["others"] == 0,
    )


def count_multi_line_orders(conn: Connection) -> int:
    """How many orders have more than one line."""
    several = select(sales.c.order_id).group_by(sales.c.order_id).having(func.count() > 1).subquery()
    return run(conn, select(func.count()).select_from(several)).scalar_one()
