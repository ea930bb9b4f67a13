"""Data-quality report on the sales table: nulls, arithmetic, date bounds, row counts.

All counts come from one aggregate query, so the report costs one table scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import pandas as pd
from sqlalchemy import Connection, String, func, inspect, literal, or_, select, type_coerce

from data_layer.engine import run
from data_layer.schema import CRITICAL_COLUMNS, SALES_TABLE, sales

#: Money columns are DECIMAL(10,2): anything beyond half a cent is a real error.
CENT_TOLERANCE = 0.005
DEFAULT_DATE_BOUNDS = (date(1990, 1, 1), date(2100, 1, 1))


@dataclass(frozen=True)
class Check:
    """One named check: how many rows fail it, and what it means."""

    name: str
    failing_rows: int
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.failing_rows == 0


@dataclass(frozen=True)
class QualityReport:
    """The outcome of :func:`quality_report`."""

    row_count: int
    min_date: date | None
    max_date: date | None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]


def quality_report(
    conn: Connection,
    *,
    expected_rows: int | None = None,
    date_bounds: tuple[date, date] = DEFAULT_DATE_BOUNDS,
) -> QualityReport:
    """Check the sales table; ``expected_rows`` adds the check rows in = rows stored."""
    c = sales.c

    def count_where(condition) -> object:  # noqa: ANN001 - a SQL expression
        return func.count().filter(condition)

    lo, hi = date_bounds
    ledger = {"refunded_amount"} <= {column["name"] for column in inspect(conn).get_columns(SALES_TABLE)}
    discount = func.coalesce(c.discount_amount, 0)
    shipping = func.coalesce(c.shipping_cost, 0)
    measures = {
        "rows": func.count(),
        "min_date": func.min(c.order_date),
        "max_date": func.max(c.order_date),
        **{f"null_{name}": count_where(c[name].is_(None)) for name in CRITICAL_COLUMNS},
        # A unit price is a rounded figure: half a cent per unit of slack.
        "subtotal": count_where(
            # (plus a hair for SQLite's binary floats: 0.13 - 0.125 is a little over half a cent there)
            func.abs(c.subtotal - c.quantity * c.unit_price) > CENT_TOLERANCE * func.abs(c.quantity) + 1e-9
        ),
        "total": count_where(
            func.abs(c.total_amount - (c.subtotal - discount + shipping)) > CENT_TOLERANCE
        ),
        "discount": count_where(
            # A rate has four decimals: half a unit of the last one of slack on top of a cent.
            func.abs(discount - c.subtotal * func.coalesce(c.discount_rate, 0))
            > 0.01 + CENT_TOLERANCE + func.abs(c.subtotal) * 0.00005
        ),
        "quantity": count_where(c.quantity == 0),
        # Lines stored before the ledger columns existed are sale lines with nothing refunded.
        "refunds": count_where(or_(c.refunded_amount < 0, c.refunded_amount > func.abs(c.total_amount)))
        if ledger else literal(0),
        "satisfaction": count_where(
            or_(c.satisfaction_rating < 1, c.satisfaction_rating > 5)
        ),
        # Compared as dates on both dialects; SQLite stores ISO text, which sorts the same.
        "dates": count_where(or_(c.order_date < lo, c.order_date >= hi)),
    }
    query = select(*[_label(name, expr) for name, expr in measures.items()])
    row = run(conn, query).mappings().one()

    checks = [
        Check(f"no NULL {name}", int(row[f"null_{name}"]), f"{name} is NULL")
        for name in CRITICAL_COLUMNS
    ]
    checks += [
        Check("subtotal = quantity x unit_price", int(row["subtotal"]), "off by more than half a cent"),
        Check(
            "total = subtotal - discount + shipping", int(row["total"]), "off by more than half a cent"
        ),
        Check("discount = subtotal x rate", int(row["discount"]), "off by more than a cent"),
        Check("quantity not 0", int(row["quantity"]), "zero quantity"),
        Check("refund within the line's amount", int(row["refunds"]), "refund below 0 or above the line's amount"),
        Check("satisfaction in 1..5", int(row["satisfaction"]), "rating outside 1..5"),
        Check(
            f"order_date in {lo.isoformat()}..{(hi - pd.Timedelta(days=1)).isoformat()}",
            int(row["dates"]),
            "date outside the expected range",
        ),
    ]
    rows = int(row["rows"])
    if expected_rows is not None:
        checks.append(
            Check(
                "rows in = rows stored",
                abs(rows - expected_rows),
                f"{expected_rows:,} expected, {rows:,} stored",
            )
        )
    return QualityReport(
        row_count=rows,
        min_date=as_date(row["min_date"]),
        max_date=as_date(row["max_date"]),
        checks=checks,
    )


def _label(name: str, expr):  # noqa: ANN001, ANN202 - SQL expressions
    if name in ("min_date", "max_date"):
        # Read as stored (no Date parsing): a seed-made SQLite table keeps timestamps as text.
        return type_coerce(expr, String).label(name)
    return expr.label(name)


def as_date(value: object) -> date | None:
    """A stored date value (date, datetime or ISO text) as a :class:`date`."""
    if value is None:
        return None
    return pd.Timestamp(value).date()
