"""The per-customer feature table, aggregated in the database from the filtered orders."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import date

import pandas as pd
from sqlalchemy import Connection

from data_layer.cache import result_key
from data_layer.filters import Filters
from data_layer.measures import customer_aggregates
from data_layer.meta import data_version
from data_layer.queries import date_bounds
from data_layer.summaries import order_source

#: The features the segmentation clusters on (the seed's, plus recency).
SEGMENTATION_FEATURES = (
    "total_spent",
    "average_order_value",
    "order_count",
    "average_satisfaction",
    "total_items",
    "total_discounts",
    "recency_days",
)
#: The churn model also knows how long a customer has been one.
CHURN_FEATURES = (*SEGMENTATION_FEATURES, "tenure_days")
FEATURE_LABELS = {
    "total_spent": "Total spent",
    "average_order_value": "Average order value",
    "order_count": "Orders",
    "average_satisfaction": "Average satisfaction",
    "total_items": "Items bought",
    "total_discounts": "Discounts received",
    "recency_days": "Days since last order",
    "tenure_days": "Days since first order",
}


def latest_order_date(conn: Connection, filters: Filters) -> date | None:
    """The last order date under ``filters``."""
    return date_bounds(conn, order_source(conn), filters)[1]


def reference_date(conn: Connection, filters: Filters) -> date | None:
    """The "today" recency and tenure are measured to: the data's last order date (whatever the
    other filters), or the filters' end date when that is earlier; None without orders."""
    latest = latest_order_date(conn, Filters())
    if latest is not None and filters.end is not None and filters.end < latest:
        return filters.end
    return latest


#: The last feature table asked for, under its cache key: the clusters, RFM and churn answers of
#: one page view all start from it, and at a million customers it takes seconds. In memory, not in
#: the result cache: a million customers' table is over 100 MB to pickle into Redis each time.
_last: tuple[str, pd.DataFrame] | None = None
_last_lock = threading.Lock()


def customer_features(conn: Connection, filters: Filters, as_of: date | None = None) -> pd.DataFrame:
    """One row per customer with an order under ``filters`` up to ``as_of`` (default: :func:`reference_date`).

    Columns: customer_id, the :data:`CHURN_FEATURES`, first/last order date and
    ``single_category`` (every order in one category).
    Recency and tenure count days from the last / first order to ``as_of``.
    Sorted by customer_id, so row order (and rank ties) do not depend on the database.
    """
    global _last
    version = data_version(conn)
    key = result_key("customer_features", version, filters.cache_key(), as_of)
    with _last_lock:
        if version and _last is not None and _last[0] == key:
            return _last[1].copy()
    frame = _features(conn, filters, as_of)
    if version:
        with _last_lock:
            _last = (key, frame)
    return frame.copy()


def _features(conn: Connection, filters: Filters, as_of: date | None) -> pd.DataFrame:
    if as_of is not None and (filters.end is None or as_of < filters.end):
        filters = replace(filters, end=as_of)
    as_of = as_of or reference_date(conn, filters)
    frame = customer_aggregates(conn, filters)
    if frame.empty:
        return pd.DataFrame(columns=["customer_id", *CHURN_FEATURES, "first_order_date", "last_order_date",
                                     "single_category"])
    first, last = _days(frame["first_order_date"]), _days(frame["last_order_date"])
    reference = pd.Timestamp(as_of)
    satisfaction_n = frame["satisfaction_n"].astype(float)
    revenue = frame["revenue"].astype(float)
    orders = frame["orders"].astype(int)
    return pd.DataFrame({
        "customer_id": frame["customer_id"].astype(str),
        "total_spent": revenue.round(2),
        "average_order_value": revenue / orders,
        "order_count": orders,
        "average_satisfaction": frame["satisfaction_sum"].astype(float) / satisfaction_n.where(satisfaction_n > 0),
        "total_items": frame["units"].astype(float),
        "total_discounts": frame["discount_amount"].astype(float).round(2),
        "recency_days": (reference - last).dt.days.astype(int),
        "tenure_days": (reference - first).dt.days.astype(int),
        "first_order_date": first.dt.date,
        "last_order_date": last.dt.date,
        "single_category": (frame["category_min"] == frame["category_max"]).to_numpy(),
    })


def _days(values: pd.Series) -> pd.Series:
    """Stored dates (datetimes from DuckDB, dates from PostgreSQL, ISO text from SQLite, where other
    tools may have written timestamps) as datetimes at midnight."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.normalize()
    return pd.to_datetime(values.astype(str).str.slice(0, 10))
