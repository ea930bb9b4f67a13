"""Bulk loading of orders: PostgreSQL through COPY (binary where every column's type allows), SQLite
through executemany.

Every load is one transaction: the rows, the index rebuild, the quality check
and the new data version commit together or not at all.
"""

from __future__ import annotations

import io
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Literal, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from pgpq import ArrowToPostgresBinaryEncoder
from sqlalchemy import Column, Connection, Engine, MetaData, Numeric, String, delete, func, inspect, select
from sqlalchemy import types as sqltypes
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateIndex, DefaultClause, DropIndex

from data_layer.engine import describe_error, driver_connection, is_postgres, is_timeout, run
from data_layer.meta import (
    change_fingerprint,
    count_multi_line_orders,
    data_version,
    forget_fingerprint,
    read_meta,
    scan_stored_lines,
    unwatch_changes,
    watch_changes,
    write_meta,
)
from data_layer.quality import DEFAULT_DATE_BOUNDS, QualityReport, quality_report
from data_layer.schema import (
    LEDGER_COLUMNS,
    SALES_COLUMNS,
    SALES_INDEXES,
    SALES_TABLE,
    SCHEMA_VERSION,
    half_away,
    metadata,
    sales,
)
from data_layer.stopping import WorkStopped, checkpoint, seconds_left, stop_reason
from data_layer.summaries import DIMENSIONS, create_daily, daily, rebuild_summaries, store_summary_meta

if TYPE_CHECKING:
    from data_layer.columnar import LinesSummary, LoadSummary

log = logging.getLogger(__name__)

T = TypeVar("T")
LoadMode = Literal["replace", "append", "upsert"]
LOAD_MODES: tuple[LoadMode, ...] = ("replace", "append", "upsert")


def load_mode(value: str) -> LoadMode:
    """``value`` as a load mode; ValueError if it is none of :data:`LOAD_MODES`."""
    for mode in LOAD_MODES:
        if mode == value:
            return mode
    raise ValueError(f"mode must be one of {', '.join(LOAD_MODES)}, got {value!r}")
STAGING_TABLE = "bi_staging"
#: The columns queries filter, group and join on: the ones a load gathers statistics for.
ANALYZED_COLUMNS = ("order_id", "customer_id", "order_date", "region", "customer_segment", "category", "product",
                    "line_type")


class LoadError(RuntimeError):
    """A load was rolled back; the message says why."""


@dataclass(frozen=True)
class LoadResult:
    """What a load did, and the quality report taken inside its transaction."""

    mode: LoadMode
    rows_in: int
    rows_stored: int
    seconds: float
    data_version: str
    quality: QualityReport
    summary_seconds: float | None = None
    #: True when the summary was built from the lines during the load (a replace), not rebuilt after it.
    summary_with_load: bool = False
    #: False when an upsert found every order already stored exactly so (nothing was written).
    changed: bool = True
    #: What the load changed in an orders table made by another tool or an older version (in words).
    upgrades: tuple[str, ...] = ()

    @property
    def rows_per_second(self) -> float:
        return self.rows_in / self.seconds if self.seconds else float("inf")

    @property
    def summary_note(self) -> str:
        """How the summary tables were made, for messages ("built with the load in 0.52 s")."""
        if self.summary_seconds is None:
            return "not rebuilt (queries read the raw rows)"
        return f"{'built with the load' if self.summary_with_load else 'rebuilt'} in {self.summary_seconds:.2f} s"


def create_schema(conn: Connection) -> list[str]:
    """Create the app's tables and indexes where they do not exist yet; upgrade an older orders table
    (what changed in it, in words: see :func:`upgrade_sales_table`)."""
    upgrades = upgrade_sales_table(conn) if inspect(conn).has_table(SALES_TABLE) else []
    metadata.create_all(conn, checkfirst=True)
    return upgrades


def upgrade_sales_table(conn: Connection) -> list[str]:
    """Bring a seed-made (or older) orders table to the current schema; what changed, in words.

    Version 2: ``line_number``, the (order_id, line_number) key and nullable customer_id
    and satisfaction_rating; stored rows become line 1 of their order. Version 3: the
    ledger columns (stored lines are sale lines, nothing refunded) and text columns wide
    enough for real names (:data:`data_layer.schema.TEXT_LIMIT`).
    """
    changed = []
    columns = {c["name"]: c for c in inspect(conn).get_columns(SALES_TABLE)}
    missing = [name for name in LEDGER_COLUMNS if name not in columns]
    if missing:
        changed.append(f"columns added ({', '.join(missing)}: stored lines are sales, nothing refunded)")
    if "line_number" not in columns:
        copied = _add_line_numbers(conn, columns)  # on SQLite a copy into the whole schema: the columns above too
        changed[:0] = ["each stored order's rows numbered as its lines (line_number)", *copied]
        columns = {c["name"]: c for c in inspect(conn).get_columns(SALES_TABLE)}
        missing = [name for name in LEDGER_COLUMNS if name not in columns]
    for name in missing:
        log.info("Upgrading %s: adding %s", SALES_TABLE, name)
        column = sales.c[name]
        type_ = column.type.compile(conn.dialect)
        default = column.server_default
        assert isinstance(default, DefaultClause), f"{name} has a server default in the schema"
        conn.exec_driver_sql(f"ALTER TABLE {SALES_TABLE} ADD COLUMN {name} {type_} NOT NULL DEFAULT {default.arg!r}")
    if is_postgres(conn.engine) and isinstance(columns["order_date"]["type"], sqltypes.DateTime):
        # pandas' to_sql writes dates as timestamps: days, as this app keeps them (SQLite's copy above).
        log.info("Upgrading %s: order_date to DATE", SALES_TABLE)
        conn.exec_driver_sql(f"ALTER TABLE {SALES_TABLE} ALTER COLUMN order_date TYPE DATE USING order_date::date")
        changed.append("order dates kept as days (they were timestamps)")
    if is_postgres(conn.engine):  # SQLite enforces neither a VARCHAR's length nor a NUMERIC's scale
        widened = [name for name, info in columns.items()
                   if name in sales.c and _narrower(info["type"], sales.c[name].type)]
        if widened:
            changes = ", ".join(f"ALTER COLUMN {name} TYPE {sales.c[name].type.compile(conn.dialect)}"
                                for name in widened)
            log.info("Upgrading %s: %s", SALES_TABLE, changes)
            conn.exec_driver_sql(f"ALTER TABLE {SALES_TABLE} {changes}")
            changed.append("columns widened for longer names, more decimals or ids with letters "
                           f"({', '.join(widened)})")
    return changed


def _narrower(stored: object, wanted: object) -> bool:
    """A stored VARCHAR shorter, or NUMERIC with fewer decimals, than the schema's; or numbers where the
    schema keeps text (pandas' to_sql writes ids of digits as BIGINT: an id such as 'NEW-1' would not fit)."""
    if isinstance(wanted, String) and isinstance(stored, (sqltypes.Integer, Numeric)):
        return True
    if isinstance(wanted, String) and isinstance(stored, String):
        has, needs = stored.length, wanted.length
    elif isinstance(wanted, Numeric) and isinstance(stored, Numeric):
        has, needs = stored.scale, wanted.scale
    else:
        return False
    return has is not None and needs is not None and has < needs


def _add_line_numbers(conn: Connection, columns: dict) -> list[str]:
    """Number each stored order's rows 1, 2, ... in the order they are stored (a table written by other tools,
    pandas' to_sql say, may hold an order in several rows). On SQLite, what else the copy it takes changed
    (in words)."""
    log.info("Upgrading %s: adding line_number (each stored order's rows numbered from 1)", SALES_TABLE)
    if is_postgres(conn.engine):
        conn.exec_driver_sql(f"ALTER TABLE {SALES_TABLE} ADD COLUMN line_number INTEGER NOT NULL DEFAULT 1")
        conn.exec_driver_sql(
            f"UPDATE {SALES_TABLE} SET line_number = numbered.n FROM (SELECT ctid AS place, row_number() OVER "
            f"(PARTITION BY order_id ORDER BY ctid) AS n FROM {SALES_TABLE}) AS numbered "
            f"WHERE {SALES_TABLE}.ctid = numbered.place AND numbered.n > 1")
        conn.exec_driver_sql(f"ALTER TABLE {SALES_TABLE} ALTER COLUMN customer_id DROP NOT NULL, "
                             "ALTER COLUMN satisfaction_rating DROP NOT NULL")
        primary_key = inspect(conn).get_pk_constraint(SALES_TABLE).get("name")
        if primary_key:
            conn.exec_driver_sql(f'ALTER TABLE {SALES_TABLE} DROP CONSTRAINT "{primary_key}"')
        conn.exec_driver_sql(f"ALTER TABLE {SALES_TABLE} ADD PRIMARY KEY (order_id, line_number)")
        return []
    # SQLite cannot change a key or a NOT NULL in place: copy into a new table, with the other tool's own
    # columns too (pandas' "index", a "notes" column), as they are.
    staging = sales.to_metadata(MetaData(), name=f"{SALES_TABLE}__upgrade")
    staging.indexes.clear()  # the old table still holds the index names; they are made after the swap
    theirs = [name for name in columns if name not in sales.c]
    for name in theirs:
        staging.append_column(Column(name, columns[name]["type"]))
    staging.create(conn)
    quote = conn.dialect.identifier_preparer.quote
    copied = [name for name in SALES_COLUMNS if name in columns] + theirs
    # Days as ISO dates: pandas' to_sql writes timestamps ("2024-01-01 00:00:00.000000") as text.
    timestamps = run(conn, select(func.count()).where(func.length(sales.c.order_date) > 10)).scalar_one()
    values = ", ".join("substr(order_date, 1, 10)" if name == "order_date" else quote(name) for name in copied)
    conn.exec_driver_sql(f"INSERT INTO {staging.name} ({', '.join(map(quote, copied))}, line_number) SELECT "
                         f"{values}, row_number() OVER (PARTITION BY order_id ORDER BY rowid) FROM {SALES_TABLE}")
    conn.exec_driver_sql(f"DROP TABLE {SALES_TABLE}")
    conn.exec_driver_sql(f"ALTER TABLE {staging.name} RENAME TO {SALES_TABLE}")
    for index in SALES_INDEXES:
        conn.execute(CreateIndex(index, if_not_exists=True))
    numbers = [name for name in ("order_id", "customer_id")
               if name in columns and isinstance(columns[name]["type"], (sqltypes.Integer, Numeric))]
    return ([f"ids kept as text ({', '.join(numbers)})"] if numbers else []) + (
        ["order dates kept as days (they were timestamps)"] if timestamps else [])


def load_orders(  # noqa: PLR0913 - keyword-only options
    engine: Engine,
    chunks: Iterable[pa.Table],
    *,
    mode: LoadMode = "replace",
    source: str = "unknown",
    date_bounds: tuple[date, date] = DEFAULT_DATE_BOUNDS,
    on_progress: Callable[[int], None] | None = None,
    currency: str | None = None,
    configured_currency: str | None = None,
    remove_orders: Iterable[str] = (),
) -> LoadResult:
    """Load Arrow tables of orders in one transaction and stamp a new data version.

    ``replace`` empties the table first; ``append`` adds to it; ``upsert``
    replaces every order whose id the chunks hold (all its lines), adds the
    others and removes the stored lines of ``remove_orders`` (orders a file now
    says were never sales), and writes nothing at all when those orders are
    already stored exactly so. The indexes are rebuilt after a replace rather
    than maintained row by row. ``currency`` (ISO 4217) is recorded with the
    data; adding orders in another currency than the stored ones (or, when they have none
    recorded, than ``configured_currency``, in which they are shown) is refused. If
    any row fails or the quality report finds a problem, nothing is written.
    """
    if mode not in LOAD_MODES:
        raise ValueError(f"mode must be one of {', '.join(LOAD_MODES)}, got {mode!r}")
    started = time.perf_counter()
    postgres = is_postgres(engine)
    job = _LoadJob(engine, mode, source, date_bounds, on_progress, started, postgres, currency, configured_currency,
                   tuple(remove_orders))
    try:
        return _load(job, chunks)
    except _Unchanged as unchanged:
        with engine.connect() as conn:
            return LoadResult(mode=mode, rows_in=unchanged.rows_in, rows_stored=unchanged.rows_stored,
                              seconds=time.perf_counter() - started, data_version=data_version(conn) or "",
                              quality=quality_report(conn, date_bounds=date_bounds), changed=False)


class _Unchanged(Exception):  # noqa: N818 - not an error: the load had nothing to write
    def __init__(self, rows_in: int, rows_stored: int) -> None:
        self.rows_in, self.rows_stored = rows_in, rows_stored


@dataclass(frozen=True)
class _LoadJob:
    """What :func:`load_orders` was asked to do, and when it started."""

    engine: Engine
    mode: LoadMode
    source: str
    date_bounds: tuple[date, date]
    on_progress: Callable[[int], None] | None
    started: float
    postgres: bool
    currency: str | None
    configured_currency: str | None
    remove_orders: tuple[str, ...]


def _load(job: _LoadJob, chunks: Iterable[pa.Table]) -> LoadResult:
    if job.mode != "replace":  # the summary must then cover the stored lines too: rebuilt after the load
        return _load_lines(job, chunks, None, None)
    from data_layer.columnar import LoadSummary  # DuckDB: only loads need it, not every command

    summary = LoadSummary()
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-summary") as background:
            return _load_lines(job, chunks, summary, background)
    finally:
        summary.close()


def _load_lines(job: _LoadJob, chunks: Iterable[pa.Table], summary: LoadSummary | None,
                background: ThreadPoolExecutor | None) -> LoadResult:
    engine, mode, source, date_bounds, on_progress = job.engine, job.mode, job.source, job.date_bounds, job.on_progress
    started, postgres, currency, configured_currency = job.started, job.postgres, job.currency, job.configured_currency
    remove_orders = job.remove_orders
    built = None
    with ExitStack() as stack, _stopped_statements(), engine.begin() as conn:
        upgrades = create_schema(conn)
        unwatch_changes(conn)  # our own rows are not an outside change; the version below records them
        stored_currency = read_meta(conn).get("currency") or None
        if postgres:
            # A batch job, not an app query: no time limit but the work's own (stopping), and it waits for
            # readers to let go of the table.
            left = seconds_left()
            timeout = 0 if left is None else max(1, int(left * 1000))
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {timeout}; SET LOCAL lock_timeout = 0")
        else:
            stack.enter_context(_asked_between_steps(conn))
        rows_before = 0
        primary_key = None
        if mode == "replace":
            # Building indexes once after the load is far cheaper than row by row.
            for index in SALES_INDEXES:
                conn.execute(DropIndex(index, if_exists=True))
            if postgres:
                conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
                conn.exec_driver_sql(f"TRUNCATE {SALES_TABLE}")
                primary_key = inspect(conn).get_pk_constraint(SALES_TABLE).get("name")
                if primary_key:
                    conn.exec_driver_sql(f'ALTER TABLE {SALES_TABLE} DROP CONSTRAINT "{primary_key}"')
            else:
                conn.exec_driver_sql(f"DELETE FROM {SALES_TABLE}")
        else:
            rows_before = conn.execute(select(func.count()).select_from(sales)).scalar_one()
            _check_currency(currency, stored_currency or configured_currency, rows_before)

        rows_in = 0
        lines = _LineWatch()
        streamed = lines.watch(chunks)
        if summary:
            streamed = summary.watch(streamed, wanted=lambda: not lines.beyond_first)
        target = SALES_TABLE
        if mode == "upsert":
            target = STAGING_TABLE
            if not postgres:  # SQLite keeps a temporary table for the connection's life
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{STAGING_TABLE}")
            conn.exec_driver_sql(
                f"CREATE TEMP TABLE {STAGING_TABLE} (LIKE {SALES_TABLE} INCLUDING DEFAULTS) ON COMMIT DROP" if postgres
                else f"CREATE TEMP TABLE {STAGING_TABLE} AS SELECT * FROM {SALES_TABLE} WHERE 0"
            )
        if postgres:
            # The next chunk is encoded in a thread while PostgreSQL copies this one (the staging table is
            # made LIKE the orders table: the same types).
            freeze = mode == "replace"
            copy = _CopyFormat.of(conn, SALES_TABLE, SALES_COLUMNS)
            for data, rows in _in_background(copy.encode(streamed)):
                checkpoint()
                copy.send(conn, data, freeze=freeze, table=target)
                rows_in += rows
                if on_progress:
                    on_progress(rows)
        else:
            for chunk in streamed:
                checkpoint()
                _insert_chunk(conn, chunk.select(list(SALES_COLUMNS)), table=target)
                rows_in += chunk.num_rows
                if on_progress:
                    on_progress(chunk.num_rows)
        if mode == "upsert":
            rows_before -= _merge_staged(conn, rows_in, rows_before, remove_orders)
        # DuckDB summarises the lines on one core while the database builds its indexes on the other.
        building = background.submit(summary.build) \
            if background and summary and summary.started and not lines.beyond_first else None

        checkpoint()
        if primary_key:
            conn.exec_driver_sql(
                f'ALTER TABLE {SALES_TABLE} ADD CONSTRAINT "{primary_key}" PRIMARY KEY (order_id, line_number)'
            )
        if mode == "replace":
            for index in SALES_INDEXES:
                conn.execute(CreateIndex(index, if_not_exists=True))
        if postgres:
            # Statistics for what queries filter, group and join on (all 23 columns took twice as long).
            conn.exec_driver_sql(f"ANALYZE {SALES_TABLE} ({', '.join(ANALYZED_COLUMNS)})")

        report = quality_report(conn, expected_rows=rows_before + rows_in, date_bounds=date_bounds)
        if not report.ok:
            problems = "; ".join(f"{c.name}: {c.failing_rows:,} rows" for c in report.failures)
            raise LoadError(f"load rolled back, the data failed its quality checks ({problems})")
        built = building.result() if building else None
        checkpoint()  # the last: past it the load commits
        # The upgrade gave every table the ledger's columns.
        facts = built.facts if built else scan_stored_lines(conn, ledger=True)
        version = uuid.uuid4().hex
        watch_changes(conn)
        before = read_meta(conn).get("multi_line_orders") if mode == "append" else "0"
        if mode == "upsert" or before is None:
            # Replaced orders may have had several lines; rows no load of ours counted (another tool's,
            # just numbered by the upgrade) may hold orders of several.
            lines.beyond_first = True
        write_meta(
            conn,
            {
                "data_version": version,
                "schema_version": SCHEMA_VERSION,
                "absent_fields": ",".join(facts.absent_fields),
                # Only loads with a line beyond the first can add orders of several lines.
                "multi_line_orders": str(count_multi_line_orders(conn)) if lines.beyond_first else before or "0",
                "loaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "last_load_mode": mode,
                "last_load_rows": str(rows_in),
                "last_load_source": source,
                "currency": currency or ("" if mode == "replace" else stored_currency or ""),
                # The table as this load leaves it: other tools' changes after it make a new version.
                "fingerprint": change_fingerprint(conn, pending=True) or "",
            },
        )
        if built:
            _store_summary(conn, built, version)
    forget_fingerprint(engine)
    seconds = time.perf_counter() - started
    if built:
        return LoadResult(mode=mode, rows_in=rows_in, rows_stored=report.row_count, seconds=seconds,
                          data_version=version, quality=report, summary_seconds=built.seconds,
                          summary_with_load=True, upgrades=tuple(upgrades))
    try:
        summary_seconds: float | None = rebuild_summaries(engine, facts)
    except SQLAlchemyError as exc:
        # The rows are in and consistent; queries read them directly until a rebuild succeeds.
        log.warning("Summary tables not rebuilt (%s); queries use the raw rows", describe_error(exc))
        summary_seconds = None
    return LoadResult(
        mode=mode,
        rows_in=rows_in,
        rows_stored=report.row_count,
        seconds=seconds,
        data_version=version,
        quality=report,
        summary_seconds=summary_seconds,
        upgrades=tuple(upgrades),
    )


@contextmanager
def _stopped_statements() -> Iterator[None]:
    """A statement the database cancelled because the work ran out of time (PostgreSQL's statement_timeout set
    from it, SQLite's progress handler) is the work stopping (:class:`WorkStopped`), not a database failure."""
    try:
        yield
    except (SQLAlchemyError, sqlite3.OperationalError) as exc:
        cancelled = is_timeout(exc) or "interrupted" in str(exc)
        if cancelled and (reason := stop_reason()):
            raise WorkStopped(reason) from None
        raise


@contextmanager
def _asked_between_steps(conn: Connection) -> Iterator[None]:
    """SQLite asks whether the work must stop every few thousand steps of a statement (an upsert's comparison
    with the stored lines, an index build) and interrupts it if so."""
    driver = driver_connection(conn)
    driver.set_progress_handler(lambda: 1 if stop_reason() else 0, 200_000)
    try:
        yield
    finally:
        driver.set_progress_handler(None, 0)


def _check_currency(currency: str | None, stored: str | None, rows_before: int) -> None:
    """Refuse to add orders in one currency to stored orders in another (or in none recorded)."""
    if not currency or not rows_before or stored == currency:
        return
    if stored:
        raise LoadError(f"the stored orders are in {stored} and these in {currency}: one data set holds one "
                        "currency (replace the stored orders to change it)")
    raise LoadError(f"these orders are in {currency}, but the stored orders have no recorded currency (they are "
                    "shown in the configured one): replace the stored orders, or import the file without its "
                    "currency column")


def _merge_staged(conn: Connection, rows_in: int, rows_before: int, remove_orders: tuple[str, ...] = ()) -> int:
    """Replace the stored orders the staging table holds by its lines and delete the lines of
    ``remove_orders``; return the lines deleted.

    Raises :class:`_Unchanged` (rolling everything back) when the staged lines
    are exactly the stored lines of those orders and none of ``remove_orders`` is stored.
    """
    removed = 0
    for start in range(0, len(remove_orders), 1000):
        removed += conn.execute(delete(sales).where(sales.c.order_id.in_(remove_orders[start:start + 1000]))).rowcount
    columns = ", ".join(SALES_COLUMNS)
    stored = f"SELECT {columns} FROM {SALES_TABLE} WHERE order_id IN (SELECT order_id FROM {STAGING_TABLE})"
    staged = f"SELECT {columns} FROM {STAGING_TABLE}"
    differences = sum(
        conn.exec_driver_sql(f"SELECT count(*) FROM ({a} EXCEPT {b}) AS difference").scalar_one()
        for a, b in ((staged, stored), (stored, staged))
    )
    if differences == 0 and removed == 0:
        raise _Unchanged(rows_in, rows_before)
    deleted = conn.exec_driver_sql(
        f"DELETE FROM {SALES_TABLE} WHERE order_id IN (SELECT order_id FROM {STAGING_TABLE})"
    ).rowcount
    conn.exec_driver_sql(f"INSERT INTO {SALES_TABLE} ({columns}) SELECT {columns} FROM {STAGING_TABLE}")
    conn.exec_driver_sql(f"DROP TABLE {STAGING_TABLE}")
    return deleted + removed


def orders_already_stored(conn: Connection, order_ids: Sequence[str], batch: int = 5_000,
                          examples: int = 3) -> tuple[int, list[str]]:
    """How many of ``order_ids`` (distinct ids) have lines stored (lines an append of them would refuse),
    and the first ``examples`` of those ids in the file's order."""
    if not inspect(conn).has_table(SALES_TABLE):
        return 0, []
    found = 0
    named: list[str] = []
    for start in range(0, len(order_ids), batch):
        part = list(order_ids[start:start + batch])
        stored = {row[0] for row in run(conn, select(sales.c.order_id).distinct().where(sales.c.order_id.in_(part)))}
        found += len(stored)
        named += [order_id for order_id in part if order_id in stored][: examples - len(named)]
    return found, named


class _LineWatch:
    """Passes chunks through, noting whether any holds a line beyond an order's first."""

    def __init__(self) -> None:
        self.beyond_first = False

    def watch(self, chunks: Iterable[pa.Table]) -> Iterator[pa.Table]:
        for chunk in chunks:
            if chunk.num_rows and not self.beyond_first:
                self.beyond_first = (pc.max(chunk.column("line_number")).as_py() or 1) > 1
            yield chunk


def _in_background(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Run ``items`` in a thread, ``depth`` ahead of the consumer; re-raise its errors here."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
            buffer.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            buffer.put(_Failure(exc))

    thread = threading.Thread(target=produce, name="load-producer", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


@dataclass(frozen=True)
class _Failure:
    error: BaseException


def _store_summary(conn: Connection, built: LinesSummary, version: str) -> None:
    """Write the summary of a replace load's lines in the load's transaction, stamped with its ``version``."""
    create_daily(conn)
    conn.execute(delete(daily))
    rows = built.daily_rows
    if rows.num_rows and conn.dialect.name == "postgresql":
        copy = _CopyFormat.of(conn, daily.name, rows.column_names)
        copy.send(conn, next(copy.encode([rows]))[0], freeze=False, table=daily.name)
        conn.exec_driver_sql(f"ANALYZE {daily.name} ({', '.join(DIMENSIONS)})")
    elif rows.num_rows:
        _insert_chunk(conn, rows, table=daily.name)
    store_summary_meta(conn, version, built.values)


@dataclass(frozen=True)
class _CopyFormat:
    """How lines travel to PostgreSQL's COPY: its binary format when every column's type has an Arrow twin
    (about 30% less work for the server than parsing CSV, measured in docs/BENCHMARKS.md), else CSV."""

    columns: tuple[str, ...]
    #: The Arrow type of each column in binary format; None: CSV.
    binary: pa.Schema | None

    @classmethod
    def of(cls, conn: Connection, table: str, columns: Sequence[str]) -> _CopyFormat:
        """The format for ``columns`` of ``table`` as the database holds them (a seed-made table may differ)."""
        stored = {column["name"]: column["type"] for column in inspect(conn).get_columns(table)}
        types = [_arrow_twin(stored.get(name)) for name in columns]
        binary = None if None in types else pa.schema(list(zip(columns, types, strict=True)))
        return cls(tuple(columns), binary)

    def encode(self, chunks: Iterable[pa.Table]) -> Iterator[tuple[bytes, int]]:
        """Each chunk as one COPY's data, with its number of lines. :class:`LoadError` for a value that
        does not fit its column's type (a quantity beyond a 32-bit integer, say)."""
        for chunk in chunks:
            if self.binary is None:
                buffer = io.BytesIO()
                pacsv.write_csv(chunk.select(list(self.columns)), buffer, pacsv.WriteOptions(include_header=False))
                yield buffer.getvalue(), chunk.num_rows
                continue
            typed = pa.Table.from_arrays([_as_type(chunk.column(f.name), f) for f in self.binary],
                                         schema=self.binary)
            encoder = ArrowToPostgresBinaryEncoder(self.binary)
            parts = [encoder.write_header(), *(encoder.write_batch(batch) for batch in typed.to_batches()),
                     encoder.finish()]
            yield b"".join(parts), chunk.num_rows

    def send(self, conn: Connection, data: bytes, *, freeze: bool, table: str) -> None:
        """COPY one chunk's ``data`` into ``table``."""
        options = ["FORMAT binary" if self.binary is not None else "FORMAT csv"]
        if freeze:  # allowed (and it saves a later rewrite) only right after our TRUNCATE
            options.append("FREEZE true")
        cursor = driver_connection(conn).cursor()
        try:
            cursor.copy_expert(f"COPY {table} ({', '.join(self.columns)}) FROM STDIN WITH ({', '.join(options)})",
                               io.BytesIO(data), size=1 << 20)
        finally:
            cursor.close()


def _arrow_twin(type_: object) -> pa.DataType | None:
    """The Arrow type whose binary COPY form PostgreSQL reads into a column of SQL type ``type_``; None
    for a type without one here (unconstrained NUMERIC, time zones, JSON, ...)."""
    if isinstance(type_, sqltypes.Boolean):
        return pa.bool_()
    if isinstance(type_, sqltypes.Integer):  # BigInteger and SmallInteger are Integers too
        return pa.int64() if isinstance(type_, sqltypes.BigInteger) else \
            pa.int16() if isinstance(type_, sqltypes.SmallInteger) else pa.int32()
    if isinstance(type_, sqltypes.Float):  # REAL, or DOUBLE PRECISION (a FLOAT's default)
        single = isinstance(type_, sqltypes.REAL) or (type_.precision is not None and type_.precision <= 24)
        return pa.float32() if single else pa.float64()
    if isinstance(type_, sqltypes.Numeric):
        precision, scale = type_.precision, type_.scale
        return pa.decimal128(precision, scale) if precision and scale is not None and precision <= 38 else None
    if isinstance(type_, sqltypes.DateTime):
        return None if type_.timezone else pa.timestamp("us")
    if isinstance(type_, sqltypes.Date):
        return pa.date32()
    if isinstance(type_, sqltypes.String) and not isinstance(type_, sqltypes.Enum):
        return pa.string()
    return None


def _as_type(values: pa.ChunkedArray, target: pa.Field) -> pa.ChunkedArray:
    """``values`` as ``target``'s type. Binary numbers bound for a NUMERIC are rounded half away from zero
    at its scale, as PostgreSQL rounds the same numbers written out (0.125 -> 0.13)."""
    try:
        if pa.types.is_decimal(target.type) and pa.types.is_floating(values.type):
            rounded = half_away(values.to_numpy(zero_copy_only=False), target.type.scale)  # nulls: NaN
            values = pa.chunked_array([pa.array(rounded, from_pandas=True)])
        return pc.cast(values, target.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise LoadError(f"the {target.name} values do not fit the database's column ({exc})") from None


def _insert_chunk(conn: Connection, chunk: pa.Table, table: str = SALES_TABLE) -> None:
    """Insert the chunk's columns into the SQLite ``table``."""
    columns = []
    for column in chunk.columns:
        if pa.types.is_date(column.type):
            column = pc.cast(column, pa.string())  # SQLite keeps dates as ISO text
        elif pa.types.is_decimal(column.type):
            column = pc.cast(column, pa.float64())  # as SQLAlchemy stores a Numeric there
        columns.append(column.to_pylist())
    placeholders = ", ".join("?" for _ in chunk.column_names)
    cursor = driver_connection(conn).cursor()
    try:
        cursor.executemany(
            f"INSERT INTO {table} ({', '.join(chunk.column_names)}) VALUES ({placeholders})",
            zip(*columns, strict=True),
        )
    finally:
        cursor.close()
