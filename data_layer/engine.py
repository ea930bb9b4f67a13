"""One SQLAlchemy engine per process, built from a URL, and safe ways to show it.

Dialect differences are explicit flags (:func:`is_postgres`). Under gunicorn
the engine is created lazily in each worker (the cache key includes the pid),
so no connection is shared across a fork.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import CursorResult, Executable, Row, create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

_engines: dict[tuple[str, int, int, int], Engine] = {}
_lock = threading.Lock()
log = logging.getLogger(__name__)


class DatabaseError(RuntimeError):
    """A database problem, described in one line with no password in it."""


class DatabaseSlowError(DatabaseError, SQLAlchemyError):
    """The database does not answer in the time allowed right now (a lock held by a long operation, an
    overloaded server): a :class:`DatabaseError` that callers catching SQLAlchemy's errors see too."""


#: Milliseconds an app query waits for a lock (a load replacing the table, an operator's ALTER TABLE) before
#: it gives up: "the database is slow", rather than a server thread held for the whole statement timeout.
#: Loads and summary builds lift it for their own transaction.
LOCK_TIMEOUT_MS = 5_000

#: PostgreSQL's codes for a statement cancelled by ``statement_timeout`` and by ``lock_timeout``.
_TIMEOUT_CODES = ("57014", "55P03")


def is_timeout(exc: BaseException) -> bool:
    """True when ``exc`` is a statement the database cancelled for taking too long (or our own
    :class:`DatabaseSlowError`), as opposed to a database that cannot be reached or a bad query."""
    return isinstance(exc, DatabaseSlowError) or getattr(getattr(exc, "orig", None), "pgcode", None) in _TIMEOUT_CODES


def safe_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def is_postgres(engine_or_url: Engine | str) -> bool:
    """True when the engine (or URL) talks to PostgreSQL."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "postgresql"


def get_engine(url: str, *, statement_timeout_ms: int = 30_000, connect_timeout_s: int = 5) -> Engine:
    """The process's engine for ``url``, created on first use (and again after a fork)."""
    key = (url, os.getpid(), statement_timeout_ms, connect_timeout_s)
    engine = _engines.get(key)
    if engine is None:
        with _lock:
            engine = _engines.get(key)
            if engine is None:
                engine = make_engine(
                    url, statement_timeout_ms=statement_timeout_ms, connect_timeout_s=connect_timeout_s
                )
                _engines[key] = engine
    return engine


def make_engine(url: str, *, statement_timeout_ms: int = 30_000, connect_timeout_s: int = 5) -> Engine:
    """Create a new engine with the app's guards (timeouts, pre-ping, SQLite pragmas)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError("the database URL cannot be parsed") from None
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            # SQLAlchemy 2.1 defaults to psycopg 3; we ship psycopg2 (COPY via copy_expert).
            parsed = parsed.set(drivername="postgresql+psycopg2")
        connect_args: dict[str, object] = {"connect_timeout": connect_timeout_s}
        if statement_timeout_ms:
            # Keep libpq options given in the URL (e.g. a search_path) beside our timeout.
            given = parsed.query.get("options", "")
            given = given if isinstance(given, str) else " ".join(given)
            lock_timeout_ms = min(int(statement_timeout_ms), LOCK_TIMEOUT_MS)
            connect_args["options"] = (f"{given} -c statement_timeout={int(statement_timeout_ms)} "
                                       f"-c lock_timeout={lock_timeout_ms}").strip()
        return create_engine(
            parsed, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=connect_args
        )
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    raise DatabaseError(f"unsupported database backend {parsed.get_backend_name()!r}")


def _sqlite_on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI hook
    # The sqlite3 driver's own transaction handling skips DDL; take it over so
    # that `engine.begin()` is one real transaction, schema changes included.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers go on while a load writes; NORMAL sync is safe with WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_on_begin(conn) -> None:  # noqa: ANN001 - SQLAlchemy hook
    conn.exec_driver_sql("BEGIN")


#: A read slower than this is logged at INFO with its time (every read at DEBUG).
SLOW_READ_S = 1.0
#: The most rows :func:`rows` hands over: a read past it is a runaway (a breakdown by a column with
#: a value per line, say), refused before it fills the server's memory.
ROW_CAP = 1_000_000


class TooManyRowsError(ValueError):
    """A read would hand over more rows than :data:`ROW_CAP`."""


def run(conn: Connection, statement: Executable, parameters: Mapping[str, Any] | None = None) -> CursorResult:
    """Execute the read ``statement`` on ``conn``: the one door the app's reads go through.

    The statement timeout is the connection's (``BI_STATEMENT_TIMEOUT_MS``, set by :func:`make_engine`;
    a columnar snapshot's reads are local); each read is timed for the logs."""
    started = time.perf_counter()
    result = conn.execute(statement, parameters)
    log_read(conn, statement, time.perf_counter() - started)
    return result


def log_read(conn: Connection, statement: object, seconds: float) -> None:
    """Log a read's time: at INFO past :data:`SLOW_READ_S`, else at DEBUG."""
    level = logging.INFO if seconds >= SLOW_READ_S else logging.DEBUG
    if log.isEnabledFor(level):
        log.log(level, "read on %s in %.3f s: %s", conn.dialect.name, seconds, " ".join(str(statement).split())[:300])


def rows(conn: Connection, statement: Executable, cap: int = ROW_CAP) -> Sequence[Row]:
    """The rows of the read ``statement``; :class:`TooManyRowsError` past ``cap`` of them."""
    fetched = run(conn, statement).fetchmany(cap + 1)
    if len(fetched) > cap:
        raise TooManyRowsError(f"the answer would have more than {cap:,} rows: narrow the filters")
    return fetched


def driver_connection(conn: Connection) -> Any:
    """The driver's own connection under ``conn`` (psycopg2's, DuckDB's, sqlite3's), for what SQLAlchemy has
    no call for: COPY, bulk inserts, DuckDB's columnar results."""
    driver = conn.connection.driver_connection
    if driver is None:
        raise RuntimeError("the connection is closed")
    return driver


def ping(engine: Engine) -> None:
    """Run ``SELECT 1``; raise :class:`DatabaseError` with a one-line reason if it fails."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise DatabaseError(
            describe_error(exc, engine.url.render_as_string(hide_password=False))
        ) from exc


def describe_error(exc: BaseException, url: str | None = None) -> str:
    """One line saying what went wrong, with the SQL, driver noise and any password removed."""
    orig = getattr(exc, "orig", None) or exc
    message = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if url:
        try:
            password = make_url(url).password
        except ArgumentError:
            password = None
        if password:
            message = message.replace(str(password), "***")
    where = f" ({safe_url(url)})" if url else ""
    return f"{message}{where}"
