"""The one filter model every query, export and API answer goes through.

A :class:`Filters` value becomes SQLAlchemy Core conditions with bound
parameters only. Row-level scoping (a regional manager's region) will be
added here, in :func:`conditions`, so it applies to every query at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import ColumnElement, Table, and_, true


@dataclass(frozen=True)
class Filters:
    """Date range (inclusive) and the regions, segments, categories and products to keep.

    An empty tuple means "all".
    """

    start: date | None = None
    end: date | None = None
    regions: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    products: tuple[str, ...] = ()


def conditions(filters: Filters, table: Table) -> ColumnElement[bool]:
    """The WHERE clause for ``filters`` on a table with the sales columns."""
    c = table.c
    clauses: list[ColumnElement[bool]] = []
    if filters.start is not None:
        clauses.append(c.order_date >= filters.start)
    if filters.end is not None:
        # Half-open, so timestamps stored by other tools still fall on their day.
        clauses.append(c.order_date < filters.end + timedelta(days=1))
    for column, values in (
        ("region", filters.regions),
        ("customer_segment", filters.segments),
        ("category", filters.categories),
        ("product", filters.products),
    ):
        if values:
            clauses.append(c[column].in_(values))
    return and_(true(), *clauses)
