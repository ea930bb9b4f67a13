"""Orders of several lines and guest checkouts: counted once, on every path, against pandas.

Demo orders are turned into real-shop data: every fourth order gets a second
line (another product), every seventh order is a guest checkout (no customer)
and some lines have no satisfaction rating. Loaded into real SQLite and
PostgreSQL, and read from the database and from the columnar snapshot.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import Connection, Engine

from bi_app import analytics
from bi_app.ml.features import customer_features
from data_layer.columnar import ColumnarReplica
from data_layer.demo_data import PRODUCTS, generate_orders_frame
from data_layer.filters import Filters
from data_layer.loader import load_orders
from data_layer.meta import data_version, has_multi_line_orders
from data_layer.schema import SALES_COLUMNS


def shop_orders() -> pd.DataFrame:
    """Demo orders with second lines, guests and missing ratings."""
    orders = generate_orders_frame(1200, seed=8)
    second = orders.iloc[::4].copy()
    names = list(PRODUCTS)
    second["product"] = [names[(names.index(p) + 3) % len(names)] for p in second["product"]]
    second["category"] = second["product"].map({n: p.category for n, p in PRODUCTS.items()})
    second["quantity"] = 1
    second["unit_price"] = second["subtotal"] = [round(12.5 + i % 40, 2) for i in range(len(second))]
    second["discount_rate"] = second["discount_amount"] = second["shipping_cost"] = 0.0
    second["total_amount"] = second["subtotal"]
    second["refunded_amount"] = 0.0  # the first line's refund stays on the first line
    second["line_number"] = 2
    lines = pd.concat([orders, second]).sort_values(["order_id", "line_number"], ignore_index=True)
    guests = lines["order_id"].isin(orders["order_id"].iloc[::7])
    lines.loc[guests, "customer_id"] = None
    lines.loc[lines.index % 11 == 0, "satisfaction_rating"] = np.nan
    return lines


@pytest.fixture
def shop(engine: Engine) -> tuple[Engine, pd.DataFrame]:
    lines = shop_orders()
    table = pa.Table.from_pandas(lines[list(SALES_COLUMNS)], preserve_index=False)
    table = table.set_column(table.schema.get_field_index("order_date"), "order_date",
                             pa.array(pd.to_datetime(lines["order_date"]).dt.date, type=pa.date32()))
    load_orders(engine, [table], mode="replace", source="test")
    return engine, lines


def paths(engine: Engine, tmp_path: Path) -> list[Connection]:
    """A connection to the database and one to its columnar snapshot."""
    with engine.connect() as conn:
        version = data_version(conn)
    replica = ColumnarReplica(engine, tmp_path)
    replica.build(version)
    return [engine.connect(), replica.engine_for(version).connect()]


FILTERS = [Filters(), Filters(products=("Laptop", "Mouse")), Filters(regions=("North",), start=date(2024, 1, 1))]


def matching(lines: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    keep = pd.Series(True, index=lines.index)
    if filters.products:
        keep &= lines["product"].isin(filters.products)
    if filters.regions:
        keep &= lines["region"].isin(filters.regions)
    if filters.start:
        keep &= pd.to_datetime(lines["order_date"]) >= pd.Timestamp(filters.start)
    return lines[keep]


@pytest.mark.parametrize("filters", FILTERS, ids=["all", "two-products", "north-2024"])
def test_an_order_of_several_lines_counts_once_and_guests_are_no_customers(shop, tmp_path: Path,
                                                                             filters: Filters) -> None:
    engine, lines = shop
    rows = matching(lines, filters)
    rows = rows.assign(net=rows["total_amount"] - rows["refunded_amount"])
    per_order = rows.groupby("order_id")["net"].sum()
    for conn in paths(engine, tmp_path):
        with conn:
            assert has_multi_line_orders(conn)
            k = analytics.kpis(conn, filters)
            assert k["orders"]["value"] == rows["order_id"].nunique()
            assert k["revenue"]["value"] == pytest.approx(round(rows["net"].sum(), 2), abs=0.005)
            assert k["average_order_value"]["value"] == pytest.approx(per_order.mean(), abs=0.006)
            assert k["customers"]["value"] == rows["customer_id"].dropna().nunique()
            assert k["average_satisfaction"]["value"] == pytest.approx(rows["satisfaction_rating"].mean())

            d = analytics.distribution(conn, filters)
            assert d["orders"] == len(per_order)
            assert d["median"] == pytest.approx(per_order.median())
            assert d["q95"] == pytest.approx(per_order.quantile(0.95))
            assert d["std"] == pytest.approx(per_order.std())
            assert sum(b["orders"] for b in d["histogram"]) == len(per_order)

            segments = analytics.segments(conn, filters).set_index("segment")
            expected = rows.groupby("customer_segment")["order_id"].nunique()
            assert segments["orders"].to_dict() == expected.to_dict()
            breakdown = analytics.products(conn, filters)
            products = breakdown["products"].set_index("product")
            assert products["orders"].to_dict() == rows.groupby("product")["order_id"].nunique().to_dict()
            # Revenue per customer: registered customers' net revenue over them; guests' beside it.
            regions = analytics.regions(conn, filters).set_index("region")
            known_rows = rows.dropna(subset=["customer_id"])
            per_customer = known_rows.groupby("region")["net"].sum() / known_rows.groupby("region")["customer_id"].nunique()
            assert regions["revenue_per_customer"].to_dict() == pytest.approx(per_customer.to_dict(), abs=0.0051)
            guests = rows[rows["customer_id"].isna()].groupby("region")["net"].sum()
            assert regions["guest_revenue"].to_dict() == pytest.approx(
                guests.reindex(regions.index, fill_value=0).round(2).to_dict(), abs=0.005)
            # Orders whose two lines are products of one category count once in it.
            categories = breakdown["categories"].set_index("category")
            assert categories["orders"].to_dict() == rows.groupby("category")["order_id"].nunique().to_dict()
            assert categories["revenue"].to_dict() == pytest.approx(rows.groupby("category")["net"].sum().round(2)
                                                                    .to_dict(), abs=0.005)

            trend = analytics.trend(conn, filters)["monthly"].set_index("month")
            months = pd.to_datetime(rows["order_date"]).dt.strftime("%Y-%m")
            assert trend["orders"][trend["orders"] > 0].to_dict() == rows.groupby(months)["order_id"].nunique().to_dict()

            features = customer_features(conn, filters).set_index("customer_id")
            known = rows.dropna(subset=["customer_id"])
            assert sorted(features.index) == sorted(known["customer_id"].unique())
            assert features["order_count"].to_dict() == known.groupby("customer_id")["order_id"].nunique().to_dict()


def test_grid_lists_lines_and_counts_them(shop) -> None:
    from data_layer.queries import orders_page

    engine, lines = shop
    with engine.connect() as conn:
        page, total = orders_page(conn, Filters(products=("Laptop",)), offset=0, limit=50, sort=[])
    laptops = lines[lines["product"] == "Laptop"]
    assert total == len(laptops)
    with engine.connect() as conn:
        assert orders_page(conn, Filters(), offset=0, limit=10, sort=[])[1] == len(lines)  # every line, unfiltered
    assert [(r["order_id"], r["line_number"]) for r in page] == list(
        laptops.sort_values(["order_id", "line_number"])[["order_id", "line_number"]].head(50).itertuples(index=False, name=None))


def test_pricing_counts_orders_not_lines(shop) -> None:
    """An order with a discounted line is one discounted order, however many lines it has."""
    from bi_app.ml.strategy import pricing_numbers

    engine, lines = shop
    sold = lines[(lines["line_type"] == "sale") & (lines["total_amount"] != 0)]
    per_order = sold.groupby("order_id").agg(discounted=("discount_rate", lambda r: bool((r > 0).any())),
                                             revenue=("total_amount", "sum"))
    discounted = per_order[per_order["discounted"]]
    full_price = per_order[~per_order["discounted"]]
    with engine.connect() as conn:
        got = pricing_numbers(conn, Filters())
    assert got["orders"] == len(per_order) < len(sold)
    assert got["discounted_orders"] == len(discounted)
    assert got["average_order_discounted"] == pytest.approx(discounted["revenue"].mean())
    assert got["average_order_full_price"] == pytest.approx(full_price["revenue"].mean())
    assert got["average_discount_rate"] == pytest.approx(sold.loc[sold["discount_rate"] > 0, "discount_rate"].mean())
