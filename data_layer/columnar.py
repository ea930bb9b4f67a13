"""A columnar read replica of the orders: a DuckDB snapshot per data version, built by each app server.

Customer-level analytics (distinct customers, lifecycle, cohorts) and exact
quantiles need every matching order; a row store scans them at a few million
rows a second, DuckDB at hundreds of millions. Each app server keeps a
snapshot of the current data version under ``<data dir>/columnar/``: the
orders (sorted by date, so date filters skip most of the file), the summary
table and the metadata, copied from the database. It is built in a background
thread when a request first sees a new data version; until it is ready,
queries go to the database as before, so answers never depend on it.

The same SQLAlchemy Core queries run on it (through duckdb_engine), so there
is one implementation of each analysis. The answers for the default views
(no filter) are computed while the snapshot is built and stored in it, so the
first visitor of a new data version is answered at once.
"""

from __future__ import annotations

import csv
import fcntl
import logging
import os
import pickle
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
from sqlalchemy import (
    Column,
    Connection,
    Date,
    Engine,
    Integer,
    Numeric,
    String,
    TypeDecorator,
    create_engine,
    func,
    inspect,
    literal_column,
    select,
    text,
    type_coerce,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool, StaticPool

from data_layer.engine import describe_error, driver_connection, is_postgres, run
from data_layer.meta import (
    StoredFacts,
    changed_rows,
    data_version,
    read_meta,
    scan_stored_lines,
    stored_columns,
)
from data_layer.schema import METADATA_TABLE, SALES_COLUMNS, SALES_TABLE, sales
from data_layer.summaries import daily, fill_summary, rebuild_summaries

log = logging.getLogger(__name__)

#: Answers computed when the snapshot is built (the default views), by key.
RESULTS_TABLE = "bi_precomputed"
#: After a failed build, the next attempt waits this long (the database answers meanwhile).
RETRY_AFTER_S = 60

#: What a table made by the seed (or an older version) holds in the columns it lacks.
MISSING_COLUMN_VALUES = {"line_number": "1", "line_type": "'sale'", "refunded_amount": "0"}

def _duck_type(column: Column) -> str:
    """The DuckDB type of one of the orders' columns: money stays an exact decimal, with two more digits
    than the schema's (a table made by another tool may hold larger numbers than ours would)."""
    kind = column.type.impl_instance if isinstance(column.type, TypeDecorator) else column.type
    if isinstance(kind, Numeric) and kind.precision is not None:
        return f"DECIMAL({kind.precision + 2},{kind.scale or 0})"
    if isinstance(kind, String):
        return "VARCHAR"
    if isinstance(kind, Date):
        return "DATE"
    if isinstance(kind, Integer):
        return "INTEGER"
    raise TypeError(f"no DuckDB type for {column.name} ({kind})")


#: DuckDB column types of the snapshot, from the schema.
_DUCK_TYPES = {column.name: _duck_type(column) for column in sales.columns}


class ColumnarReplica:
    """The snapshots of one source database, kept in ``folder``; thread-safe."""

    def __init__(
        self,
        source: Engine,
        folder: Path,
        memory_limit: str = "2GB",
        precompute: Callable[[Engine, str], dict[str, Any]] | None = None,
        build_command: tuple[list[str], dict[str, str]] | None = None,
    ) -> None:
        self.source = source
        self.folder = folder
        self.memory_limit = memory_limit
        self.precompute = precompute
        # (argv, environment) of a process that builds the current version's snapshot;
        # without one, background builds run in a thread of this process.
        self.build_command = build_command
        self._engines: dict[str, Engine] = {}
        self._building: set[str] = set()
        self._failed_at: dict[str, float] = {}
        self._failures: dict[str, str] = {}  # version -> why its last build failed
        self._precomputed_keys: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def engine_for(self, version: str | None) -> Engine | None:
        """A read-only engine on the snapshot of ``version``, or None (and a build starts) if not ready."""
        if not version:
            return None
        with self._lock:
            engine = self._engines.get(version)
            if engine is not None:
                return engine
            path = self.path(version)
            if path.exists():
                engine = self._open(path)
                self._engines[version] = engine
                return engine
            failed = self._failed_at.get(version)
            retry_due = failed is None or time.monotonic() - failed > RETRY_AFTER_S
            if version not in self._building and retry_due:
                self._building.add(version)
                threading.Thread(target=self._build_in_background, args=(version,), daemon=True,
                                 name=f"columnar-{version[:8]}").start()
        return None

    def status(self, version: str | None) -> str:
        """``ready``, ``building``, ``failed`` (its last build; :meth:`failure` says why; retried
        after ``RETRY_AFTER_S``) or ``absent`` for the snapshot of ``version``."""
        if version and self.path(version).exists():
            return "ready"
        with self._lock:
            if version in self._building:
                return "building"
            return "failed" if version in self._failures else "absent"

    def failure(self, version: str | None) -> str | None:
        """Why the last build of ``version``'s snapshot failed (one line), or None."""
        with self._lock:
            return self._failures.get(version) if version else None

    def path(self, version: str) -> Path:
        """Where the snapshot of ``version`` lives."""
        return self.folder / f"{version}.duckdb"

    def build(self, version: str) -> Path:
        """Build the snapshot of ``version`` now (no-op if it exists); return its path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per folder, across worker processes
            path = self.path(version)
            if path.exists():
                return path
            started = time.perf_counter()
            partial = path.with_suffix(".partial")
            partial.unlink(missing_ok=True)
            built_version = build_snapshot(self.source, partial, self.memory_limit)
            if built_version != version:
                partial.unlink(missing_ok=True)
                raise RuntimeError(f"data changed to version {built_version} during the snapshot of {version}")
            if self.precompute:
                self._store_precomputed(partial, version)
            os.replace(partial, path)
            self._remove_old(keep=path)
            log.info("Columnar snapshot of data version %s built in %.1f s", version, time.perf_counter() - started)
            return path

    def precomputed(self, version: str | None, key: str) -> Any | None:
        """The answer stored under ``key`` in the snapshot of ``version``, if there is one."""
        engine = self.engine_for(version) if version else None
        if engine is None or version is None:
            return None
        keys = self._precomputed_keys.get(version)
        if keys is None:
            with engine.connect() as conn:
                has_results = inspect(conn).has_table(RESULTS_TABLE)
                keys = {k for (k,) in run(conn, text(f"SELECT key FROM {RESULTS_TABLE}"))} if has_results else set()
            self._precomputed_keys[version] = keys
        if key not in keys:
            return None
        with engine.connect() as conn:
            row = run(conn, text(f"SELECT payload FROM {RESULTS_TABLE} WHERE key = :key"), {"key": key}).first()
        return pickle.loads(row[0]) if row else None  # our own file, written by build()

    def _store_precomputed(self, partial: Path, version: str) -> None:
        if self.precompute is None:
            return
        engine = create_engine(f"duckdb:///{partial}", poolclass=NullPool)
        try:
            results = self.precompute(engine, version)
            with engine.begin() as conn:
                conn.execute(text(f"CREATE TABLE {RESULTS_TABLE} (key VARCHAR PRIMARY KEY, payload BLOB NOT NULL)"))
                for key, value in results.items():
                    conn.execute(text(f"INSERT INTO {RESULTS_TABLE} VALUES (:key, :payload)"),
                                 {"key": key, "payload": pickle.dumps(value)})
        finally:
            engine.dispose()

    def close(self) -> None:
        """Dispose every open snapshot engine."""
        with self._lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def _open(self, path: Path) -> Engine:
        # Pooled: opening a DuckDB connection costs ~15 ms, a checkout well under 1 ms.
        return create_engine(
            f"duckdb:///{path}",
            connect_args={"read_only": True, "config": {"memory_limit": self.memory_limit,
                                                        "temp_directory": str(path.parent / ".tmp")}},
            pool_size=4,
            max_overflow=8,
        )

    def _build_in_background(self, version: str) -> None:
        try:
            if self.build_command:
                # A process of its own: the copy's memory is returned when it exits.
                argv, env = self.build_command
                done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600)
                if done.returncode != 0:
                    last_line = ((done.stderr or done.stdout).strip().splitlines() or [""])[-1]
                    raise RuntimeError(last_line or f"the snapshot process exited with {done.returncode}")
            else:
                self.build(version)
            with self._lock:
                self._failures.pop(version, None)
        except Exception as exc:  # noqa: BLE001 - the database keeps answering meanwhile
            reason = describe_error(exc)
            if self.source.url.password:
                reason = reason.replace(str(self.source.url.password), "***")
            with self._lock:
                repeated = self._failures.get(version) == reason
                self._failures[version] = reason
                self._failed_at[version] = time.monotonic()
            # Once per reason: a retry that fails the same way adds nothing to the log.
            log.log(logging.DEBUG if repeated else logging.WARNING,
                    "Columnar snapshot of %s not built (retried every %d s; queries use the database): %s",
                    version, RETRY_AFTER_S, reason)
        finally:
            with self._lock:
                self._building.discard(version)

    def _remove_old(self, keep: Path) -> None:
        """Forget and delete the snapshots of older versions (queries still reading one keep
        their open file; the name goes, the data stays until they finish)."""
        with self._lock:
            for version in [v for v in self._engines if self.path(v) != keep]:
                self._engines.pop(version).dispose()
                self._precomputed_keys.pop(version, None)
        for old in self.folder.glob("*.duckdb"):
            if old != keep:
                old.unlink(missing_ok=True)


def build_snapshot(source: Engine, path: Path, memory_limit: str = "2GB") -> str | None:
    """Copy the orders, the summary table and the metadata of ``source`` into a DuckDB file.

    Everything is read in one repeatable-read transaction (on PostgreSQL), so the
    copy is of one data version; that version is returned. ``source`` should have
    no statement timeout: at millions of orders the copy takes a while.
    """
    with tempfile.NamedTemporaryFile("w+b", suffix=".csv", dir=path.parent) as orders_csv:
        # SQLite reads are already one snapshot inside a transaction.
        isolation = "REPEATABLE READ" if is_postgres(source) else "SERIALIZABLE"
        with source.connect().execution_options(isolation_level=isolation) as conn:
            # The version these rows are (another tool's change since the last load makes a new one).
            changed = changed_rows(conn, fresh=True)
            meta = {**read_meta(conn), "data_version": data_version(conn) or "",
                    "changed_rows": "" if changed is None else str(changed)}
            # The summary table when it was built from these rows; else (a table loaded by other tools, or
            # changed by them since) the snapshot builds its own.
            current = inspect(conn).has_table(daily.name) and meta.get("summary_version") == meta["data_version"]
            _export_orders(conn, orders_csv)
            summary = pd.read_sql(select(daily), conn) if current else None
        orders_csv.flush()
        # Beyond the memory limit DuckDB sorts on disk, beside the snapshot.
        duck = duckdb.connect(
            str(path), config={"memory_limit": memory_limit, "temp_directory": str(path.parent / ".tmp")}
        )
        try:
            columns = ", ".join(f"'{name}': '{kind}'" for name, kind in _DUCK_TYPES.items())
            duck.execute(
                # The dialect is ours (PostgreSQL's and Python's CSV), never sniffed from the data.
                f"CREATE TABLE {SALES_TABLE} AS SELECT * FROM read_csv(?, header = false, auto_detect = false, "
                f"delim = ',', quote = '\"', escape = '\"', columns = {{{columns}}}) ORDER BY order_date, order_id",
                [orders_csv.name],
            )
            # Counted in the rows copied, whatever the last load stamped: other tools may have added lines.
            [(several,)] = duck.execute(
                f"SELECT count(*) FROM (SELECT order_id FROM {SALES_TABLE} GROUP BY order_id HAVING count(*) > 1)"
            ).fetchall()
            meta["multi_line_orders"] = str(several)
            duck.execute(f"CREATE TABLE {METADATA_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
            if meta:
                duck.executemany(f"INSERT INTO {METADATA_TABLE} VALUES (?, ?)", list(meta.items()))
            if summary is not None:
                duck.register("summary_frame", summary)
                duck.execute(f"CREATE TABLE {daily.name} AS SELECT * FROM summary_frame")
            duck.execute("CHECKPOINT")
        finally:
            duck.close()
    if summary is None and meta["data_version"]:
        snapshot = create_engine(f"duckdb:///{path}", poolclass=NullPool)
        try:
            rebuild_summaries(snapshot)  # stamped with the version the snapshot's metadata holds
        finally:
            snapshot.dispose()
    return meta["data_version"] or None


def _export_orders(conn, target) -> None:  # noqa: ANN001
    """The orders as header-less CSV into the binary file ``target``."""
    # order_date as a date: tables made by other tools may hold timestamps; a table
    # without line numbers (seed-made, not loaded by us yet) has one line per order.
    stored = stored_columns(conn)
    computed = {"order_date": "CAST(order_date AS date)"} | {
        name: value for name, value in MISSING_COLUMN_VALUES.items() if name not in stored}
    columns = ", ".join(computed.get(n, n) for n in SALES_COLUMNS)
    if conn.dialect.name == "postgresql":
        cursor = driver_connection(conn).cursor()
        try:
            cursor.copy_expert(f"COPY (SELECT {columns} FROM {SALES_TABLE}) TO STDOUT WITH (FORMAT csv)", target)
        finally:
            cursor.close()
        return
    text = open(target.fileno(), "w", newline="", closefd=False)  # noqa: SIM115 - same descriptor
    writer = csv.writer(text)
    # The date part of what is stored: ISO dates, or timestamps written by other tools.
    day = type_coerce(func.substr(type_coerce(sales.c.order_date, String), 1, 10), String)
    selected = [day if n == "order_date" else sales.c[n] if n in stored else literal_column(MISSING_COLUMN_VALUES[n])
                for n in SALES_COLUMNS]
    result = conn.execution_options(yield_per=10_000).execute(select(*selected))
    for batch in result.partitions():
        writer.writerows(batch)
    text.flush()


@dataclass(frozen=True)
class LinesSummary:
    """What :class:`LoadSummary` found in a load's lines."""

    facts: StoredFacts
    #: The rows of ``bi_daily``.
    daily_rows: pa.Table
    #: The filter values (query parameter -> sorted values).
    values: dict[str, list[str]]
    seconds: float


class LoadSummary:
    """The summary of the lines a replace load writes, built in DuckDB from the lines as they stream by.

    A replace load's lines are the whole table, so their summary, made by the queries
    of :func:`data_layer.summaries.fill_summary` on DuckDB, is the one a rebuild from
    the stored table would make; the load writes it in its own transaction. The lines
    are copied into DuckDB as they pass to the database (what the summary reads of them),
    and summarised while the database builds its indexes: DuckDB takes about 0.3 s per
    million lines on one core, where PostgreSQL took 2.3 s after the load. Should DuckDB
    fail (short of memory, say), the database's rebuild after the load takes over. Orders
    of several lines leave ``bi_daily`` empty (see :func:`data_layer.summaries.fill_summary`):
    for them the loader stops the copy and lists the filter values after the load, from
    the table.
    """

    #: Columns the summary never reads (strings cost the most to copy); of ``customer_id`` it
    #: reads only whether a line has one.
    _UNREAD = ("order_id", "day_of_week", "quarter")
    #: Loads of fewer lines are summarised by the database after the load: as quick for them as
    #: setting DuckDB up (60 ms).
    MIN_LINES = 50_000
    #: DuckDB's memory for the copy and the summary; the copy goes to disk beyond it.
    MEMORY_LIMIT = "512MB"

    def __init__(self) -> None:
        self._pending: list[pa.Table] = []
        self._lines = 0
        self._conn: Connection | None = None
        self._failed = False

    @property
    def started(self) -> bool:
        """True once the load had lines enough for the summary to be built here (and DuckDB copes)."""
        return self._conn is not None and not self._failed

    def watch(self, chunks: Iterable[pa.Table], wanted: Callable[[], bool]) -> Iterator[pa.Table]:
        """Pass the chunks through, keeping what the summary reads of their lines while ``wanted()``."""
        for chunk in chunks:
            if wanted():
                self._keep(chunk)
            yield chunk

    def _keep(self, chunk: pa.Table) -> None:
        if self._failed:
            return
        try:
            self._copy(chunk)
        except duckdb.Error as exc:  # the database's rebuild after the load takes over
            self._failed = True
            log.warning("Summary not built with the load (%s); it is rebuilt after it", describe_error(exc))

    def _copy(self, chunk: pa.Table) -> None:
        self._lines += chunk.num_rows
        if self._conn is None:
            self._pending.append(chunk)
            if self._lines < self.MIN_LINES:
                return
            self._conn = self._start()
            chunks, self._pending = self._pending, []
        else:
            chunks = [chunk]
        duck = driver_connection(self._conn)
        for kept in chunks:
            duck.register("load_chunk", kept)
            try:
                duck.execute(self._insert)
            finally:
                duck.unregister("load_chunk")

    def _start(self) -> Connection:
        self._spill = tempfile.TemporaryDirectory(prefix="bi-load-summary-")
        config = {"memory_limit": self.MEMORY_LIMIT, "temp_directory": self._spill.name, "threads": 1}
        self._engine = create_engine("duckdb:///:memory:", poolclass=StaticPool, connect_args={"config": config})
        conn = self._engine.connect()
        kept = {name: kind for name, kind in _DUCK_TYPES.items() if name not in self._UNREAD}
        definitions = ", ".join(f"{name} {kind}" for name, kind in kept.items())
        driver_connection(conn).execute(f"CREATE TABLE {SALES_TABLE} ({definitions})")
        # Cast to the stored types (money exact) on the way in.
        columns = ", ".join("CASE WHEN customer_id IS NULL THEN NULL ELSE '' END" if name == "customer_id"
                            else name for name in kept)
        self._insert = f"INSERT INTO {SALES_TABLE} SELECT {columns} FROM load_chunk"
        return conn

    def build(self) -> LinesSummary | None:
        """Summarise the lines kept (all of the load's, of orders of one line each); None when
        DuckDB could not (short of memory, say), or the load had too few lines to start it: the
        database's rebuild after the load takes over."""
        started = time.perf_counter()
        conn = self._conn
        if conn is None:
            return None
        try:
            facts = scan_stored_lines(conn, ledger=True)
            daily.create(conn)
            values = fill_summary(conn, ledger=True, multi_line=False, facts=facts)
            rows = driver_connection(conn).sql(f"SELECT * FROM {daily.name}").arrow()
        except (duckdb.Error, SQLAlchemyError) as exc:
            log.warning("Summary not built with the load (%s); it is rebuilt after it", describe_error(exc))
            return None
        # DuckDB 1.x answers a table, 2.x a reader of its batches.
        rows = rows.read_all() if isinstance(rows, pa.RecordBatchReader) else rows
        return LinesSummary(facts, rows, values, time.perf_counter() - started)

    def close(self) -> None:
        self._pending = []
        if self._conn is not None:
            self._conn.close()
            self._engine.dispose()
            self._spill.cleanup()
