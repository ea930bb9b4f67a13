"""Customer analytics: lifecycle (repeat, lifetime, churn, cross-sell, discounts) and cohorts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, and_, case, func, select

from bi_app.analytics.stats import pearson, ratio
from data_layer.filters import Filters, conditions
from data_layer.queries import date_bounds, days_between, month_key
from data_layer.schema import sales
from data_layer.summaries import customer_rows, line_money, order_source, pair_measure

DEFAULT_CHURN_DAYS = 180


def lifecycle(conn: Connection, filters: Filters, churn_days: int = DEFAULT_CHURN_DAYS) -> dict[str, Any]:
    """Repeat rate, customer lifetime, churn and revenue at risk, cross-sell rate, discount analysis.

    A customer has churned when they placed no order in the ``churn_days``
    days ending on the latest order date of the filtered data (inclusive).
    Revenue at risk is the lifetime revenue of the churned customers.
    Lifetime is the days from a customer's first to last order (0 for one order).
    """
    if churn_days < 1:
        raise ValueError("churn_days must be at least 1")
    source = order_source(conn)
    _first, latest = date_bounds(conn, source, filters)
    per_customer = customer_rows(conn, filters).subquery()
    c = per_customer.c
    lifetime = days_between(conn, c.last_order_date, c.first_order_date)
    cutoff = latest - timedelta(days=churn_days - 1) if latest else None
    churned = (c.last_order_date < cutoff) if cutoff else (c.orders < 0)
    row = conn.execute(
        select(
            func.count().label("customers"),
            func.coalesce(func.sum(case((c.orders > 1, 1), else_=0)), 0).label("repeat_customers"),
            func.avg(lifetime).label("lifetime"),
            func.avg(case((c.orders > 1, lifetime), else_=None)).label("repeat_lifetime"),
            func.coalesce(func.sum(case((churned, 1), else_=0)), 0).label("churned"),
            func.coalesce(func.sum(case((churned, c.revenue), else_=0)), 0).label("revenue_at_risk"),
            func.coalesce(func.sum(c.revenue), 0).label("revenue"),
            func.coalesce(
                func.sum(case((c.category_min != c.category_max, 1), else_=0)), 0
            ).label("cross_sell"),
        ).select_from(per_customer)
    ).one()
    pair = [pair_measure("discount_rate", "subtotal", t) for t in ("n", "sx", "sy", "sxx", "syy", "sxy")]
    orders = conn.execute(
        source.select(filters, "orders", "discounted_orders", "discount_rate_sum", *pair)
    ).one()._mapping
    customers = int(row.customers)
    return {
        "customers": customers,
        "repeat_customers": int(row.repeat_customers),
        "repeat_rate": ratio(row.repeat_customers, customers),
        "average_lifetime_days": float(row.lifetime) if row.lifetime is not None else None,
        "average_repeat_lifetime_days": float(row.repeat_lifetime) if row.repeat_lifetime is not None else None,
        "churn_days": churn_days,
        "latest_order_date": latest,
        "churned_customers": int(row.churned),
        "churn_share": ratio(row.churned, customers),
        "revenue_at_risk": round(float(row.revenue_at_risk), 2),
        "revenue_at_risk_share": ratio(row.revenue_at_risk, row.revenue),
        "cross_sell_customers": int(row.cross_sell),
        "cross_sell_rate": ratio(row.cross_sell, customers),
        "discounted_share": ratio(orders["discounted_orders"], orders["orders"]),
        "average_discount_rate": ratio(orders["discount_rate_sum"], orders["discounted_orders"]),
        "discount_order_size_correlation": pearson(*[orders[name] for name in pair]),
    }


def cohorts(conn: Connection, filters: Filters) -> pd.DataFrame:
    """Retention by first-order month: customers of each cohort active N months after their first order.

    Columns: cohort (YYYY-MM), months_since_first (0 = the first month),
    customers (active that month), cohort_size and retention (share of the cohort).
    """
    where = and_(conditions(filters, sales), line_money(conn).counted)  # months with an order
    month = month_key(conn, sales.c.order_date)
    firsts = (
        select(sales.c.customer_id, func.min(month).label("cohort"))
        .where(where)
        .group_by(sales.c.customer_id)
        .subquery()
    )
    active_month = month.label("active_month")
    rows = conn.execute(
        select(firsts.c.cohort, active_month, func.count(func.distinct(sales.c.customer_id)).label("customers"))
        .select_from(sales.join(firsts, firsts.c.customer_id == sales.c.customer_id))
        .where(where)
        .group_by(firsts.c.cohort, active_month)
    ).all()
    frame = pd.DataFrame(rows, columns=["cohort", "active_month", "customers"])
    if frame.empty:
        return pd.DataFrame(columns=["cohort", "months_since_first", "customers", "cohort_size", "retention"])
    cohort = pd.PeriodIndex(frame["cohort"], freq="M")
    active = pd.PeriodIndex(frame["active_month"], freq="M")
    frame["months_since_first"] = [a.ordinal - c.ordinal for a, c in zip(active, cohort, strict=True)]
    frame["customers"] = frame["customers"].astype(int)
    sizes = frame[frame["months_since_first"] == 0].set_index("cohort")["customers"]
    frame["cohort_size"] = frame["cohort"].map(sizes).astype(int)
    frame["retention"] = frame["customers"] / frame["cohort_size"]
    return (
        frame[["cohort", "months_since_first", "customers", "cohort_size", "retention"]]
        .sort_values(["cohort", "months_since_first"])
        .reset_index(drop=True)
    )
