"""The summary table rebuilt after every load, and the choice between it and the raw rows.

``bi_daily`` holds one row per day x region x segment x category x product
with additive partial aggregates (counts, sums, sums of powers and
cross-products), so revenue, orders, averages, moments and correlations under
any filter are sums over at most a few hundred thousand rows, whatever the
number of orders. Customer-level figures (distinct customers, lifecycle,
cohorts) cannot be added up across days and are computed from the raw rows.

Money follows the ledger of :mod:`data_layer.schema` (see :class:`Ledger`):
``revenue`` is *net revenue* = gross sales - returns (returned and cancelled
lines, refunds) + adjustments and fees; ``orders`` counts orders with a sale
line of non-zero value; moments, extremes and correlations describe sale
lines (and, for the order-value distribution, orders). A table without the
ledger columns (seed-made, or loaded by an older version) holds sale lines only.

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
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Double,
    Engine,
    Index,
    Numeric,
    Select,
    String,
    Table,
    case,
    cast,
    delete,
    false,
    func,
    insert,
    inspect,
    literal,
    select,
    true,
)

from data_layer.engine import run
from data_layer.filters import LIST_PARAMETERS, Filters, conditions
from data_layer.meta import (
    StoredFacts,
    data_version,
    has_ledger,
    has_multi_line_orders,
    read_meta,
    scan_stored_lines,
    write_meta,
)
from data_layer.schema import DAY, TEXT_LIMIT, metadata, sales

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


#: The conditions of a table without the ledger columns: every line a sale, none a return.
_ALWAYS, _NEVER = true(), false()


class Ledger:
    """The money of a line, on a table with the ledger columns or without them (sale lines only).

    - ``sale``: a line of merchandise sold (zero or positive value);
    - ``counted``: a sale line of non-zero value (what makes an order an order);
    - ``returned``: a return or cancellation line (stored negative);
    - ``merchandise``: sale and return lines (not adjustments or fees);
    - ``adjustment``: adjustment and fee lines;
    - ``registered``: a line with a customer id (not a guest's);
    - ``net``: the line's amount less what was refunded of it.

    ``coded``: ``columns`` holds the line's kind as the small integer ``kind`` and ``counted`` and
    ``registered`` as booleans (see :meth:`coded_columns`), worked out once per row: comparing the
    line type's text in every measure made the summary rebuild 1.4x slower.
    """

    KINDS = {"sale": 1, "return": 2}  # anything else (adjustment, fee) is 3

    def __init__(self, columns, ledger: bool, *, coded: bool = False) -> None:  # noqa: ANN001
        self.columns = columns
        self.ledger = ledger
        total = columns["total_amount"]
        self.registered = columns["registered"] if coded else columns["customer_id"].isnot(None)
        if not ledger:
            self.refunded = literal(0)
            self.sale, self.returned, self.merchandise, self.adjustment = _ALWAYS, _NEVER, _ALWAYS, _NEVER
            self.net = total
            self.counted = columns["counted"] if coded else total != 0
            return
        self.refunded = columns["refunded_amount"]
        self.net = total - self.refunded
        if coded:
            kind = columns["kind"]
            self.sale, self.returned, self.merchandise, self.adjustment = kind == 1, kind == 2, kind < 3, kind == 3
            self.counted = columns["counted"]
            return
        line_type = columns["line_type"]
        self.sale = line_type == "sale"
        self.returned = line_type == "return"
        self.merchandise = line_type.in_(("sale", "return"))
        self.adjustment = line_type.in_(("adjustment", "fee"))
        self.counted = self.sale & (total != 0)

    def coded_columns(self) -> list[ColumnElement]:
        """``kind`` (with the ledger), ``counted`` and ``registered`` as labelled columns, for a subquery
        read with ``coded``."""
        flags = [self.counted.label("counted"), self.registered.label("registered")]
        if not self.ledger:
            return flags
        kind = case(*[(self.columns["line_type"] == name, code) for name, code in self.KINDS.items()], else_=3)
        return [kind.label("kind"), *flags]


class Rows:
    """What a measure is computed over: exact columns, their float versions, and which have no NULLs.

    Powers and cross-products are taken in double precision: exact decimal
    arithmetic buys nothing for moments and correlations and would dominate
    the rebuild time. They describe sale lines (``order_value``: the net value of
    counted lines, one line per order here), chosen by a FILTER on the aggregate.
    """

    def __init__(self, columns, floats=None, complete: frozenset[str] = frozenset(), *,  # noqa: ANN001
                 ledger: bool = False, coded: bool = False) -> None:
        self.columns = columns
        self.floats = floats
        self.complete = complete
        self.money = Ledger(columns, ledger, coded=coded)

    def col(self, name: str) -> ColumnElement:
        return self.columns[name]

    def f(self, name: str) -> ColumnElement:
        if self.floats is not None:
            return self.floats[name]
        return float_of(self.money, name)

    def lines_of(self, name: str) -> ColumnElement | None:
        """Which lines a float measure describes (None: every line)."""
        if name == "order_value":
            return self.money.counted
        return self.money.sale if self.money.ledger else None


def float_of(money: Ledger, name: str) -> ColumnElement:
    """A measure column in double precision (``order_value``: the line's net amount)."""
    if name == "order_value" and money.ledger:
        return cast(money.columns["total_amount"], Double) - cast(money.refunded, Double)
    return cast(money.columns["total_amount" if name == "order_value" else name], Double)


def _filtered(aggregate: ColumnElement, where: ColumnElement | None) -> ColumnElement:
    return aggregate if where is None or where is _ALWAYS else aggregate.filter(where)


def _sum(value: ColumnElement, where: ColumnElement) -> ColumnElement:
    """The sum of ``value`` over the rows where ``where`` holds, 0 over none. A FILTER rather than a
    CASE: rows that do not match cost no (decimal) addition; with no condition the database computes
    equal aggregates once (revenue and gross sales of sale lines only)."""
    if where is _NEVER:
        return literal(0)
    return func.coalesce(_filtered(func.sum(value), where), 0)


def _refunds(r: Rows) -> ColumnElement:
    """What was refunded of the lines (most lines have nothing refunded)."""
    if not r.money.ledger:
        return literal(0)
    return _sum(r.money.refunded, r.money.refunded != 0)


Aggregate = Callable[[Rows], ColumnElement]


def _pair_sum(x: str, y: str, term: str, rows: Rows) -> ColumnElement:
    """Sum of one term of Pearson's formula over the rows where both x and y are present."""
    fx, fy = rows.f(x), rows.f(y)
    where = rows.lines_of(x)
    if {x, y} <= rows.complete:
        values = {"sx": fx, "sy": fy, "sxx": fx * fx, "syy": fy * fy, "sxy": fx * fy}
        return _filtered(func.count() if term == "n" else func.sum(values[term]), where)
    # x * 0 is NULL where x is NULL: each term skips the rows missing either value.
    values = {"sx": fx + fy * 0, "sy": fy + fx * 0, "sxx": fx * fx + fy * 0, "syy": fy * fy + fx * 0, "sxy": fx * fy}
    return _filtered(func.count(fx * fy) if term == "n" else func.sum(values[term]), where)


def pair_measure(x: str, y: str, term: str) -> str:
    """The measure name of one term of the (x, y) correlation."""
    return f"{x}__{y}_{term}"


def _power_sum(power: int, rows: Rows) -> ColumnElement:
    total = rows.f("order_value")
    product = total
    for _ in range(power - 1):
        product = product * total
    return _filtered(func.sum(product), rows.lines_of("order_value"))


#: Additive measures: how each is aggregated over rows (a count or a sum).
ADDITIVE: dict[str, Aggregate] = {
    "orders": lambda r: func.count().filter(r.money.counted),
    "lines": lambda r: func.count(),
    "revenue": lambda r: func.coalesce(func.sum(r.col("total_amount")), 0) - _refunds(r),
    "registered_revenue": lambda r: _sum(r.col("total_amount"), r.money.registered) - (
        _sum(r.money.refunded, r.money.registered & (r.money.refunded != 0)) if r.money.ledger else 0),
    "gross_sales": lambda r: _sum(r.col("total_amount"), r.money.sale),
    "returns": lambda r: _refunds(r) - _sum(r.col("total_amount"), r.money.returned),
    "adjustments": lambda r: _sum(r.col("total_amount"), r.money.adjustment),
    "order_value": lambda r: _sum(r.col("total_amount"), r.money.counted) - (
        _sum(r.money.refunded, r.money.counted & (r.money.refunded != 0)) if r.money.ledger else 0),
    "units": lambda r: _sum(r.col("quantity"), r.money.merchandise),
    "subtotal": lambda r: _sum(r.col("subtotal"), r.money.merchandise),
    "discount_amount": lambda r: func.sum(r.col("discount_amount")),
    "shipping_cost": lambda r: func.sum(r.col("shipping_cost")),
    "discounted_orders": lambda r: _filtered(func.count(), r.money.sale & (r.col("discount_rate") > 0)),
    "discount_rate_sum": lambda r: _sum(r.col("discount_rate"), r.money.sale),
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
    "revenue_min": (func.min, lambda r: func.min(r.f("order_value")).filter(r.money.counted)),
    "revenue_max": (func.max, lambda r: func.max(r.f("order_value")).filter(r.money.counted)),
}
_FLOAT_COLUMNS = tuple(sorted({name for pair in CORRELATION_PAIRS for name in pair} | {"order_value"}))


def _measure_type(name: str):  # noqa: ANN202
    if name in ("orders", "lines", "discounted_orders", "units") or name.endswith("_n"):
        return BigInteger
    if name.startswith("revenue_p") or "__" in name:
        return Double
    return Numeric(asdecimal=False)


daily = Table(
    "bi_daily",
    metadata,
    Column("order_date", DAY, nullable=False),
    Column("region", String(TEXT_LIMIT)),
    Column("customer_segment", String(TEXT_LIMIT)),
    Column("category", String(TEXT_LIMIT)),
    Column("product", String(TEXT_LIMIT)),
    *[Column(name, _measure_type(name)) for name in [*ADDITIVE, *EXTREMA]],
    Index("bi_daily_date", "order_date"),
)

#: Per-customer aggregates over the filtered raw rows (a customer is someone with an order).
CUSTOMER_AGGREGATES: dict[str, Callable[[Ledger], ColumnElement]] = {
    "first_order_date": lambda m: func.min(case((m.counted, m.columns.order_date), else_=None)),
    "last_order_date": lambda m: func.max(case((m.counted, m.columns.order_date), else_=None)),
    # An order may have several lines.
    "orders": lambda m: func.count(func.distinct(case((m.counted, m.columns.order_id), else_=None))),
    "units": lambda m: _sum(m.columns.quantity, m.merchandise),
    "revenue": lambda m: func.sum(m.net),
    "discount_amount": lambda m: func.sum(m.columns.discount_amount),
    "satisfaction_sum": lambda m: func.sum(m.columns.satisfaction_rating),
    "satisfaction_n": lambda m: func.count(m.columns.satisfaction_rating),
    "category_min": lambda m: func.min(case((m.counted, m.columns.category), else_=None)),
    "category_max": lambda m: func.max(case((m.counted, m.columns.category), else_=None)),
}


def rebuild_summaries(engine: Engine, facts: StoredFacts | None = None) -> float:
    """Rebuild ``bi_daily`` from the raw rows in one transaction; return the seconds taken.

    The new summary is stamped with the data version it was built from. ``facts``: what
    the load that just committed found in one scan of the same lines (else scanned here).
    """
    started = time.perf_counter()
    with engine.begin() as conn:
        create_daily(conn)
        if engine.dialect.name == "postgresql":
            # A batch job: no app statement timeout; room to hash the ~100k groups in memory.
            conn.exec_driver_sql("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0")
            conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
        version = read_meta(conn).get("data_version")
        values = fill_summary(conn, ledger=has_ledger(conn), multi_line=has_multi_line_orders(conn), facts=facts)
        store_summary_meta(conn, version or "", values)
    seconds = time.perf_counter() - started
    log.info("Summary table rebuilt in %.2f s", seconds)
    return seconds


def fill_summary(conn: Connection, *, ledger: bool, multi_line: bool,
                 facts: StoredFacts | None = None) -> dict[str, list[str]]:
    """Empty ``bi_daily`` and fill it from the lines stored on ``conn``; return the filter values.

    While some order has several lines (``multi_line``) the summary is never read (see
    :func:`order_source`), so it is left empty and the values come from the lines.
    ``ledger``: the table has the ledger's columns; ``facts``: a scan of the lines, if done.
    """
    conn.execute(delete(daily))
    if multi_line:
        return dimension_values(conn, OrderSource(sales, summary=False, ledger=ledger))
    _fill_daily(conn, ledger, facts or scan_stored_lines(conn, ledger=ledger))
    return dimension_values(conn, OrderSource(daily, summary=True))


def store_summary_meta(conn: Connection, version: str, values: dict[str, list[str]]) -> None:
    """Stamp ``bi_daily`` as built from data ``version``, with the filter values found."""
    write_meta(conn, {"summary_version": version, "dimension_values": json.dumps(values)})


def create_daily(conn: Connection) -> None:
    """Create ``bi_daily``, or re-create it when an older version of the app made it with other columns."""
    inspector = inspect(conn)
    if inspector.has_table(daily.name):
        if {c["name"] for c in inspector.get_columns(daily.name)} == set(daily.c.keys()):
            return
        daily.drop(conn)
    daily.create(conn)


def _fill_daily(conn: Connection, ledger: bool, facts: StoredFacts) -> None:
    """Aggregate the raw rows into ``bi_daily`` (emptied by the caller)."""
    c = sales.c
    complete = frozenset(name for name in _FLOAT_COLUMNS if name in c and name not in facts.columns_with_nulls)
    # Data of sale lines only (nothing returned, refunded or adjusted) needs none of the ledger's
    # distinctions: every expression would hold for every line.
    ledger = ledger and not facts.only_sales
    money = Ledger(c, ledger)
    # Each column is cast to float once, in a subquery, not once per measure (a cast from
    # NUMERIC is costly): OFFSET 0 keeps the database from merging the subquery into the
    # aggregate, which would repeat every cast in each measure (2.8x slower at 1M rows).
    # The line's kind is worked out once per row too (see Ledger).
    rows_in = select(
        *[c[name] for name in DIMENSIONS],
        *[c[name] for name in SALES_MEASURE_COLUMNS],
        *([c.refunded_amount] if ledger else []),
        *money.coded_columns(),
        *[float_of(money, name).label(f"f_{name}") for name in _FLOAT_COLUMNS],
    ).offset(0).subquery()
    floats = {name: rows_in.c[f"f_{name}"] for name in _FLOAT_COLUMNS}
    rows = Rows(rows_in.c, floats, complete=complete, ledger=ledger, coded=True)
    dims = [rows_in.c[name] for name in DIMENSIONS]
    query = select(
        *dims,
        *[agg(rows).label(name) for name, agg in ADDITIVE.items()],
        *[agg(rows).label(name) for name, (_combine, agg) in EXTREMA.items()],
    ).group_by(*dims)
    columns = [*DIMENSIONS, *ADDITIVE, *EXTREMA]
    if conn.dialect.name != "postgresql":
        conn.execute(insert(daily).from_select(columns, query))
        return
    # PostgreSQL 15 never runs INSERT ... SELECT in parallel but does CREATE TABLE AS; every row
    # crosses from the workers to the leader, so only a zero per-row transfer cost lets the planner
    # use them (2.1 s -> 1.5 s for the aggregate at 1M lines on 2 cores).
    conn.exec_driver_sql("SET LOCAL parallel_tuple_cost = 0")
    aggregate = query.compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"CREATE TEMP TABLE bi_daily_fill ON COMMIT DROP AS {aggregate}", aggregate.params)
    names = ", ".join(columns)
    conn.exec_driver_sql(f"INSERT INTO {daily.name} ({names}) SELECT {names} FROM bi_daily_fill")
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


def dimension_values(conn: Connection, source: OrderSource) -> dict[str, list[str]]:
    """The distinct values of each list filter (query parameter -> sorted values).

    One scan for the combinations of all of them, rather than one per filter (each scan of the
    wide summary table cost as much as the whole).
    """
    columns = [source.column(column_name) for _name, column_name in LIST_PARAMETERS.values()]
    combinations = run(conn, select(*columns).group_by(*columns)).all()
    return {parameter: sorted({str(row[i]) for row in combinations if row[i] is not None})
            for i, parameter in enumerate(LIST_PARAMETERS)}


def stored_dimension_values(conn: Connection) -> dict[str, list[str]] | None:
    """The values stored by the last summary rebuild, when the summary is current."""
    meta = read_meta(conn)
    if not (meta.get("data_version") and meta.get("summary_version") == meta.get("data_version")):
        return None
    raw = meta.get("dimension_values")
    return json.loads(raw) if raw else None


def known_dimension_values(conn: Connection) -> dict[str, list[str]]:
    """The list filters' values: those stored by the last summary rebuild when current, else read from the orders."""
    return stored_dimension_values(conn) or dimension_values(conn, order_source(conn))


def summaries_are_current(conn: Connection) -> bool:
    """True when the summary was built from the current data version (not before another tool's change)."""
    version = data_version(conn)
    return bool(version) and read_meta(conn).get("summary_version") == version


@dataclass(frozen=True)
class OrderSource:
    """Where order-level measures come from: the raw table or ``bi_daily``.

    With ``distinct_orders`` (some order has several lines) the raw rows are
    lines, and ``orders`` counts distinct order ids with a counted line.
    ``ledger``: the raw table has the ledger columns (see :class:`Ledger`).
    """

    table: Table
    summary: bool
    distinct_orders: bool = False
    ledger: bool = True

    @property
    def money(self) -> Ledger:
        """The money expressions of the raw lines."""
        return Ledger(self.table.c, self.ledger)

    def measure(self, name: str) -> ColumnElement:
        """The aggregate for measure ``name`` (0 instead of NULL for sums over no rows)."""
        if name == "orders" and self.distinct_orders:
            return func.count(func.distinct(case((self.money.counted, self.table.c.order_id), else_=None)))
        if name in EXTREMA:
            combine, aggregate = EXTREMA[name]
            return combine(self.table.c[name]) if self.summary else aggregate(self._rows())
        expr = func.sum(self.table.c[name]) if self.summary else ADDITIVE[name](self._rows())
        return func.coalesce(expr, 0)

    def _rows(self) -> Rows:
        return Rows(self.table.c, ledger=self.ledger)

    def select(self, filters: Filters, *names: str, by: tuple[ColumnElement, ...] = ()) -> Select:
        """``SELECT <by>, <measures> WHERE <filters> GROUP BY <by>``."""
        query = select(*by, *[self.measure(n).label(n) for n in names]).select_from(self.table).where(
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
    ledger = has_ledger(conn)
    if has_multi_line_orders(conn):
        return OrderSource(sales, summary=False, distinct_orders=True, ledger=ledger)
    if summaries_are_current(conn):
        return OrderSource(daily, summary=True, ledger=ledger)
    return OrderSource(sales, summary=False, ledger=ledger)


def line_money(conn: Connection) -> Ledger:
    """The money expressions of the raw sales lines in ``conn``'s database."""
    return Ledger(sales.c, has_ledger(conn))


def customer_rows(conn: Connection, filters: Filters) -> Select:
    """One row per customer with an order under the filters, and their aggregates (for a subquery).

    Their returns and refunds under the filters count in their revenue."""
    c = sales.c
    money = line_money(conn)
    return (
        select(c.customer_id, *[agg(money).label(name) for name, agg in CUSTOMER_AGGREGATES.items()])
        .where(conditions(filters, sales), c.customer_id.isnot(None))  # guests are no customer
        .group_by(c.customer_id)
        .having(func.count().filter(money.counted) > 0)
    )


def distinct_customers(conn: Connection, filters: Filters, by: str | None = None) -> Select:
    """The number of distinct customers with an order under the filters, optionally per dimension ``by``.

    Written as a GROUP BY in a subquery rather than ``count(DISTINCT ...)``:
    PostgreSQL hashes (or reads an index in order) instead of sorting per group.
    """
    keys = [sales.c[by]] if by else []
    pairs = (
        select(*keys, sales.c.customer_id)
        .where(conditions(filters, sales), sales.c.customer_id.isnot(None), line_money(conn).counted)
        .group_by(*keys, sales.c.customer_id)
        .subquery()
    )
    outer_keys = [pairs.c[by]] if by else []
    query = select(*outer_keys, func.count().label("customers")).select_from(pairs)
    return query.group_by(*outer_keys) if outer_keys else query
