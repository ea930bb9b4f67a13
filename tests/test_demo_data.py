"""The demo generator's shape, checked with pandas on its output."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from data_layer.demo_data import (
    END_DATE,
    PRODUCTS,
    REGIONS,
    SEGMENTS,
    START_DATE,
    customer_count,
    generate_orders,
    generate_orders_frame,
)
from data_layer.schema import SALES_COLUMNS


@pytest.fixture(scope="module")
def orders() -> pd.DataFrame:
    return generate_orders_frame(2000, seed=42)


def cents(series: pd.Series) -> pd.Series:
    return (series * 100).round().astype("int64")


def test_default_size_rows_customers_and_columns(orders: pd.DataFrame) -> None:
    assert len(orders) == 2000
    assert list(orders.columns) == list(SALES_COLUMNS)
    assert orders["order_id"].is_unique
    assert orders["customer_id"].nunique() == customer_count(2000) == 1400
    repeat_share = (orders.groupby("customer_id").size() > 1).mean()
    assert 0.1 < repeat_share < 0.5, "some customers come back, most do not"


def test_catalog_values_only(orders: pd.DataFrame) -> None:
    assert set(orders["customer_segment"]) == set(SEGMENTS)
    assert set(orders["region"]) == set(REGIONS)
    assert set(orders["product"]) == set(PRODUCTS)
    category_of = {name: product.category for name, product in PRODUCTS.items()}
    assert (orders["product"].map(category_of) == orders["category"]).all()


def test_money_arithmetic_is_exact_to_the_cent(orders: pd.DataFrame) -> None:
    assert (cents(orders["subtotal"]) == orders["quantity"] * cents(orders["unit_price"])).all()
    total = cents(orders["subtotal"]) - cents(orders["discount_amount"]) + cents(orders["shipping_cost"])
    assert (cents(orders["total_amount"]) == total).all()
    expected_discount = (cents(orders["subtotal"]) * orders["discount_rate"]).round()
    assert (cents(orders["discount_amount"]) == expected_discount).all()
    assert (orders["quantity"] >= 1).all()
    assert orders["satisfaction_rating"].between(1, 5).all()


def test_calendar_columns_match_the_order_date(orders: pd.DataFrame) -> None:
    day = pd.to_datetime(orders["order_date"])
    assert day.min().date() >= START_DATE and day.max().date() <= END_DATE
    assert (orders["day_of_week"] == day.dt.day_name()).all()
    assert (orders["month"] == day.dt.month).all()
    assert (orders["quarter"] == "Q" + day.dt.quarter.astype(str)).all()
    assert (orders["is_weekend"] == (day.dt.day_of_week >= 5).astype(int)).all()
    assert (orders["is_holiday_season"] == day.dt.month.isin([11, 12]).astype(int)).all()
    assert day.is_monotonic_increasing, "order ids rise with the date"


def test_region_shares_follow_population_weights(orders: pd.DataFrame) -> None:
    customers = orders.drop_duplicates("customer_id")
    shares = customers["region"].value_counts(normalize=True)
    for name, region in REGIONS.items():
        assert shares[name] == pytest.approx(region.population_weight, abs=0.04)


def test_q4_sells_more_than_q1(orders: pd.DataFrame) -> None:
    by_quarter = orders.groupby("quarter")["total_amount"].sum()
    assert by_quarter["Q4"] > 1.3 * by_quarter["Q1"]


def test_discounts_rise_and_shipping_falls_with_order_size(orders: pd.DataFrame) -> None:
    size = pd.qcut(orders["subtotal"], 4, labels=["small", "mid", "large", "largest"])
    by_size = orders.groupby(size, observed=True)
    discounted = by_size["discount_rate"].apply(lambda r: (r > 0).mean())
    assert discounted["largest"] > discounted["small"]
    shipping = by_size["shipping_cost"].mean()
    assert shipping["largest"] < shipping["small"]


def test_segments_differ_as_the_model_says(orders: pd.DataFrame) -> None:
    by_segment = orders.groupby("customer_segment")
    items = by_segment["quantity"].mean()
    assert items["Bulk"] > items["Premium"] > items["Regular"] > items["Budget"]
    satisfaction = by_segment["satisfaction_rating"].mean()
    assert satisfaction.idxmax() == "Premium" and satisfaction.idxmin() == "Budget"


def test_same_seed_same_orders_other_seed_other_orders() -> None:
    a = generate_orders_frame(500, seed=7)
    pd.testing.assert_frame_equal(a, generate_orders_frame(500, seed=7))
    assert not a["total_amount"].equals(generate_orders_frame(500, seed=8)["total_amount"])


def test_chunks_are_streamed_and_every_customer_first_buys_before_repeating() -> None:
    chunks = generate_orders(50_000, seed=3, chunk_rows=7_000)
    sizes = []
    frames = []
    for chunk in chunks:
        sizes.append(chunk.num_rows)
        frames.append(chunk.to_pandas())
    assert max(sizes) == 7_000 and sum(sizes) == 50_000 and len(sizes) == 8
    orders = pd.concat(frames, ignore_index=True)
    assert orders["customer_id"].nunique() == customer_count(50_000)
    first_seen = orders.groupby("customer_id")["order_id"].min().sort_values()
    # Customers are numbered in the order they first buy.
    assert list(first_seen.index) == sorted(first_seen.index)


def test_append_continues_order_ids() -> None:
    more = generate_orders_frame(10, seed=1, first_order_number=2001)
    assert more["order_id"].iloc[0] == "ORD-00002001"
    assert more["order_id"].is_unique


def test_a_million_rows_are_generated_without_materialising_them() -> None:
    total = 0
    revenue = np.float64(0)
    for chunk in generate_orders(1_000_000, seed=5):
        assert chunk.num_rows <= 100_000
        total += chunk.num_rows
        revenue += chunk.column("total_amount").to_numpy().sum()
    assert total == 1_000_000 and revenue > 0
    assert date(2023, 1, 1) == START_DATE
