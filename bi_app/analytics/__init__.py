"""Analytics: plain functions of (connection, filters) that return small results.

Each aggregates in the database (through :mod:`data_layer.summaries`, which
picks the summary tables or the raw rows) and finishes in pandas.
"""

from bi_app.analytics.breakdowns import products, regions, segments
from bi_app.analytics.customers import cohorts, lifecycle
from bi_app.analytics.orders import correlations, distribution, kpis, trend

__all__ = [
    "cohorts",
    "correlations",
    "distribution",
    "kpis",
    "lifecycle",
    "products",
    "regions",
    "segments",
    "trend",
]
