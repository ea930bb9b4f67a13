"""The reads the analytics, the models and the exports make: each a function of a connection and
:class:`~data_layer.filters.Filters` that returns rows, numbers or a DataFrame. The analytics keep
only the pandas shaping and the statistics; every statement runs through :func:`data_layer.engine.run`
(reads that hand over a row per group through :func:`data_layer.engine.rows`, which refuses a runaway).

Measures come from :func:`data_layer.summaries.order_source` (``bi_daily`` when it matches the
data version, else the raw lines); distinct customers always from the lines.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Connection,
    Double,
    FromClause,
    RowMapping,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    type_coerce,
)

from data_layer.engine import rows, run
from data_layer.filters import Filters, conditions
from data_layer.queries import days_between, month_key, read_frame
from data_layer.schema import sales
from data_layer.summaries import (
    Ledger,
    customer_rows,
    distinct_customers,
    line_money,
    order_source,
    pair_measure,
)

#: The six sums a Pearson correlation is computed from.
PAIR_TERMS = ("n", "sx", "sy", "sxx", "syy", "sxy")


def totals(conn: Connection, filters: Filters, names: Sequence[str]) -> RowMapping:
    """The named measures (see :mod:`data_layer.summaries`) over the matching lines, as one row."""
    return run(conn, order_source(conn).select(filters, *names)).one()._mapping


def totals_by(conn: Connection, filters: Filters, names: Sequence[str], by: Sequence[str]) -> pd.DataFrame:
    """The named measures per value of the ``by`` columns (one row per combination)."""
    source = order_source(conn)
    keys = tuple(source.column(name) for name in by)
    return pd.DataFrame(rows(conn, source.select(filters, *names, by=keys)), columns=[*by, *names])


def monthly_totals(conn: Connection, filters: Filters, names: Sequence[str]) -> pd.DataFrame:
    """The named measures per month (``month``: YYYY-MM), in month order."""
    source = order_source(conn)
    month = month_key(conn, source.column("order_date")).label("month")
    return pd.DataFrame(rows(conn, source.select(filters, *names, by=(month,)).order_by(month)),
                        columns=["month", *names])


def customer_count(conn: Connection, filters: Filters) -> int:
    """Distinct customers (registered, with a counted sale) among the matching lines."""
    return int(run(conn, distinct_customers(conn, filters)).scalar_one())


def customer_counts_by(conn: Connection, filters: Filters, column: str) -> pd.DataFrame:
    """Distinct customers per value of ``column``: columns ``column`` and ``customers``."""
    return pd.DataFrame(rows(conn, distinct_customers(conn, filters, by=column)), columns=[column, "customers"])


def line_count(conn: Connection) -> int:
    """Every stored order line, whatever the filters."""
    return int(run(conn, select(func.count()).select_from(sales)).scalar_one())


class OrderTotals:
    """The net value of each matching order (its lines' amounts less refunds), over the orders
    with a counted sale line: a line's value, or the sum of an order's lines."""

    def __init__(self, filters: Filters, money: Ledger, *, per_order: bool) -> None:
        where = conditions(filters, sales)
        self._from: FromClause
        if per_order:
            grouped = (select(func.sum(money.net).label("order_value"))
                       .where(where).group_by(sales.c.order_id)
                       .having(func.count().filter(money.counted) > 0).subquery())
            self.column, self._from, self._where = grouped.c.order_value, grouped, None
        else:
            self.column, self._from, self._where = money.net, sales, and_(where, money.counted)

    def select(self, *columns: Any) -> Any:
        query = select(*columns).select_from(self._from)
        return query.where(self._where) if self._where is not None else query


def _order_totals(conn: Connection, filters: Filters) -> OrderTotals:
    return OrderTotals(filters, line_money(conn), per_order=order_source(conn).distinct_orders)


def _power(value: Any, power: int) -> Any:
    product = value
    for _ in range(power - 1):
        product = product * value
    return product


def order_value_sums(conn: Connection, filters: Filters) -> RowMapping:
    """Over the matching orders' net values: ``orders``, ``order_value`` (their sum), ``revenue_p2``..``p4``
    (sums of their powers, for the moments), ``revenue_min`` and ``revenue_max``."""
    source = order_source(conn)
    if not source.distinct_orders:  # one line per order: the summary holds these sums
        return totals(conn, filters, ("orders", "order_value", "revenue_p2", "revenue_p3", "revenue_p4",
                                      "revenue_min", "revenue_max"))
    orders = _order_totals(conn, filters)
    value = orders.column
    return run(conn, orders.select(
        func.count().label("orders"), func.coalesce(func.sum(value), 0).label("order_value"),
        *[func.coalesce(func.sum(_power(cast(value, Double), p)), 0).label(f"revenue_p{p}") for p in (2, 3, 4)],
        func.min(value).label("revenue_min"), func.max(value).label("revenue_max"),
    )).one()._mapping


def order_value_quantiles(conn: Connection, filters: Filters, quantiles: Mapping[str, float],
                          orders: int) -> dict[str, float | None]:
    """Each of ``quantiles`` (name -> q) of the ``orders`` matching orders' net values, by linear
    interpolation between the two nearest orders (as pandas does); None without orders."""
    if orders == 0:
        return dict.fromkeys(quantiles)
    totals_ = _order_totals(conn, filters)
    total = totals_.column
    if conn.dialect.name in ("postgresql", "duckdb"):  # ordered-set aggregates
        row = run(conn, totals_.select(
            # In double precision: DuckDB would keep the decimal column's two places.
            *[func.percentile_cont(q).within_group(cast(total, Double)).label(name) for name, q in quantiles.items()]
        )).one()
        return {name: float(row._mapping[name]) for name in quantiles}
    result: dict[str, float | None] = {}
    for name, q in quantiles.items():
        position = (orders - 1) * q
        below = int(np.floor(position))
        values = [float(v) for (v,) in run(conn, totals_.select(total).order_by(total).limit(2).offset(below))]
        upper = values[1] if len(values) > 1 else values[0]
        result[name] = values[0] + (position - below) * (upper - values[0])
    return result


def order_value_bins(conn: Connection, filters: Filters, edges: np.ndarray,
                     overflow_above: float | None = None) -> dict[int, int]:
    """Matching orders per bin of ``edges`` (bin i: from edges[i], the last one closed, as numpy.histogram
    compares), keyed by bin number; with ``overflow_above``, the orders above it in bin ``len(edges) - 1``."""
    bins = len(edges) - 1
    orders = _order_totals(conn, filters)
    total = orders.column
    above = [(total > literal(float(overflow_above)), bins)] if overflow_above is not None else []
    bin_of = case(*above, *[(total >= literal(float(edges[i])), i) for i in range(bins - 1, 0, -1)],
                  else_=0).label("bin")
    return {int(b): int(n) for b, n in run(conn, orders.select(bin_of, func.count()).group_by(bin_of)).all()}


def customer_lifecycle(conn: Connection, filters: Filters, churned_before: date | None) -> RowMapping:
    """Over the matching customers: ``customers``, ``repeat_customers`` (more than one order),
    ``lifetime`` and ``repeat_lifetime`` (average days from first to last order), ``churned`` (last
    order before ``churned_before``; none when it is None) and their ``revenue_at_risk``, ``revenue``
    and ``cross_sell`` (customers who bought in more than one category)."""
    per_customer = customer_rows(conn, filters).subquery()
    c = per_customer.c
    lifetime = days_between(conn, c.last_order_date, c.first_order_date)
    churned = (c.last_order_date < churned_before) if churned_before else (c.orders < 0)
    return run(conn, select(
        func.count().label("customers"),
        func.coalesce(func.sum(case((c.orders > 1, 1), else_=0)), 0).label("repeat_customers"),
        func.avg(lifetime).label("lifetime"),
        func.avg(case((c.orders > 1, lifetime), else_=None)).label("repeat_lifetime"),
        func.coalesce(func.sum(case((churned, 1), else_=0)), 0).label("churned"),
        func.coalesce(func.sum(case((churned, c.revenue), else_=0)), 0).label("revenue_at_risk"),
        func.coalesce(func.sum(c.revenue), 0).label("revenue"),
        func.coalesce(func.sum(case((c.category_min != c.category_max, 1), else_=0)), 0).label("cross_sell"),
    ).select_from(per_customer)).one()._mapping


def cohort_activity(conn: Connection, filters: Filters) -> pd.DataFrame:
    """Distinct customers per (first-order month ``cohort``, ``active_month``), months as YYYY-MM,
    counting months with a counted sale."""
    where = and_(conditions(filters, sales), line_money(conn).counted)
    month = month_key(conn, sales.c.order_date)
    firsts = (select(sales.c.customer_id, func.min(month).label("cohort"))
              .where(where).group_by(sales.c.customer_id).subquery())
    active_month = month.label("active_month")
    activity = rows(conn, select(firsts.c.cohort, active_month,
                                 func.count(func.distinct(sales.c.customer_id)).label("customers"))
                    .select_from(sales.join(firsts, firsts.c.customer_id == sales.c.customer_id))
                    .where(where).group_by(firsts.c.cohort, active_month))
    return pd.DataFrame(activity, columns=["cohort", "active_month", "customers"])


def customers_with_an_order(conn: Connection, filters: Filters) -> set[str]:
    """The customers with a counted sale among the matching lines."""
    query = select(sales.c.customer_id).where(conditions(filters, sales), line_money(conn).counted).distinct()
    return {customer for (customer,) in run(conn, query)}


#: Customer aggregates read as doubles: a million Decimals from the driver cost more than the query.
_CUSTOMER_SUMS = ("revenue", "units", "discount_amount", "satisfaction_sum")
_CUSTOMER_DATES = ("first_order_date", "last_order_date")


def customer_aggregates(conn: Connection, filters: Filters) -> pd.DataFrame:
    """One row per matching customer (sorted by customer id): the aggregates of
    :data:`data_layer.summaries.CUSTOMER_AGGREGATES`, sums as floats and the first and last order
    dates as the stored text (on SQLite a table other tools wrote may hold timestamps there)."""
    per_customer = customer_rows(conn, filters).subquery()
    query = select(*[cast(column, Double).label(column.name) if column.name in _CUSTOMER_SUMS
                     else type_coerce(column, String).label(column.name) if column.name in _CUSTOMER_DATES
                     else column for column in per_customer.c]).order_by(per_customer.c.customer_id)
    return read_frame(conn, query)


def customer_revenue(conn: Connection, filters: Filters) -> pd.DataFrame:
    """Each matching customer's net revenue: columns ``customer_id`` and ``revenue`` (float)."""
    per_customer = customer_rows(conn, filters).subquery()
    return read_frame(conn, select(per_customer.c.customer_id, cast(per_customer.c.revenue, Double).label("revenue")))


def discount_numbers(conn: Connection, filters: Filters) -> RowMapping:
    """Over the matching orders' sale lines: ``orders``, ``discounted_orders`` (an order with a
    discounted line), ``revenue``, ``discounted_order_revenue`` (of those orders), and of the
    discounted lines ``discounted_subtotal``, ``discounted_revenue``, ``rate_sum`` and ``discounted_lines``."""
    discounted = sales.c.discount_rate > 0
    per_order = select(
        func.max(case((discounted, 1), else_=0)).label("discounted"),
        func.sum(sales.c.total_amount).label("revenue"),
        func.sum(case((discounted, sales.c.subtotal), else_=0)).label("discounted_subtotal"),
        func.sum(case((discounted, sales.c.total_amount), else_=0)).label("discounted_revenue"),
        func.sum(case((discounted, sales.c.discount_rate), else_=0)).label("rate_sum"),
        func.sum(case((discounted, 1), else_=0)).label("discounted_lines"),
    ).where(conditions(filters, sales), line_money(conn).counted).group_by(sales.c.order_id).subquery()
    return run(conn, select(
        func.count().label("orders"),
        func.coalesce(func.sum(per_order.c.discounted), 0).label("discounted_orders"),
        func.coalesce(func.sum(per_order.c.revenue), 0).label("revenue"),
        func.coalesce(func.sum(case((per_order.c.discounted == 1, per_order.c.revenue), else_=0)), 0)
        .label("discounted_order_revenue"),
        *[func.coalesce(func.sum(per_order.c[name]), 0).label(name)
          for name in ("discounted_subtotal", "discounted_revenue", "rate_sum", "discounted_lines")],
    )).one()._mapping


def correlation_sums(conn: Connection, filters: Filters,
                     pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Any]]:
    """For each (x, y) of ``pairs``, the six sums (:data:`PAIR_TERMS`) a Pearson correlation of x with y
    is computed from; one read for all of them."""
    names = {pair: [pair_measure(*pair, term) for term in PAIR_TERMS] for pair in pairs}
    row = totals(conn, filters, [name for terms in names.values() for name in terms])
    return {pair: [row[name] for name in terms] for pair, terms in names.items()}


def order_line_batches(conn: Connection, filters: Filters, columns: Sequence[str],
                       batch_rows: int) -> Iterator[Sequence[Any]]:
    """The matching order lines' ``columns``, streamed from the server in batches of ``batch_rows``
    (in order id and line order where those columns are asked for)."""
    key = [sales.c[name] for name in ("order_id", "line_number") if name in columns]
    query = select(*[sales.c[name] for name in columns]).where(conditions(filters, sales)).order_by(*key)
    result = run(conn.execution_options(stream_results=True, yield_per=batch_rows), query)
    yield from result.partitions()
