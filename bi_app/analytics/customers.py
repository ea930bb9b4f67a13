"""Customer analytics: lifecycle (repeat, lifetime, churn, cross-sell, discounts) and cohorts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from bi_app.analytics.stats import pearson, ratio
from data_layer.filters import Filters
from data_layer.measures import PAIR_TERMS, cohort_activity, customer_lifecycle, totals
from data_layer.queries import date_bounds
from data_layer.summaries import order_source, pair_measure

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
    _first, latest = date_bounds(conn, order_source(conn), filters)
    cutoff = latest - timedelta(days=churn_days - 1) if latest else None
    row = customer_lifecycle(conn, filters, churned_before=cutoff)
    pair = [pair_measure("discount_rate", "subtotal", term) for term in PAIR_TERMS]
    orders = totals(conn, filters, ("orders", "discounted_orders", "discount_rate_sum", *pair))
    customers = int(row["customers"])
    return {
        "customers": customers,
        "repeat_customers": int(row["repeat_customers"]),
        "repeat_rate": ratio(row["repeat_customers"], customers),
        "average_lifetime_days": float(row["lifetime"]) if row["lifetime"] is not None else None,
        "average_repeat_lifetime_days": float(row["repeat_lifetime"]) if row["repeat_lifetime"] is not None else None,
        "churn_days": churn_days,
        "latest_order_date": latest,
        "churned_customers": int(row["churned"]),
        "churn_share": ratio(row["churned"], customers),
        "revenue_at_risk": round(float(row["revenue_at_risk"]), 2),
        "revenue_at_risk_share": ratio(row["revenue_at_risk"], row["revenue"]),
        "cross_sell_customers": int(row["cross_sell"]),
        "cross_sell_rate": ratio(row["cross_sell"], customers),
        "discounted_share": ratio(orders["discounted_orders"], orders["orders"]),
        "average_discount_rate": ratio(orders["discount_rate_sum"], orders["discounted_orders"]),
        "discount_order_size_correlation": pearson(*[orders[name] for name in pair]),
    }


def cohorts(conn: Connection, filters: Filters) -> pd.DataFrame:
    """Retention by first-order month: customers of each cohort active N months after their first order.

    Columns: cohort (YYYY-MM), months_since_first (0 = the first month),
    customers (active that month), cohort_size and retention (share of the cohort).
    """
    frame = cohort_activity(conn, filters)
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
