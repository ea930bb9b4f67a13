"""Every analytics figure equals an independent pandas computation on the same rows.

Run on real SQLite and PostgreSQL, through the summary tables and through the
raw rows, for several filters.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, text

from bi_app import analytics
from data_layer.bootstrap import load_demo_data
from data_layer.columnar import ColumnarReplica
from data_layer.demo_data import PRODUCTS, generate_orders_frame
from data_layer.engine import make_engine
from data_layer.filters import Filters
from data_layer.meta import read_meta, write_meta
from data_layer.summaries import summaries_are_current
from tests.conftest import postgres_url
from tests.support import expected_histogram

ROWS, SEED = 2000, 42
FILTERS = {
    "all": Filters(),
    "north-2024q1": Filters(regions=("North",), start=date(2024, 1, 1), end=date(2024, 3, 31)),
    "bulk-premium-office": Filters(segments=("Bulk", "Premium"), categories=("Office",)),
    "east-west": Filters(regions=("East", "West")),
    "laptop-mouse-2023": Filters(products=("Laptop", "Mouse"), start=date(2023, 2, 10), end=date(2023, 11, 20)),
    # Runs past the data's last order (2024-12-30): a partial period, compared like for like.
    "december-2024-and-on": Filters(start=date(2024, 12, 1), end=date(2025, 1, 31)),
    # A viewer limited to some regions (issue 15's scope): every figure over their regions only.
    "scope-north": Filters(scope=("North",)),
    "scope-north-east-asking-east-west": Filters(regions=("East", "West"), scope=("East", "North")),
}
CENT = 0.005


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A database holding the 2,000 demo orders, with summaries built."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("analytics") / "db.sqlite"
        engine = make_engine(f"sqlite:///{path}")
        schema = None
    else:
        admin = request.getfixturevalue("postgres_admin")
        schema = f"test_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        separator = "&" if "?" in postgres_url() else "?"
        engine = make_engine(f"{postgres_url()}{separator}options={quote(f'-csearch_path={schema}')}")
    load_demo_data(engine, ROWS, SEED, replace=True)
    with engine.connect() as conn:
        version = read_meta(conn)["data_version"]
    replica = ColumnarReplica(engine, tmp_path_factory.mktemp("columnar"))
    replica.build(version)
    engine.columnar = replica.engine_for(version)  # the snapshot, for the "columnar" path
    yield engine
    replica.close()
    engine.dispose()
    if schema:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(params=["summary", "raw", "columnar"])
def engine_on_path(request: pytest.FixtureRequest, loaded: Engine) -> Iterator[Engine]:
    """The loaded database, answering from the summary table or (forced) from the raw rows,
    or its columnar DuckDB snapshot."""
    if request.param == "columnar":
        yield loaded.columnar
        return
    with loaded.begin() as conn:
        version = read_meta(conn)["data_version"]
        write_meta(conn, {"summary_version": version if request.param == "summary" else "stale"})
        assert summaries_are_current(conn) == (request.param == "summary")
    yield loaded


@pytest.fixture(scope="module")
def orders() -> pd.DataFrame:
    frame = generate_orders_frame(ROWS, SEED)
    frame["order_date"] = pd.to_datetime(frame["order_date"])
    frame["net"] = frame["total_amount"] - frame["refunded_amount"]  # net revenue of the line
    assert (frame["refunded_amount"] > 0).sum() > 20  # the demo has refunds to net
    return frame


def apply(frame: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    keep = pd.Series(True, index=frame.index)
    if filters.start:
        keep &= frame["order_date"] >= pd.Timestamp(filters.start)
    if filters.end:
        keep &= frame["order_date"] <= pd.Timestamp(filters.end)
    for column, values in (
        ("region", filters.scope),
        ("region", filters.regions),
        ("customer_segment", filters.segments),
        ("category", filters.categories),
        ("product", filters.products),
    ):
        if values:
            keep &= frame[column].isin(values)
    return frame[keep]


def close(a: float | None, b: float | None, tolerance: float = 1e-9) -> bool:
    if a is None or b is None or (isinstance(b, float) and np.isnan(b)):
        return (a is None or np.isnan(a)) and (b is None or np.isnan(b))
    return abs(a - b) <= tolerance * max(1.0, abs(b))


pytestmark = pytest.mark.parametrize("filters", list(FILTERS.values()), ids=list(FILTERS))


def test_kpis(engine_on_path: Engine, orders: pd.DataFrame, filters: Filters) -> None:
    with engine_on_path.connect() as conn:
        got = analytics.kpis(conn, filters)
    rows = apply(orders, filters)
    assert len(rows) > 10
    start = filters.start or apply(orders, filters.without_dates())["order_date"].min().date()
    end = filters.end or apply(orders, filters.without_dates())["order_date"].max().date()
    through = min(end, orders["order_date"].max().date())  # a period past the data's end is compared as far as it goes

    def earlier(day: date, **offset: int) -> date:  # the same day earlier; a month's last day stays its last
        moved = pd.Timestamp(day) - pd.DateOffset(**offset)
        return (moved + pd.offsets.MonthEnd(0) if pd.Timestamp(day).is_month_end else moved).date()

    if start.day == 1 and pd.Timestamp(end).is_month_end:  # whole months: the same calendar months before
        months = (pd.Period(end, "M") - pd.Period(start, "M")).n + 1
        previous_start, previous_end = earlier(start, months=months), earlier(through, months=months)
    else:
        length = timedelta(days=(end - start).days + 1)
        previous_start, previous_end = start - length, through - length
    previous_end = min(previous_end, start - timedelta(days=1))
    previous = apply(orders, Filters(**{**filters.__dict__, "start": previous_start, "end": previous_end}))
    assert got["period"] == {"start": start, "end": end, "through": through, "partial": through < end}
    assert got["previous_period"] == {"start": previous_start, "end": previous_end}
    year_start, year_end = earlier(start, years=1), earlier(through, years=1)
    last_year = apply(orders, Filters(**{**filters.__dict__, "start": year_start, "end": year_end}))
    if year_end < start:
        assert got["same_period_last_year"] == {"start": year_start, "end": year_end}
    else:
        assert got["same_period_last_year"] is None
        last_year = None
    for name, frame in (("value", rows), ("previous", previous), ("last_year", last_year)):
        if frame is None:
            continue
        revenue = round(frame["net"].sum(), 2)
        assert got["revenue"][name] == pytest.approx(revenue, abs=CENT)
        assert got["orders"][name] == len(frame)
        assert got["customers"][name] == frame["customer_id"].nunique()
        if len(frame):
            assert got["average_order_value"][name] == pytest.approx(round(revenue / len(frame), 2), abs=CENT)
            assert close(got["average_satisfaction"][name], frame["satisfaction_rating"].mean())
    if len(previous):
        expected = (rows["net"].sum() - previous["net"].sum()) / previous["net"].sum()
        assert close(got["revenue"]["change"], expected, 1e-6)
    else:
        assert got["revenue"]["change"] is None


def test_distribution(engine_on_path: Engine, orders: pd.DataFrame, filters: Filters) -> None:
    with engine_on_path.connect() as conn:
        got = analytics.distribution(conn, filters)
    values = apply(orders, filters)["net"]  # an order's value is its net
    assert got["orders"] == len(values)
    assert got["mean"] == pytest.approx(values.mean(), abs=CENT)
    assert got["std"] == pytest.approx(values.std(), rel=1e-9)
    for name, q in (("q1", 0.25), ("median", 0.5), ("q3", 0.75), ("q95", 0.95), ("q99", 0.99)):
        assert got[name] == pytest.approx(values.quantile(q), abs=CENT), name
    assert got["skewness"] == pytest.approx(values.skew(), rel=1e-6)
    assert got["kurtosis"] == pytest.approx(values.kurt(), rel=1e-6)
    counts, starts, overflow = expected_histogram(values)
    assert [b["orders"] for b in got["histogram"]] == counts
    assert [b["bin_start"] for b in got["histogram"]] == pytest.approx(starts)
    assert [b["overflow"] for b in got["histogram"]] == [False] * 20 + [True] * overflow



def test_segments(engine_on_path: Engine, orders: pd.DataFrame, filters: Filters) -> None:
    with engine_on_path.connect() as conn:
        got = analytics.segments(conn, filters).set_index("segment")
    rows = apply(orders, filters)
    expected = rows.groupby("customer_segment").agg(
        customers=("customer_id", "nunique"),
        orders=("order_id", "size"),
        revenue=("net", "sum"),
        satisfaction=("satisfaction_rating", "mean"),
        items_per_order=("quantity", "mean"),
    )
    assert sorted(got.index) == sorted(expected.index)
    for segment, row in expected.iterrows():
        assert got.loc[segment, "customers"] == row["customers"]
        assert got.loc[segment, "orders"] == row["orders"]
        assert got.loc[segment, "revenue"] == pytest.approx(round(row["revenue"], 2), abs=CENT)
        assert got.loc[segment, "average_spend"] == pytest.approx(round(row["revenue"] / row["orders"], 2), abs=CENT)
        assert close(got.loc[segment, "satisfaction"], row["satisfaction"])
        assert close(got.loc[segment, "items_per_order"], row["items_per_order"])
        assert close(got.loc[segment, "revenue_share"], row["revenue"] / rows["net"].sum(), 1e-6)
    assert list(got["revenue"]) == sorted(got["revenue"], reverse=True)


def test_regions(engine_on_path: Engine, orders: pd.DataFrame, filters: Filters) -> None:
    with engine_on_path.connect() as conn:
        got = analytics.regions(conn, filters).set_index("region")
    rows = apply(orders, filters)
    expected = rows.groupby("region").agg(
        customers=("customer_id", "nunique"),
        revenue=("net", "sum"),
        satisfaction=("satisfaction_rating", "mean"),
    )
    assert sorted(got.index) == sorted(expected.index)
    for region, row in expected.iterrows():
        assert got.loc[region, "customers"] == row["customers"]
        assert got.loc[region, "revenue"] == pytest.approx(round(row["revenue"], 2), abs=CENT)
        assert got.loc[region, "revenue_per_customer"] == pytest.approx(
            round(row["revenue"] / row["customers"], 2), abs=CENT
        )
        assert close(got.loc[region, "satisfaction"], row["satisfaction"])
        assert close(got.loc[region, "customer_share"], row["customers"] / rows["customer_id"].nunique())


def test_products_and_categories(engine_on_path: Engine, orders: pd.DataFrame, filters: Filters) -> None:
    with engine_on_path.connect() as conn:
        got = analytics.products(conn, filters)
    rows = apply(orders, filters)
    for key, frame in (("product", got["products"]), ("category", got["categories"])):
        frame = frame.set_index(key)
        expected = rows.groupby(key).agg(
            revenue=("net", "sum"),
            orders=("order_id", "size"),
            units=("quantity", "sum"),
            subtotal=("subtotal", "sum"),
            satisfaction=("satisfaction_rating", "mean"),
        )
        margin = rows["product"].map({n: p.margin for n, p in PRODUCTS.items()}) * rows["quantity"]
        expected["margin"] = margin.groupby(rows[key]).sum()
        assert sorted(frame.index) == sorted(expected.index)
        for name, row in expected.iterrows():
            assert frame.loc[name, "revenue"] == pytest.approx(round(row["revenue"], 2), abs=CENT)
            assert frame.loc[name, "orders"] == row["orders"]
            assert frame.loc[name, "units"] == row["units"]
            assert frame.loc[name, "average_price"] == pytest.approx(round(row["subtotal"] / row["units"], 2), abs=CENT)
            assert frame.loc[name, "estimated_margin"] == pytest.approx(row["margin"], abs=CENT)
            assert close(frame.loc[name, "satisfaction"], row["satisfaction"])


def test_trend(engine_on_path: Engine, orders: pd.DataFrame, filters: Filters) -> None:
    with engine_on_path.connect() as conn:
        got = analytics.trend(conn, filters)
    rows = apply(orders, filters)
    monthly = rows.groupby(rows["order_date"].dt.to_period("M"))["net"].sum()
    monthly = monthly.reindex(pd.period_range(monthly.index.min(), monthly.index.max(), freq="M"), fill_value=0)
    frame = got["monthly"]
    assert list(frame["month"]) == [str(p) for p in monthly.index]
    assert frame["revenue"].tolist() == pytest.approx(monthly.round(2).tolist(), abs=CENT)
    # Months the analysed span covers in part are marked and left out of growth and averages.
    through = min(filters.end or date.max, orders["order_date"].max().date())
    partial = [p.end_time.date() > through or bool(filters.start and p.start_time.date() < filters.start)
               for p in monthly.index]
    assert frame["partial"].tolist() == partial
    whole = monthly.where(~pd.Series(partial, index=monthly.index))
    growth = whole.pct_change(fill_method=None)
    assert [close(a, b, 1e-6) for a, b in zip(frame["growth"], growth)] == [True] * len(growth)
    average = whole.rolling(3).mean()
    assert [close(a, b, 1e-6) for a, b in zip(frame["moving_average_3"], average)] == [True] * len(average)
    by_quarter = rows.groupby("quarter")["net"].sum()
    assert dict(zip(got["quarterly"]["quarter"], got["quarterly"]["revenue"])) == pytest.approx(
        by_quarter.round(2).to_dict(), abs=CENT
    )
    if {"Q1", "Q4"} <= set(by_quarter.index):
        assert close(got["q4_vs_q1"], by_quarter["Q4"] / by_quarter["Q1"] - 1, 1e-6)


def test_correlations(engine_on_path: Engine, orders: pd.DataFrame, filters: Filters) -> None:
    with engine_on_path.connect() as conn:
        got = analytics.correlations(conn, filters).set_index("column")["correlation"]
    rows = apply(orders, filters)
    expected = rows[[*got.index, "total_amount"]].astype(float).corr()["total_amount"].drop("total_amount")
    for column, r in expected.items():
        assert close(got[column], r, 1e-7), column
    assert list(got.abs()) == sorted(got.abs(), reverse=True)


def test_lifecycle(engine_on_path: Engine, orders: pd.DataFrame, filters: Filters) -> None:
    with engine_on_path.connect() as conn:
        got = analytics.lifecycle(conn, filters, churn_days=180)
    rows = apply(orders, filters)
    per_customer = rows.groupby("customer_id").agg(
        first=("order_date", "min"),
        last=("order_date", "max"),
        orders=("order_id", "size"),
        revenue=("net", "sum"),
        categories=("category", "nunique"),
    )
    latest = rows["order_date"].max()
    churned = per_customer["last"] <= latest - pd.Timedelta(days=180)
    lifetime = (per_customer["last"] - per_customer["first"]).dt.days
    assert got["customers"] == len(per_customer)
    assert got["repeat_customers"] == (per_customer["orders"] > 1).sum()
    assert close(got["repeat_rate"], (per_customer["orders"] > 1).mean())
    assert close(got["average_lifetime_days"], lifetime.mean())
    repeat_lifetime = lifetime[per_customer["orders"] > 1]
    assert close(got["average_repeat_lifetime_days"], repeat_lifetime.mean() if len(repeat_lifetime) else None)
    assert got["latest_order_date"] == latest.date()
    assert got["churned_customers"] == churned.sum()
    assert close(got["churn_share"], churned.mean())
    assert got["revenue_at_risk"] == pytest.approx(round(per_customer.loc[churned, "revenue"].sum(), 2), abs=CENT)
    assert got["cross_sell_customers"] == (per_customer["categories"] > 1).sum()
    assert close(got["discounted_share"], (rows["discount_rate"] > 0).mean())
    discounted = rows.loc[rows["discount_rate"] > 0, "discount_rate"]
    assert close(got["average_discount_rate"], discounted.mean() if len(discounted) else None)
    assert close(got["discount_order_size_correlation"], rows["discount_rate"].corr(rows["subtotal"]), 1e-7)


def test_cohorts(engine_on_path: Engine, orders: pd.DataFrame, filters: Filters) -> None:
    with engine_on_path.connect() as conn:
        got = analytics.cohorts(conn, filters)
    rows = apply(orders, filters).assign(month=lambda f: f["order_date"].dt.to_period("M"))
    first = rows.groupby("customer_id")["month"].transform("min")
    rows = rows.assign(cohort=first, since=(rows["month"] - first).apply(lambda d: d.n))
    expected = rows.groupby(["cohort", "since"])["customer_id"].nunique()
    sizes = expected.xs(0, level="since")
    assert len(got) == len(expected)
    for (cohort, since), customers in expected.items():
        row = got[(got["cohort"] == str(cohort)) & (got["months_since_first"] == since)].iloc[0]
        assert row["customers"] == customers
        assert row["cohort_size"] == sizes[cohort]
        assert close(row["retention"], customers / sizes[cohort])
