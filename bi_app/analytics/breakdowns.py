"""Breakdowns by customer segment, region, product and category."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Connection

from bi_app.analytics.stats import money_per_row, ratio
from data_layer.demo_data import PRODUCTS
from data_layer.filters import Filters
from data_layer.measures import customer_count, customer_counts_by, totals_by
from data_layer.meta import imported

_ORDER_MEASURES = ("orders", "revenue", "registered_revenue", "units", "subtotal", "satisfaction_sum",
                   "satisfaction_n")


def _by(conn: Connection, filters: Filters, column: str, *extra: str, customers: bool = True) -> pd.DataFrame:
    """Order measures (and, with ``customers``, distinct customers) per value of ``column``."""
    frame = totals_by(conn, filters, _ORDER_MEASURES, by=(column, *extra))
    for name in _ORDER_MEASURES:
        frame[name] = pd.to_numeric(frame[name]).astype(float)
    frame["orders"] = frame["orders"].astype(int)
    frame["units"] = frame["units"].astype(int)
    if customers:
        frame = frame.merge(customer_counts_by(conn, filters, column), on=column, how="left")
        frame["customers"] = frame["customers"].fillna(0).astype(int)
    frame["revenue"] = frame["revenue"].round(2)
    frame["satisfaction"] = [ratio(s, n)
                             for s, n in zip(frame["satisfaction_sum"], frame["satisfaction_n"], strict=True)]
    return frame


def segments(conn: Connection, filters: Filters) -> pd.DataFrame:
    """Per customer segment: customers, orders, revenue, average spend per order, satisfaction,
    items per order and share of revenue; largest revenue first."""
    frame = _by(conn, filters, "customer_segment")
    total = frame["revenue"].sum()
    frame["average_spend"] = money_per_row(frame["revenue"], frame["orders"])
    frame["items_per_order"] = frame["units"] / frame["orders"]
    frame["revenue_share"] = frame["revenue"] / total if total else None
    columns = ["customer_segment", "customers", "orders", "revenue", "average_spend", "satisfaction",
               "items_per_order", "revenue_share"]
    return frame.sort_values("revenue", ascending=False)[columns].rename(
        columns={"customer_segment": "segment"}
    ).reset_index(drop=True)


def regions(conn: Connection, filters: Filters) -> pd.DataFrame:
    """Per region: customers, orders, net revenue, revenue per customer (registered customers' net
    revenue / registered customers; guests' revenue beside it), satisfaction and share of customers;
    largest revenue first."""
    frame = _by(conn, filters, "region")
    all_customers = customer_count(conn, filters)
    frame["revenue_per_customer"] = money_per_row(frame["registered_revenue"], frame["customers"])
    frame["guest_revenue"] = (frame["revenue"] - frame["registered_revenue"]).round(2)
    frame["customer_share"] = frame["customers"] / all_customers if all_customers else None
    columns = ["region", "customers", "orders", "revenue", "revenue_per_customer", "guest_revenue", "satisfaction",
               "customer_share"]
    return frame.sort_values("revenue", ascending=False)[columns].reset_index(drop=True)


def products(conn: Connection, filters: Filters) -> dict[str, pd.DataFrame]:
    """Per product and per category: revenue, orders, units, average unit price, estimated margin
    (the demo catalog's margin per unit x units, for data the demo generator or the seed's pipeline
    made; none for a shop's imported file, whose products are not the catalog's) and satisfaction."""
    frame = _by(conn, filters, "product", "category", customers=False)
    catalog = {} if imported(conn) else {name: p.margin for name, p in PRODUCTS.items()}
    margin_per_unit = frame["product"].map(catalog).astype(float)
    frame["estimated_margin"] = (margin_per_unit * frame["units"]).round(2)
    by_product = _finish(frame, ["product", "category"])
    # Per category from the lines themselves: an order of two products of one category is one order
    # of it (its products' order counts would count it twice). Margins add up.
    by_category = _by(conn, filters, "category", customers=False)
    margins = frame.groupby("category")["estimated_margin"].agg(lambda m: m.sum(min_count=len(m)))
    by_category["estimated_margin"] = by_category["category"].map(margins)
    return {"products": by_product, "categories": _finish(by_category, ["category"])}


def _finish(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    frame = frame.copy()
    frame["revenue"] = frame["revenue"].round(2)
    frame["average_price"] = (frame["subtotal"] / frame["units"].where(frame["units"] > 0)).round(2)
    columns = [*keys, "revenue", "orders", "units", "average_price", "estimated_margin", "satisfaction"]
    return frame.sort_values("revenue", ascending=False)[columns].reset_index(drop=True)
