"""Small shared queries and dialect-portable SQL helpers."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date

import pandas as pd
from sqlalchemy import Connection, Date, Select, String, cast, func, inspect, select, type_coerce
from sqlalchemy.sql import ColumnElement

from data_layer.engine import driver_connection, log_read, run
from data_layer.filters import Filters, conditions
from data_layer.meta import stored_columns
from data_layer.quality import as_date
from data_layer.schema import SALES_TABLE, sales
from data_layer.summaries import OrderSource, order_source


def read_frame(conn: Connection, query: Select) -> pd.DataFrame:
    """The rows of ``query`` as a DataFrame, one column per selected label.

    On a columnar snapshot DuckDB hands its result over column by column (NumPy arrays), not
    as Python tuples: at 200,000 customers that is the difference between 0.1 s and 3 s.
    DECIMAL columns then arrive as floats, DATE columns as datetimes.
    """
    if conn.dialect.name != "duckdb":
        return pd.DataFrame(run(conn, query).all(), columns=list(query.selected_columns.keys()))
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    parameters = [compiled.params[name] for name in compiled.positiontup or ()]
    started = time.perf_counter()
    frame = driver_connection(conn).execute(compiled.string, parameters).df()
    log_read(conn, compiled.string, time.perf_counter() - started)
    return frame


def has_sales_data(conn: Connection) -> bool:
    """True when the sales table exists and holds at least one row."""
    if not inspect(conn).has_table(SALES_TABLE):
        return False
    return run(conn, select(sales.c.order_id).limit(1)).first() is not None


def date_bounds(conn: Connection, source: OrderSource, filters: Filters) -> tuple[date | None, date | None]:
    """First and last order date under ``filters`` (None, None when nothing matches)."""
    column = source.column("order_date")
    row = run(conn,
        select(
            type_coerce(func.min(column), String).label("lo"),
            type_coerce(func.max(column), String).label("hi"),
        ).where(conditions(filters, source.table))
    ).one()
    return as_date(row.lo), as_date(row.hi)


def month_key(conn: Connection, column: ColumnElement) -> ColumnElement:
    """``'YYYY-MM'`` of a date (or timestamp, or ISO text on SQLite) column."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return func.to_char(column, "YYYY-MM")
    if dialect == "duckdb":
        return func.strftime(column, "%Y-%m")
    return func.strftime("%Y-%m", column)


def days_between(conn: Connection, later: ColumnElement, earlier: ColumnElement) -> ColumnElement:
    """Whole days from ``earlier`` to ``later`` (dates, timestamps or ISO text)."""
    if conn.dialect.name in ("postgresql", "duckdb"):
        return cast(later, Date) - cast(earlier, Date)
    return func.julianday(later) - func.julianday(earlier)



#: The most rows one grid request may ask for.
MAX_PAGE_ROWS = 1000


def orders_page(
    conn: Connection, filters: Filters, *, offset: int, limit: int, sort: Sequence[tuple[str, bool]] = ()
) -> tuple[list[dict], int]:
    """One page of matching order lines (JSON-ready dicts) and how many match in all.

    ``sort`` is (column, descending) pairs; columns outside the table are ignored,
    and the key (order_id, line_number) always breaks ties so pages never overlap.
    """
    stored = stored_columns(conn)
    order_by = [sales.c[name].desc() if descending else sales.c[name].asc()
                for name, descending in sort if name in stored]
    key = [sales.c[name] for name in ("order_id", "line_number") if name in stored]
    limit = max(0, min(limit, MAX_PAGE_ROWS))
    page = run(conn,
        select(*[sales.c[name] for name in stored]).where(conditions(filters, sales)).order_by(*order_by, *key)
        .offset(max(0, offset)).limit(limit)
    ).mappings().all()
    source = order_source(conn)
    total = run(conn, source.select(filters, "lines")).scalar_one()
    return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()} for row in page], int(total)

