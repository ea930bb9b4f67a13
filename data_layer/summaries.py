"""The summary table rebuilt after every load, and the choice between it and the raw rows.

``bi_daily`` holds one row per day x region x segment x category x product
with additive partial aggregates (counts, sums, sums of powers and
cross-products), so revenue, orders, averages, moments and correlations under
any filter are sums over at most a few hundred thousand rows, whatever the
number of orders. Customer-level figures (distinct customers, lifecycle,
cohorts) cannot be added up across days and are computed from the raw rows.

Each query names its measures; :class:`OrderSource` turns a measure into an
aggregate over the raw table or over ``bi_daily``. The summary is used only
when it was built from the current data version, so answers always equal
the row-level answer; a database without them (e.g. one made by the seed's
pipeline) is read from the raw rows.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Date,
    Engine,
    Double,
    Index,
    Numeric,
    Select,
    String,
    Table,
    case,
    cast,
    delete,
    func,
    insert,
    select,
)

from data_layer.filters import LIST_PARAMETERS, Filters, conditions
from data_layer.meta import has_multi_line_orders, read_meta, write_meta
from data_layer.schema import metadata, sales

log = logging.getLogger(__name__)

DIMENSIONS = ("order_date", "region", "customer_segment", "category", "product")
#: Numeric columns whose correlation with total_amount the analytics report.
CORRELATED = (
    "quantity",
    "unit_price",
    "subtotal",
    "discount_rate",
    "discount_amount",
    "shipping_cost",
    "satisfaction_rating",
)
#: (x, y) pairs whose Pearson correlation can be computed from the summary.
CORRELATION_PAIRS: tuple[tuple[str, str], ...] = tuple((x, "total_amount") for x in CORRELATED) + (
    ("discount_rate", "subtotal"),
)

PAIR_TERMS = ("n", "sx", "sy", "sxx", "syy", "sxy")


class Rows:
    """What a measure is computed over: exact columns, their float versions, and which have no NULLs.

    Powers and cross-products are taken in double precision: exact decimal
    arithmetic buys nothing for moments and correlations and would dominate
    the rebuild time.
    """

    def __init__(self, columns, floats=None, complete: frozenset[str] = frozenset()) -> None:  # noqa: ANN001
        self.columns = columns
        self.floats = floats
        self.complete = complete

    def col(self, name: str) -> ColumnElement:
        return self.columns[name]

    def f(self, name: str) -> ColumnElement:
        return self.floats[name] if self.floats is not None else cast(self.columns[name], Double)


Aggregate = Callable[[Rows], ColumnElement]


def _pair_sum(x: str, y: str, term: str, rows: Rows) -> ColumnElement:
    """Sum of one term of Pearson's formula over the rows where both x and y are present."""
    fx, fy = rows.f(x), rows.f(y)
    if {x, y} <= rows.complete:
        values = {"sx": fx, "sy": fy, "sxx": fx * fx, "syy": fy * fy, "sxy": fx * fy}
        return func.count() if term == "n" else func.sum(values[term])
    # x * 0 is NULL where x is NULL: each term skips the rows missing either value.
    values = {"sx": fx + fy * 0, "sy": fy + fx * 0, "sxx": fx * fx + fy * 0, "syy": fy * fy + fx * 0, "sxy": fx * fy}
    return func.count(fx * fy) if term == "n" else func.sum(values[term])


def pair_measure(x: str, y: str, term: str) -> str:
    """The measure name of one term of the (x, y) correlation."""
    return f"{x}__{y}_{term}"


def _power_sum(power: int, rows: Rows) -> ColumnElement:
    total = rows.f("total_amount")
    product = total
    for _ in range(power - 1):
        product = product * total
    return func.sum(product)


#: Additive measures: how each is aggregated over rows (a count or a sum).
ADDITIVE: dict[str, Aggregate] = {
    "orders": lambda r: func.count(),
    "units": lambda r: func.sum(r.col("quantity")),
    "revenue": lambda r: func.sum(r.col("total_amount")),
    "subtotal": lambda r: func.sum(r.col("subtotal")),
    "discount_amount": lambda r: func.sum(r.col("discount_amount")),
    "shipping_cost": lambda r: func.sum(r.col("shipping_cost")),
    "discounted_orders": lambda r: func.sum(case((r.col("discount_rate") > 0, 1), else_=0)),
    "discount_rate_sum": lambda r: func.sum(r.col("discount_rate")),
    "satisfaction_sum": lambda r: func.sum(r.col("satisfaction_rating")),
    "satisfaction_n": lambda r: func.count(r.col("satisfaction_rating")),
    "revenue_p2": partial(_power_sum, 2),
    "revenue_p3": partial(_power_sum, 3),
    "revenue_p4": partial(_power_sum, 4),
    **{
        pair_measure(x, y, term): partial(_pair_sum, x, y, term)
        for x, y in CORRELATION_PAIRS
        for term in PAIR_TERMS
    },
}
#: Measures aggregated with min / max.
EXTREMA: dict[str, tuple[Callable, Aggregate]] = {
    "revenue_min": (func.min, lambda r: func.min(r.col("total_amount"))),
    "revenue_max": (func.max, lambda r: func.max(r.col("total_amount"))),
}
_FLOAT_COLUMNS = tuple(sorted({name for pair in CORRELATION_PAIRS for name in pair}))


def _measure_type(name: str):  # noqa: ANN202
    if name in ("orders", "discounted_orders") or name.endswith("_n"):
        return BigInteger
    if name.startswith("revenue_p") or "__" in name:
        return Double
    return Numeric(asdecimal=False)


daily = Table(
    "bi_daily",
    metadata,
    Column("order_date", Date, nullable=False),
    Column("region", String(50)),
    Column("customer_segment", String(50)),
    Column("category", String(50)),
    Column("product", String(50)),
    *[Column(name, _measure_type(name)) for name in [*ADDITIVE, *EXTREMA]],
    Index("bi_daily_date", "order_date"),
)

#: Per-customer aggregates over the filtered raw rows.
CUSTOMER_AGGREGATES: dict[str, Callable] = {
    "first_order_date": lambda c: func.min(c.order_date),
    "last_order_date": lambda c: func.max(c.order_date),
    "orders": lambda c: func.count(func.distinct(c.order_id)),  # an order may have several lines
    "units": lambda c: func.sum(c.quantity),
    "revenue": lambda c: func.sum(c.total_amount),
    "discount_amount": lambda c: func.sum(c.discount_amount),
    "satisfaction_sum": lambda c: func.sum(c.satisfaction_rating),
    "satisfaction_n": lambda c: func.count(c.satisfaction_rating),
    "category_min": lambda c: func.min(c.category),
    "category_max": lambda c: func.max(c.category),
}


def rebuild_summaries(engine: Engine) -> float:
    """Rebuild ``bi_daily`` from the raw rows in one transaction; return the seconds taken.

    The new summary is stamped with the data version it was built from. While some
    order has several lines the summary is never read (see :func:`order_source`), so
    it is left empty and only the filter values are stored.
    """
    started = time.perf_counter()
    with engine.begin() as conn:
        metadata.create_all(conn, tables=[daily], checkfirst=True)
        if engine.dialect.name == "postgresql":
            # A batch job: no app statement timeout; room to hash the ~100k groups in memory.
            conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
            conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
        version = read_meta(conn).get("data_version")
        conn.execute(delete(daily))
        if has_multi_line_orders(conn):
            values = dimension_values(conn, OrderSource(sales, summary=False))
        else:
            _fill_daily(conn)
            values = dimension_values(conn, OrderSource(daily, summary=True))
        write_meta(conn, {"summary_version": version or "", "dimension_values": json.dumps(values)})
    seconds = time.perf_counter() - started
    log.info("Summary table rebuilt in %.2f s", seconds)
    return seconds


def _fill_daily(conn: Connection) -> None:
    """Aggregate the raw rows into ``bi_daily`` (emptied by the caller)."""
    c = sales.c
    # Each column is cast to float once, in a subquery, not once per measure (a cast from
    # NUMERIC is costly): OFFSET 0 keeps the database from merging the subquery into the
    # aggregate, which would repeat every cast in each measure (2.8x slower at 1M rows).
    rows_in = select(
        *[c[name] for name in DIMENSIONS],
        *[c[name] for name in SALES_MEASURE_COLUMNS],
        *[cast(c[name], Double).label(f"f_{name}") for name in _FLOAT_COLUMNS],
    ).offset(0).subquery()
    floats = {name: rows_in.c[f"f_{name}"] for name in _FLOAT_COLUMNS}
    rows = Rows(rows_in.c, floats, complete=_columns_without_nulls(conn, _FLOAT_COLUMNS))
    dims = [rows_in.c[name] for name in DIMENSIONS]
    query = select(
        *dims,
        *[agg(rows).label(name) for name, agg in ADDITIVE.items()],
        *[agg(rows).label(name) for name, (_combine, agg) in EXTREMA.items()],
    ).group_by(*dims)
    conn.execute(insert(daily).from_select([*DIMENSIONS, *ADDITIVE, *EXTREMA], query))
    if conn.dialect.name == "postgresql":
        # Statistics on what queries filter and group by; the ~70 measure columns need none.
        conn.exec_driver_sql(f"ANALYZE bi_daily ({', '.join(DIMENSIONS)})")


SALES_MEASURE_COLUMNS = (
    "quantity",
    "total_amount",
    "subtotal",
    "discount_amount",
    "shipping_cost",
    "discount_rate",
    "satisfaction_rating",
)


def _columns_without_nulls(conn: Connection, names: tuple[str, ...]) -> frozenset[str]:
    counts = conn.execute(
        select(*[(func.count() - func.count(sales.c[name])).label(name) for name in names])
    ).one()._mapping
    return frozenset(name for name in names if counts[name] == 0)


def dimension_values(conn: Connection, source: "OrderSource") -> dict[str, list[str]]:
    """The distinct values of each list filter (query parameter -> sorted values)."""
    values: dict[str, list[str]] = {}
    for parameter, (_name, column_name) in LIST_PARAMETERS.items():
        column = source.column(column_name)
        rows = conn.execute(select(column).where(column.isnot(None)).distinct())
        values[parameter] = sorted(str(v) for (v,) in rows)
    return values


def stored_dimension_values(conn: Connection) -> dict[str, list[str]] | None:
    """The values stored by the last summary rebuild, when the summary is current."""
    meta = read_meta(conn)
    if not (meta.get("data_version") and meta.get("summary_version") == meta.get("data_version")):
        return None
    raw = meta.get("dimension_values")
    return json.loads(raw) if raw else None


def summaries_are_current(conn: Connection) -> bool:
    """True when the summary was built from the current data version."""
    meta = read_meta(conn)
    version = meta.get("data_version")
    return bool(version) and meta.get("summary_version") == version


@dataclass(frozen=True)
class OrderSource:
    """Where order-level measures come from: the raw table or ``bi_daily``.

    With ``distinct_orders`` (some order has several lines) the raw rows are
    lines, and ``orders`` counts distinct order ids.
    """

    table: Table
    summary: bool
    distinct_orders: bool = False

    def measure(self, name: str) -> ColumnElement:
        """The aggregate for measure ``name`` (0 instead of NULL for sums over no rows)."""
        if name == "orders" and self.distinct_orders:
            return func.count(func.distinct(self.table.c.order_id))
        if name in EXTREMA:
            combine, aggregate = EXTREMA[name]
            return combine(self.table.c[name]) if self.summary else aggregate(Rows(self.table.c))
        expr = func.sum(self.table.c[name]) if self.summary else ADDITIVE[name](Rows(self.table.c))
        return func.coalesce(expr, 0)

    def select(self, filters: Filters, *names: str, by: tuple[ColumnElement, ...] = ()) -> Select:
        """``SELECT <by>, <measures> WHERE <filters> GROUP BY <by>``."""
        query = select(*by, *[self.measure(n).label(n) for n in names]).where(
            conditions(filters, self.table)
        )
        return query.group_by(*by) if by else query

    def column(self, name: str) -> ColumnElement:
        """A dimension column of the source (``order_date``, ``region``, ...)."""
        return self.table.c[name]


def order_source(conn: Connection) -> OrderSource:
    """``bi_daily`` when it is current and every order has one line, else the raw sales table.

    (Orders of several lines cannot be counted by adding up per-product groups:
    one order would count once per product.)
    """
    if has_multi_line_orders(conn):
        return OrderSource(sales, summary=False, distinct_orders=True)
    if summaries_are_current(conn):
        return OrderSource(daily, summary=True)
    return OrderSource(sales, summary=False)


def customer_rows(filters: Filters) -> Select:
    """One row per customer with their aggregates over the filtered orders (for a subquery)."""
    c = sales.c
    return (
        select(c.customer_id, *[agg(c).label(name) for name, agg in CUSTOMER_AGGREGATES.items()])
        .where(conditions(filters, sales), c.customer_id.isnot(None))  # guests are no customer
        .group_by(c.customer_id)
    )


def distinct_customers(filters: Filters, by: str | None = None) -> Select:
    """The number of distinct customers under the filters, optionally per dimension ``by``.

    Written as a GROUP BY in a subquery rather than ``count(DISTINCT ...)``:
    PostgreSQL hashes (or reads an index in order) instead of sorting per group.
    """
    keys = [sales.c[by]] if by else []
    pairs = (
        select(*keys, sales.c.customer_id)
        .where(conditions(filters, sales), sales.c.customer_id.isnot(None))
        .group_by(*keys, sales.c.customer_id)
        .subquery()
    )
    outer_keys = [pairs.c[by]] if by else []
    query = select(*outer_keys, func.count().label("customers")).select_from(pairs)
    return query.group_by(*outer_keys) if outer_keys else query
