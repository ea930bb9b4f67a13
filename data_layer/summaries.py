"""Summary tables rebuilt after every load, and the choice between them and the raw rows.

``bi_daily`` holds one row per day x region x segment x category x product
with additive partial aggregates (counts, sums, sums of powers and
cross-products), so revenue, orders, averages, moments and correlations under
any filter are sums over at most a few hundred thousand rows, whatever the
number of orders. ``bi_customers`` holds one row per customer x region x
segment, for customer counts and lifecycle figures when only region and
segment are filtered.

Each query names its measures; :class:`OrderSource` turns a measure into an
aggregate over the raw table or over ``bi_daily``. The summaries are used only
when they were built from the current data version, so answers always equal
the row-level answer; a database without them (e.g. one made by the seed's
pipeline) is read from the raw rows.
"""

from __future__ import annotations

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
    Index,
    Numeric,
    Select,
    String,
    Table,
    case,
    delete,
    func,
    insert,
    literal,
    select,
)

from data_layer.filters import Filters, conditions
from data_layer.meta import read_meta, write_meta
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

Aggregate = Callable[[object], ColumnElement]


PAIR_TERMS = ("n", "sx", "sy", "sxx", "syy", "sxy")


def _pair_sum(x: str, y: str, term: str, c) -> ColumnElement:  # noqa: ANN001 - a column collection
    """Sum of one term of Pearson's formula over the rows where both x and y are present."""
    values = {
        "n": literal(1),
        "sx": c[x],
        "sy": c[y],
        "sxx": c[x] * c[x],
        "syy": c[y] * c[y],
        "sxy": c[x] * c[y],
    }
    complete = c[x].isnot(None) & c[y].isnot(None)
    return func.sum(case((complete, values[term]), else_=0 if term == "n" else None))


def pair_measure(x: str, y: str, term: str) -> str:
    """The measure name of one term of the (x, y) correlation."""
    return f"{x}__{y}_{term}"


#: Additive measures: how each is aggregated over raw rows (a count or a sum).
ADDITIVE: dict[str, Aggregate] = {
    "orders": lambda c: func.count(),
    "units": lambda c: func.sum(c.quantity),
    "revenue": lambda c: func.sum(c.total_amount),
    "subtotal": lambda c: func.sum(c.subtotal),
    "discount_amount": lambda c: func.sum(c.discount_amount),
    "shipping_cost": lambda c: func.sum(c.shipping_cost),
    "discounted_orders": lambda c: func.sum(case((c.discount_rate > 0, 1), else_=0)),
    "discount_rate_sum": lambda c: func.sum(c.discount_rate),
    "satisfaction_sum": lambda c: func.sum(c.satisfaction_rating),
    "satisfaction_n": lambda c: func.count(c.satisfaction_rating),
    "revenue_p2": lambda c: func.sum(c.total_amount * c.total_amount),
    "revenue_p3": lambda c: func.sum(c.total_amount * c.total_amount * c.total_amount),
    "revenue_p4": lambda c: func.sum(c.total_amount * c.total_amount * c.total_amount * c.total_amount),
    **{
        pair_measure(x, y, term): partial(_pair_sum, x, y, term)
        for x, y in CORRELATION_PAIRS
        for term in PAIR_TERMS
    },
}
#: Measures aggregated with min / max.
EXTREMA: dict[str, tuple[Callable, Aggregate]] = {
    "revenue_min": (func.min, lambda c: func.min(c.total_amount)),
    "revenue_max": (func.max, lambda c: func.max(c.total_amount)),
}


def _measure_type(name: str):  # noqa: ANN202
    if name in ("orders", "discounted_orders") or name.endswith("_n"):
        return BigInteger
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

customers = Table(
    "bi_customers",
    metadata,
    Column("customer_id", String(50), nullable=False),
    Column("region", String(50)),
    Column("customer_segment", String(50)),
    Column("first_order_date", Date),
    Column("last_order_date", Date),
    Column("orders", BigInteger),
    Column("units", BigInteger),
    Column("revenue", Numeric(asdecimal=False)),
    Column("discount_amount", Numeric(asdecimal=False)),
    Column("satisfaction_sum", Numeric(asdecimal=False)),
    Column("satisfaction_n", BigInteger),
    Column("category_min", String(50)),
    Column("category_max", String(50)),
    Index("bi_customers_id", "customer_id"),
)

#: Per-customer aggregates over (filtered) raw rows, shared by both customer sources.
CUSTOMER_AGGREGATES: dict[str, Aggregate] = {
    "first_order_date": lambda c: func.min(c.order_date),
    "last_order_date": lambda c: func.max(c.order_date),
    "orders": lambda c: func.count(),
    "units": lambda c: func.sum(c.quantity),
    "revenue": lambda c: func.sum(c.total_amount),
    "discount_amount": lambda c: func.sum(c.discount_amount),
    "satisfaction_sum": lambda c: func.sum(c.satisfaction_rating),
    "satisfaction_n": lambda c: func.count(c.satisfaction_rating),
    "category_min": lambda c: func.min(c.category),
    "category_max": lambda c: func.max(c.category),
}
#: How the per-customer aggregates of bi_customers rows combine again.
_CUSTOMER_REAGGREGATE: dict[str, Callable] = {
    "first_order_date": func.min,
    "last_order_date": func.max,
    "category_min": func.min,
    "category_max": func.max,
}


def rebuild_summaries(engine: Engine) -> float:
    """Rebuild the summary tables from the raw rows in one transaction; return seconds taken.

    The new summaries are stamped with the data version they were built from.
    """
    started = time.perf_counter()
    with engine.begin() as conn:
        metadata.create_all(conn, tables=[daily, customers], checkfirst=True)
        version = read_meta(conn).get("data_version")
        conn.execute(delete(daily))
        conn.execute(delete(customers))
        c = sales.c
        dims = [c[name] for name in DIMENSIONS]
        daily_query = select(
            *dims,
            *[agg(c).label(name) for name, agg in ADDITIVE.items()],
            *[agg(c).label(name) for name, (_combine, agg) in EXTREMA.items()],
        ).group_by(*dims)
        conn.execute(insert(daily).from_select([*DIMENSIONS, *ADDITIVE, *EXTREMA], daily_query))
        keys = [c.customer_id, c.region, c.customer_segment]
        customer_query = select(
            *keys, *[agg(c).label(name) for name, agg in CUSTOMER_AGGREGATES.items()]
        ).group_by(*keys)
        conn.execute(
            insert(customers).from_select(
                ["customer_id", "region", "customer_segment", *CUSTOMER_AGGREGATES], customer_query
            )
        )
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE bi_daily")
            conn.exec_driver_sql("ANALYZE bi_customers")
        write_meta(conn, {"summary_version": version or ""})
    seconds = time.perf_counter() - started
    log.info("Summary tables rebuilt in %.2f s", seconds)
    return seconds


def summaries_are_current(conn: Connection) -> bool:
    """True when the summaries were built from the current data version."""
    meta = read_meta(conn)
    version = meta.get("data_version")
    return bool(version) and meta.get("summary_version") == version


@dataclass(frozen=True)
class OrderSource:
    """Where order-level measures come from: the raw table or ``bi_daily``."""

    table: Table
    summary: bool

    def measure(self, name: str) -> ColumnElement:
        """The aggregate for measure ``name`` (0 instead of NULL for sums over no rows)."""
        if name in EXTREMA:
            combine, aggregate = EXTREMA[name]
            return combine(self.table.c[name]) if self.summary else aggregate(self.table.c)
        expr = func.sum(self.table.c[name]) if self.summary else ADDITIVE[name](self.table.c)
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
    """``bi_daily`` when it is current, else the raw sales table."""
    if summaries_are_current(conn):
        return OrderSource(daily, summary=True)
    return OrderSource(sales, summary=False)


def customer_rows(conn: Connection, filters: Filters) -> Select:
    """One row per customer with their aggregates over the filtered orders (a subquery).

    From ``bi_customers`` when it is current and only region and segment are
    filtered (the per-customer table cannot split by date or product);
    otherwise from the raw rows.
    """
    if _customer_summary_usable(conn, filters):
        c = customers.c
        columns = [
            _CUSTOMER_REAGGREGATE.get(name, func.sum)(c[name]).label(name) for name in CUSTOMER_AGGREGATES
        ]
        return (
            select(c.customer_id, *columns)
            .where(conditions(filters, customers))
            .group_by(c.customer_id)
        )
    c = sales.c
    return (
        select(c.customer_id, *[agg(c).label(name) for name, agg in CUSTOMER_AGGREGATES.items()])
        .where(conditions(filters, sales))
        .group_by(c.customer_id)
    )


def distinct_customers(conn: Connection, filters: Filters, by: str | None = None) -> Select:
    """``count(DISTINCT customer_id)`` under the filters, optionally per dimension ``by``."""
    usable = _customer_summary_usable(conn, filters) and (by is None or by in customers.c)
    table = customers if usable else sales
    keys = (table.c[by],) if by else ()
    query = select(*keys, func.count(func.distinct(table.c.customer_id)).label("customers")).where(
        conditions(filters, table)
    )
    return query.group_by(*keys) if keys else query



def _customer_summary_usable(conn: Connection, filters: Filters) -> bool:
    """bi_customers answers exactly only when no date, category or product is filtered."""
    customer_level = filters.start is None and filters.end is None and not (
        filters.categories or filters.products
    )
    return customer_level and summaries_are_current(conn)
