"""Order-level analytics: KPIs, order-value distribution, monthly trend, correlations."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from bi_app.analytics.stats import change, moments, money_per, pearson, ratio
from data_layer.filters import Filters
from data_layer.measures import (
    correlation_sums,
    customer_count,
    monthly_totals,
    order_value_bins,
    order_value_quantiles,
    order_value_sums,
    totals,
)
from data_layer.queries import date_bounds
from data_layer.summaries import CORRELATED, OrderSource, order_source

KPI_NAMES = ("revenue", "gross_sales", "returns", "adjustments", "orders", "customers", "average_order_value",
             "average_satisfaction")
QUANTILES = {"q1": 0.25, "median": 0.5, "q3": 0.75, "q95": 0.95, "q99": 0.99}


@dataclass(frozen=True)
class ComparedSpans:
    """The period a KPI answer covers and the spans it is compared with, like for like.

    ``through`` is the last day with data: the period's end, or the data's last order date when
    the period runs past it (then ``partial``). ``previous`` is the previous period (the same
    number of calendar months before a range of whole months, else the same number of days
    before) and ``last_year`` the same dates a year earlier (None for a period of a year or
    more); for a partial period, each up to the day that matches ``through``.
    """

    start: date
    end: date
    through: date
    partial: bool
    previous: tuple[date, date]
    last_year: tuple[date, date] | None


def compared_spans(start: date, end: date, data_end: date | None, *, by_days: bool = False) -> ComparedSpans:
    """The spans :func:`kpis` compares for the period ``start``..``end`` when the data ends on ``data_end``
    (``by_days``: the same number of days before, even for whole calendar months, as "the last 30 days" means)."""
    partial = data_end is not None and start <= data_end < end
    through = data_end if data_end is not None and partial else end
    if not by_days and start.day == 1 and (end + timedelta(days=1)).day == 1:  # whole calendar months
        months = (end.year - start.year) * 12 + end.month - start.month + 1
        previous_start = shifted(start, months=months)
        previous_through = shifted(through, months=months)
    else:
        length = timedelta(days=(end - start).days + 1)
        previous_start, previous_through = start - length, through - length
    last_year = (shifted(start, years=1), shifted(through, years=1))
    return ComparedSpans(
        start=start, end=end, through=through, partial=partial,
        previous=(previous_start, min(previous_through, start - timedelta(days=1))),
        last_year=last_year if last_year[1] < start else None,
    )


def span_text(start: date | None, end: date | None) -> str:
    """A span of days in words: "2024-01-01 to 2024-03-31", "from 2030-01-01 on", "up to 2020-01-01"."""
    if start and end:
        return f"{start} to {end}"
    if start or end:
        return f"from {start} on" if start else f"up to {end}"
    return "no orders"


def shifted(day: date, *, months: int = 0, years: int = 0) -> date:
    """The same day ``months`` months or ``years`` years earlier; the month's last day where it is
    shorter (29 February a year earlier is the 28th), and a month's last day stays its last day."""
    shifted = (pd.Timestamp(day) - pd.DateOffset(months=months, years=years)).date()
    if (day + timedelta(days=1)).day == 1:
        shifted = (pd.Timestamp(shifted) + pd.offsets.MonthEnd(0)).date()
    return shifted


def kpis(conn: Connection, filters: Filters) -> dict[str, Any]:
    """Net revenue (with its gross sales, returns and adjustments), orders, unique customers, average
    order value (net revenue / orders) and satisfaction, each with its change against the previous
    period and the same period last year. Money in the data's currency.

    The period is the filter's date range or (without one) the span of the matching orders. A
    period that runs past the data's last order date is partial: it is compared like for like
    (:func:`compared_spans`), and ``period``, ``previous_period`` and ``same_period_last_year``
    say which days were compared.
    """
    source = order_source(conn)
    lo, hi = date_bounds(conn, source, filters.without_dates())
    start, end = filters.start or lo, filters.end or hi
    if start and end and start > end:  # a filter wholly before or after the data: its own bounds, nothing to compare
        start, end = filters.start, filters.end
    current = _kpi_values(conn, source, filters)
    previous = last_year = dict.fromkeys(KPI_NAMES)
    spans = None
    if start and end:
        spans = compared_spans(start, end, date_bounds(conn, source, Filters())[1], by_days=filters.by_days)
        previous = _kpi_values(conn, source, replace(filters, start=spans.previous[0], end=spans.previous[1]))
        if spans.last_year:
            last_year = _kpi_values(conn, source, replace(filters, start=spans.last_year[0], end=spans.last_year[1]))
    return {
        "period": {"start": start, "end": end, "through": spans.through if spans else end,
                   "partial": bool(spans and spans.partial)},
        "previous_period": {"start": spans.previous[0], "end": spans.previous[1]} if spans else None,
        "same_period_last_year": {"start": spans.last_year[0], "end": spans.last_year[1]}
        if spans and spans.last_year else None,
        **{
            name: {
                "value": current[name],
                "previous": previous[name],
                "change": change(current[name], previous[name]),
                "last_year": last_year[name],
                "change_last_year": change(current[name], last_year[name]),
            }
            for name in KPI_NAMES
        },
    }


def _kpi_values(conn: Connection, source: OrderSource, filters: Filters) -> dict[str, float | None]:
    row = totals(conn, filters, ("revenue", "gross_sales", "returns", "adjustments", "orders", "satisfaction_sum",
                                 "satisfaction_n"))
    revenue, orders = round(float(row["revenue"]), 2), int(row["orders"])
    return {
        "revenue": revenue,
        "gross_sales": round(float(row["gross_sales"]), 2),
        "returns": round(float(row["returns"]), 2),
        "adjustments": round(float(row["adjustments"]), 2),
        "orders": orders,
        "customers": customer_count(conn, filters),
        "average_order_value": money_per(revenue, orders),
        "average_satisfaction": ratio(row["satisfaction_sum"], row["satisfaction_n"]),
    }


def distribution(conn: Connection, filters: Filters, bins: int = 20) -> dict[str, Any]:
    """Order-value statistics (mean, median, std, quartiles, q95, skewness, kurtosis) and a histogram.

    An order's value is the sum of its lines (of the lines that match the
    filters). Quantiles use linear interpolation between the two nearest
    orders (as pandas does); histogram bins are equal-width from min to max (as numpy), or,
    when the orders above the 99th percentile would stretch the axis to more than twice
    its length, from min to that percentile, followed by one ``overflow`` bin holding the
    orders above it (up to max).
    """
    row = order_value_sums(conn, filters)
    n = int(row["orders"])
    stats: dict[str, Any] = {"orders": n, **moments(n, row["order_value"], row["revenue_p2"], row["revenue_p3"],
                                                    row["revenue_p4"])}
    stats["min"] = float(row["revenue_min"]) if n else None
    stats["max"] = float(row["revenue_max"]) if n else None
    stats.update(order_value_quantiles(conn, filters, QUANTILES, n))
    # A few huge orders would squeeze every other order into the first bar: past the 99th
    # percentile, when they would take more of the axis than everything below it, they share one bar.
    clipped = bool(n) and stats["max"] - stats["q99"] > stats["q99"] - stats["min"]
    stats["histogram"] = (_histogram(conn, filters, stats["min"], stats["q99"] if clipped else stats["max"], bins,
                                     overflow_to=stats["max"] if clipped else None) if n else [])
    return stats


def _histogram(conn: Connection, filters: Filters, lo: float, hi: float, bins: int,
               overflow_to: float | None = None) -> list[dict[str, Any]]:
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5  # numpy's range for a single value
    edges = np.linspace(lo, hi, bins + 1)
    counts = order_value_bins(conn, filters, edges, overflow_above=hi if overflow_to is not None else None)
    histogram = [
        {"bin_start": float(edges[i]), "bin_end": float(edges[i + 1]), "orders": counts.get(i, 0),
         "overflow": False}
        for i in range(bins)
    ]
    if overflow_to is not None:
        histogram.append({"bin_start": float(hi), "bin_end": float(overflow_to), "orders": counts.get(bins, 0),
                          "overflow": True})
    return histogram


def trend(conn: Connection, filters: Filters) -> dict[str, Any]:
    """Monthly net revenue and orders with month-over-month growth and a 3-month moving average;
    quarterly seasonality.

    A month the analysed span covers only in part (the data's last order date, or the filters'
    dates, fall inside it) is marked ``partial`` and left out of growth and moving averages: no
    growth for it or for the month after it, no average over a window holding it. ``through`` is
    the last day the answer covers.
    """
    source = order_source(conn)
    monthly = monthly_totals(conn, filters, ("revenue", "orders"))
    if monthly.empty:
        return {"monthly": monthly.assign(partial=[], growth=[], moving_average_3=[]), "quarterly": pd.DataFrame(),
                "q4_vs_q1": None, "through": None}
    data_end = date_bounds(conn, source, Filters())[1]
    through = min(filters.end, data_end) if filters.end and data_end else data_end or filters.end
    months = pd.period_range(monthly["month"].min(), monthly["month"].max(), freq="M")
    monthly = (monthly.set_index("month").reindex(months.strftime("%Y-%m"), fill_value=0)
               .rename_axis("month").reset_index())
    monthly["revenue"] = monthly["revenue"].astype(float).round(2)
    monthly["orders"] = monthly["orders"].astype(int)
    partial = months.end_time.normalize().date > through
    if filters.start:
        partial |= months.start_time.date < filters.start
    monthly["partial"] = partial
    complete = monthly["revenue"].where(~monthly["partial"])
    previous = complete.shift(1)
    monthly["growth"] = (complete - previous) / previous.where(previous != 0)
    monthly["moving_average_3"] = complete.rolling(3).mean()
    quarter = "Q" + ((monthly["month"].str[5:7].astype(int) - 1) // 3 + 1).astype(str)
    quarterly = (
        monthly.assign(quarter=quarter)
        .groupby("quarter", as_index=False)[["revenue", "orders"]]
        .sum()
        .round({"revenue": 2})
    )
    by_quarter = dict(zip(quarterly["quarter"], quarterly["revenue"], strict=True))
    return {
        "monthly": monthly[["month", "revenue", "orders", "partial", "growth", "moving_average_3"]],
        "quarterly": quarterly,
        "q4_vs_q1": change(by_quarter.get("Q4"), by_quarter.get("Q1")),
        "through": through,
    }


def correlations(conn: Connection, filters: Filters) -> pd.DataFrame:
    """Pearson correlation of total_amount with each numeric column, strongest first."""
    sums = correlation_sums(conn, filters, [(x, "total_amount") for x in CORRELATED])
    records = []
    for x in CORRELATED:
        terms = sums[(x, "total_amount")]
        records.append({"column": x, "correlation": pearson(*terms), "pairs": int(terms[0] or 0)})
    frame = pd.DataFrame(records)
    # None where a column is constant or absent: as floats, NaN sorts last instead of failing.
    order = frame["correlation"].astype(float).abs().fillna(-1).sort_values(ascending=False).index
    return frame.loc[order].reset_index(drop=True)

