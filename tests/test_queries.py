"""KPIs from the database equal pandas on the same rows, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from sqlalchemy import Engine

from data_layer.bootstrap import load_demo_data
from data_layer.demo_data import generate_orders_frame
from data_layer.filters import Filters
from data_layer.queries import has_sales_data, kpis


def expected_kpis(frame: pd.DataFrame) -> dict[str, object]:
    revenue = round(frame["total_amount"].sum(), 2)
    orders = frame["order_id"].nunique()
    return {
        "revenue": revenue,
        "orders": orders,
        "customers": frame["customer_id"].nunique(),
        "average_order_value": round(revenue / orders, 2),
        "average_satisfaction": frame["satisfaction_rating"].mean(),
    }


@pytest.mark.parametrize(
    "filters",
    [
        Filters(),
        Filters(regions=("North",), start=date(2024, 1, 1), end=date(2024, 3, 31)),
        Filters(segments=("Bulk", "Premium"), categories=("Office",)),
        Filters(products=("Laptop",), end=date(2023, 6, 30)),
    ],
    ids=["all", "north-2024q1", "bulk-premium-office", "laptop-h1-2023"],
)
def test_kpis_equal_pandas(engine: Engine, filters: Filters) -> None:
    load_demo_data(engine, 2000, 42, replace=True)
    frame = generate_orders_frame(2000, 42)
    day = pd.to_datetime(frame["order_date"]).dt.date
    keep = pd.Series(True, index=frame.index)
    if filters.start:
        keep &= day >= filters.start
    if filters.end:
        keep &= day <= filters.end
    for column, values in (
        ("region", filters.regions),
        ("customer_segment", filters.segments),
        ("category", filters.categories),
        ("product", filters.products),
    ):
        if values:
            keep &= frame[column].isin(values)
    expected = expected_kpis(frame[keep])
    assert expected["orders"] > 10  # the filter leaves something to compare

    with engine.connect() as conn:
        got = kpis(conn, filters)
    assert got.revenue == pytest.approx(expected["revenue"], abs=0.005)
    assert got.orders == expected["orders"]
    assert got.customers == expected["customers"]
    assert got.average_order_value == pytest.approx(expected["average_order_value"], abs=0.005)
    assert got.average_satisfaction == pytest.approx(expected["average_satisfaction"], abs=1e-9)


def test_empty_database_answers_zero_not_an_error(engine: Engine) -> None:
    load_demo_data(engine, 10, 1, replace=True)
    with engine.connect() as conn:
        assert has_sales_data(conn)
        nothing = kpis(conn, Filters(start=date(2030, 1, 1)))
    assert (nothing.revenue, nothing.orders, nothing.customers) == (0, 0, 0)
    assert nothing.average_order_value is None and nothing.average_satisfaction is None
