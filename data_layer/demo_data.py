"""Deterministic, vectorised generator of the seed's e-commerce demo orders.

The model is the seed document's: 4 customer segments (spend multiplier,
order frequency, items per order, satisfaction base), an 8-product catalog in
2 categories (base price, margin, seasonality) and 4 regions (population
weight, income, tech affinity), orders dated 2023-01-01..2024-12-30.

Orders come out as Arrow tables of ``chunk_rows`` rows, so 10,000,000 orders
never sit in memory at once; only the per-customer attributes (a few bytes
per customer) are held for the whole run. Money is computed in integer cents,
so ``subtotal = quantity * unit_price`` and
``total = subtotal - discount + shipping`` hold exactly. About 2% of orders
are refunded in full (8% of those rated below 2.5) and 3% in part (20-50%),
so net revenue differs from gross sales as in a real shop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data_layer.schema import SALES_COLUMNS


@dataclass(frozen=True)
class Segment:
    spend_multiplier: float
    frequency: float  # relative rate of repeat orders
    avg_items: float
    satisfaction_base: float
    customer_share: float  # share of customers (ours; the seed does not give one)


@dataclass(frozen=True)
class Product:
    category: str
    base_price: float
    margin: float  # estimated margin per unit, in dollars, from the seed's catalog
    seasonality: float  # demand multiplier in the holiday season (Nov-Dec)
    popularity: float  # base share of orders (ours; Mouse is the seed's most ordered)


@dataclass(frozen=True)
class Region:
    population_weight: float
    income_modifier: float
    tech_affinity: float


SEGMENTS: dict[str, Segment] = {
    "Premium": Segment(1.5, 0.3, 2.5, 4.5, 0.25),
    "Regular": Segment(1.0, 0.5, 1.8, 4.0, 0.30),
    "Budget": Segment(0.7, 0.6, 1.2, 3.8, 0.25),
    "Bulk": Segment(1.3, 0.1, 4.0, 4.2, 0.20),
}

PRODUCTS: dict[str, Product] = {
    "Laptop": Product("Electronics", 800, 400, 1.2, 0.10),
    "Monitor": Product("Electronics", 300, 200, 1.0, 0.12),
    "Keyboard": Product("Electronics", 80, 40, 0.9, 0.14),
    "Mouse": Product("Electronics", 40, 30, 0.8, 0.17),
    "Headphones": Product("Electronics", 150, 100, 1.1, 0.13),
    "Chair": Product("Office", 250, 150, 0.7, 0.12),
    "Desk": Product("Office", 400, 200, 0.8, 0.08),
    "Lamp": Product("Office", 60, 40, 0.6, 0.14),
}

REGIONS: dict[str, Region] = {
    "North": Region(0.30, 1.2, 1.3),
    "South": Region(0.25, 0.9, 0.8),
    "East": Region(0.30, 1.1, 1.2),
    "West": Region(0.15, 1.0, 1.0),
}

START_DATE = date(2023, 1, 1)
END_DATE = date(2024, 12, 30)
CUSTOMERS_PER_ORDER = 0.7  # the seed's 1,400 customers for 2,000 orders
DEFAULT_CHUNK_ROWS = 100_000

#: Relative order volume by calendar month: a Q4 peak, a quiet Q1.
MONTH_SEASONALITY = np.array([0.85, 0.80, 0.90, 0.95, 1.0, 1.0, 0.95, 1.0, 1.05, 1.15, 1.45, 1.60])
ANNUAL_GROWTH = 0.08
WEEKEND_LIFT = 1.10
WEEKDAY_NAMES = np.array(
    ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
)

_SEGMENT_NAMES = list(SEGMENTS)
_PRODUCT_NAMES = list(PRODUCTS)
_REGION_NAMES = list(REGIONS)


def customer_count(rows: int) -> int:
    """How many distinct customers ``rows`` demo orders come from."""
    return max(1, min(rows, round(rows * CUSTOMERS_PER_ORDER)))


def generate_orders(
    rows: int,
    seed: int = 42,
    *,
    first_order_number: int = 1,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[pa.Table]:
    """Yield ``rows`` demo orders as Arrow tables of at most ``chunk_rows`` rows.

    Orders come in date order (order ids rise with the date), customers are
    acquired over time by their first order and their repeat orders follow
    it. The same ``rows``, ``seed``, ``first_order_number`` and ``chunk_rows``
    give the same orders. Order ids start at ``ORD-<first_order_number>``, so
    an append can continue after the orders already stored.
    """
    if rows < 0:
        raise ValueError("rows must be zero or more")
    if rows == 0:
        return
    customers = _Customers(customer_count(rows), seed)
    calendar = _Calendar()
    id_width = max(8, len(str(first_order_number + rows)))
    starts = list(range(0, rows, chunk_rows))
    firsts_per_chunk = _first_orders_per_chunk(
        rows, customers.count, [min(rows, s + chunk_rows) - s for s in starts], seed
    )
    acquired = 0
    for start, firsts in zip(starts, firsts_per_chunk, strict=True):
        stop = min(rows, start + chunk_rows)
        rng = np.random.default_rng(np.random.SeedSequence([seed, first_order_number + start]))
        order_index = np.arange(start, stop)
        customer = customers.for_orders(rng, order_index, firsts, acquired)
        acquired += firsts
        order_date = calendar.stratified(rng, order_index, rows)
        yield _chunk(rng, order_index, customer, order_date, customers, first_order_number, id_width)


def generate_orders_frame(rows: int, seed: int = 42, **kwargs: int) -> pd.DataFrame:
    """All ``rows`` demo orders as one pandas DataFrame (for tests and small runs)."""
    tables = list(generate_orders(rows, seed, **kwargs))
    if not tables:
        return pd.DataFrame(columns=list(SALES_COLUMNS))
    return pa.concat_tables(tables).to_pandas()


def _first_orders_per_chunk(rows: int, customers: int, sizes: list[int], seed: int) -> list[int]:
    """How many customers place their first order in each chunk (exactly ``customers`` in all).

    Order 0 is always a first order; the other first orders are spread at
    random over the run, drawn chunk by chunk without replacement.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xF1257]))
    firsts_left, positions_left = customers - 1, rows - 1
    counts = []
    for i, size in enumerate(sizes):
        slots = size - 1 if i == 0 else size
        drawn = int(rng.hypergeometric(firsts_left, positions_left - firsts_left, slots)) if slots else 0
        firsts_left -= drawn
        positions_left -= slots
        counts.append(drawn + (1 if i == 0 else 0))
    return counts


class _Customers:
    """Per-customer attributes for a whole run: segment, region, repeat propensity."""

    def __init__(self, count: int, seed: int) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC057]))
        shares = np.array([s.customer_share for s in SEGMENTS.values()])
        weights = np.array([r.population_weight for r in REGIONS.values()])
        self.count = count
        self.segment = rng.choice(len(SEGMENTS), size=count, p=shares / shares.sum()).astype(np.int8)
        self.region = rng.choice(len(REGIONS), size=count, p=weights / weights.sum()).astype(np.int8)
        frequency = np.array([s.frequency for s in SEGMENTS.values()])
        propensity = frequency[self.segment] * rng.lognormal(0.0, 0.75, size=count)
        self.repeat_cumulative = np.cumsum(propensity)
        self.id_width = max(6, len(str(count)))

    def for_orders(
        self, rng: np.random.Generator, order_index: np.ndarray, firsts: int, acquired: int
    ) -> np.ndarray:
        """Customer index of each order of a chunk.

        ``firsts`` orders of the chunk, at random positions (order 0 always),
        are first orders of the next customers; every other order is a repeat
        by a customer acquired before it, chosen by repeat propensity.
        """
        n = order_index.size
        is_first = np.zeros(n, dtype=bool)
        if order_index[0] == 0:
            is_first[0] = True
            others = rng.choice(np.arange(1, n), size=firsts - 1, replace=False) if firsts > 1 else np.empty(0, int)
        else:
            others = rng.choice(n, size=firsts, replace=False) if firsts else np.empty(0, int)
        is_first[others] = True
        acquired_so_far = acquired + np.cumsum(is_first)  # customers acquired up to each order
        customer = acquired_so_far - 1
        repeat = ~is_first
        if repeat.any():
            ceiling = self.repeat_cumulative[acquired_so_far[repeat] - 1]
            picks = np.searchsorted(self.repeat_cumulative, rng.random(int(repeat.sum())) * ceiling)
            customer[repeat] = np.minimum(picks, acquired_so_far[repeat] - 1)
        return customer


class _Calendar:
    """Each day of the demo range and its share of all orders."""

    def __init__(self) -> None:
        self.days = np.arange(
            np.datetime64(START_DATE), np.datetime64(END_DATE) + 1, dtype="datetime64[D]"
        )
        months = self.days.astype("datetime64[M]").astype(int) % 12
        weekday = (self.days.astype(int) + 3) % 7  # 1970-01-01 was a Thursday
        years_in = (self.days - self.days[0]).astype(int) / 365.25
        weight = MONTH_SEASONALITY[months] * (1 + ANNUAL_GROWTH * years_in)
        weight = weight * np.where(weekday >= 5, WEEKEND_LIFT, 1.0)
        self.cdf = np.cumsum(weight) / weight.sum()

    def stratified(self, rng: np.random.Generator, order_index: np.ndarray, rows: int) -> np.ndarray:
        """Date of each order: order i falls at quantile (i + U) / rows, so dates rise with i."""
        quantiles = (order_index + rng.random(order_index.size)) / rows
        picks = np.searchsorted(self.cdf, quantiles, side="right")
        return self.days[np.minimum(picks, self.days.size - 1)]


def _chunk(
    rng: np.random.Generator,
    order_index: np.ndarray,
    customer: np.ndarray,
    order_date: np.ndarray,
    customers: _Customers,
    first_order_number: int,
    id_width: int,
) -> pa.Table:
    n = order_index.size
    segment = customers.segment[customer]
    region = customers.region[customer]
    month = order_date.astype("datetime64[M]").astype(int) % 12 + 1
    weekday = (order_date.astype(int) + 3) % 7
    holiday = month >= 11

    product = _pick_products(rng, region, holiday)
    seg = list(SEGMENTS.values())
    reg = list(REGIONS.values())
    prod = list(PRODUCTS.values())
    spend = np.array([s.spend_multiplier for s in seg])[segment]
    income = np.array([r.income_modifier for r in reg])[region]
    base_price = np.array([p.base_price for p in prod])[product]
    avg_items = np.array([s.avg_items for s in seg])[segment]
    satisfaction_base = np.array([s.satisfaction_base for s in seg])[segment]

    quantity = 1 + rng.poisson(avg_items - 1)
    unit_price_cents = np.maximum(
        100, np.rint(base_price * spend * income * rng.lognormal(0.0, 0.12, n) * 100)
    ).astype(np.int64)
    subtotal_cents = quantity * unit_price_cents

    # Larger orders are discounted more often and more deeply.
    size = subtotal_cents / 100.0
    discounted = rng.random(n) < 0.12 + 0.45 * (1 - np.exp(-size / 1500.0))
    rate = np.round((0.05 + 0.10 * np.minimum(1.0, size / 3000.0) + rng.normal(0, 0.03, n)) / 0.05) * 0.05
    discount_rate = np.where(discounted, np.clip(rate, 0.05, 0.25), 0.0).round(4)
    discount_cents = np.rint(subtotal_cents * discount_rate).astype(np.int64)
    # Shipping falls with order size and is free from $500.
    shipping_cents = np.where(
        size >= 500, 0, np.rint(599 + 1400 * (1 - size / 500.0))
    ).astype(np.int64)
    total_cents = subtotal_cents - discount_cents + shipping_cents

    satisfaction = np.clip(np.round(satisfaction_base + rng.normal(0, 0.55, n), 1), 1.0, 5.0)
    # Refunds: unhappy customers send more back; some orders are refunded in full, some in part.
    draw = rng.random(n)
    full_refund = draw < np.where(satisfaction < 2.5, 0.08, 0.02)
    partial_refund = ~full_refund & (draw > 0.97)
    refunded_cents = np.where(full_refund, total_cents, np.where(
        partial_refund, np.rint(total_cents * rng.uniform(0.2, 0.5, n)), 0)).astype(np.int64)

    order_number = order_index + first_order_number
    columns = {
        "order_id": _prefixed_ids("ORD-", order_number, id_width),
        "customer_id": _prefixed_ids("CUST-", customer + 1, customers.id_width),
        "order_date": pa.array(order_date, type=pa.date32()),
        "category": _labels([p.category for p in prod], product),
        "product": _labels(_PRODUCT_NAMES, product),
        "quantity": pa.array(quantity.astype(np.int32)),
        "unit_price": pa.array(unit_price_cents / 100.0),
        "subtotal": pa.array(subtotal_cents / 100.0),
        "discount_rate": pa.array(discount_rate),
        "discount_amount": pa.array(discount_cents / 100.0),
        "shipping_cost": pa.array(shipping_cents / 100.0),
        "total_amount": pa.array(total_cents / 100.0),
        "region": _labels(_REGION_NAMES, region),
        "customer_segment": _labels(_SEGMENT_NAMES, segment),
        "satisfaction_rating": pa.array(satisfaction),
        "day_of_week": _labels(list(WEEKDAY_NAMES), weekday),
        "month": pa.array(month.astype(np.int32)),
        "quarter": _labels(["Q1", "Q2", "Q3", "Q4"], (month - 1) // 3),
        "is_weekend": pa.array((weekday >= 5).astype(np.int32)),
        "is_holiday_season": pa.array(holiday.astype(np.int32)),
        "line_number": pa.array(np.ones(n, dtype=np.int32)),  # one line per demo order
        "line_type": pa.array(np.full(n, "sale", dtype=object), type=pa.string()),
        "refunded_amount": pa.array(refunded_cents / 100.0),
    }
    return pa.table(columns)


def _pick_products(rng: np.random.Generator, region: np.ndarray, holiday: np.ndarray) -> np.ndarray:
    """Product of each order: base popularity x tech affinity (Electronics) x holiday seasonality."""
    prod = list(PRODUCTS.values())
    popularity = np.array([p.popularity for p in prod])
    electronics = np.array([p.category == "Electronics" for p in prod])
    seasonality = np.array([p.seasonality for p in prod])
    tech = np.array([r.tech_affinity for r in REGIONS.values()])
    # One probability row per (region, holiday) combination.
    weights = popularity[None, None, :] * np.where(electronics, tech[:, None], 1.0)[:, None, :]
    weights = weights * np.stack([np.ones_like(seasonality), seasonality])[None, :, :]
    cdf = np.cumsum(weights, axis=2)
    cdf /= cdf[:, :, -1:]
    row_cdf = cdf[region, holiday.astype(int)]
    picks = (rng.random(region.size)[:, None] > row_cdf).sum(axis=1)
    return np.minimum(picks, len(prod) - 1)


def _labels(names: list[str], codes: np.ndarray) -> pa.Array:
    return pc.take(pa.array(names, type=pa.string()), pa.array(codes.astype(np.int32)))


def _prefixed_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers.astype(np.int64)), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")
