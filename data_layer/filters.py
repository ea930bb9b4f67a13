"""The one filter model every query, export and API answer goes through.

A :class:`Filters` value is parsed from URL query parameters
(``start``, ``end``, ``region``, ``segment``, ``category``, ``product``; list
parameters repeat: ``?region=North&region=East``), checked against the values
the data holds, and turned into SQLAlchemy Core conditions with bound
parameters only. Row-level scoping (a regional manager's region) will be added
here, in :func:`conditions`, so it applies to every query at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Iterable, Mapping

from sqlalchemy import ColumnElement, Table, and_, true

from data_layer.schema import TEXT_LIMIT

#: Query parameter -> (Filters field, sales column) for the list filters.
LIST_PARAMETERS: dict[str, tuple[str, str]] = {
    "region": ("regions", "region"),
    "segment": ("segments", "customer_segment"),
    "category": ("categories", "category"),
    "product": ("products", "product"),
}
DATE_PARAMETERS = ("start", "end")
FILTER_PARAMETERS: tuple[str, ...] = DATE_PARAMETERS + tuple(LIST_PARAMETERS)

MAX_VALUE_LENGTH = TEXT_LIMIT
MAX_VALUES_PER_PARAMETER = 100
EARLIEST_DATE, LATEST_DATE = date(1900, 1, 1), date(2100, 12, 31)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class FilterError(ValueError):
    """A query parameter that cannot be used; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


@dataclass(frozen=True)
class Filters:
    """Date range (inclusive) and the regions, segments, categories and products to keep.

    An empty tuple means "all". Values are kept sorted and unique, so equal
    filters are equal values (and share a cache key).
    """

    start: date | None = None
    end: date | None = None
    regions: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    products: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, _column in LIST_PARAMETERS.values():
            object.__setattr__(self, name, tuple(sorted(set(getattr(self, name)))))

    @property
    def is_empty(self) -> bool:
        """True when nothing is filtered."""
        return self == Filters()

    def to_query(self) -> list[tuple[str, str]]:
        """The query parameters that parse back to these filters, in a stable order."""
        pairs: list[tuple[str, str]] = []
        if self.start:
            pairs.append(("start", self.start.isoformat()))
        if self.end:
            pairs.append(("end", self.end.isoformat()))
        for parameter, (name, _column) in LIST_PARAMETERS.items():
            pairs.extend((parameter, value) for value in getattr(self, name))
        return pairs

    def without_dates(self) -> "Filters":
        """The same filters over the whole date range."""
        return replace(self, start=None, end=None)

    def cache_key(self) -> str:
        """A stable text form of the filters for cache keys."""
        return "&".join(f"{k}={v}" for k, v in self.to_query())

    def describe(self) -> list[tuple[str, str]]:
        """Human-readable (label, value) pairs, e.g. for the report's first sheet."""
        return [
            ("Start date", self.start.isoformat() if self.start else "(first order)"),
            ("End date", self.end.isoformat() if self.end else "(last order)"),
            ("Regions", ", ".join(self.regions) or "(all)"),
            ("Segments", ", ".join(self.segments) or "(all)"),
            ("Categories", ", ".join(self.categories) or "(all)"),
            ("Products", ", ".join(self.products) or "(all)"),
        ]


def parse_filters(
    query: Mapping[str, Iterable[str]],
    *,
    known_values: Mapping[str, Iterable[str]] | None = None,
    allowed_extra: Iterable[str] = (),
) -> Filters:
    """Parse query parameters (each name -> its list of values) into :class:`Filters`.

    Raises :class:`FilterError` naming the parameter for an unknown parameter
    (other than ``allowed_extra``), a malformed or reversed date, a repeated
    date, an over-long or control-character value, or a value not in
    ``known_values`` (parameter -> the values the data holds).
    """
    allowed = set(FILTER_PARAMETERS) | set(allowed_extra)
    lists: dict[str, list[str]] = {}
    for parameter, raw_values in query.items():
        values = [raw_values] if isinstance(raw_values, str) else list(raw_values)
        if parameter not in allowed:
            shown = parameter if len(parameter) <= 40 and not _CONTROL.search(parameter) else "(unreadable)"
            raise FilterError(
                shown, f"unknown parameter; use {', '.join(sorted(allowed))}"
            )
        lists[parameter] = values

    start = _parse_date("start", lists.get("start"))
    end = _parse_date("end", lists.get("end"))
    if start and end and start > end:
        raise FilterError("start", f"{start.isoformat()} is after end {end.isoformat()}")

    chosen: dict[str, tuple[str, ...]] = {}
    for parameter, (name, _column) in LIST_PARAMETERS.items():
        values = lists.get(parameter, [])
        if len(values) > MAX_VALUES_PER_PARAMETER:
            raise FilterError(parameter, f"at most {MAX_VALUES_PER_PARAMETER} values")
        for value in values:
            _check_text(parameter, value)
        if known_values is not None and values:
            known = set(known_values.get(parameter, ()))
            unknown = sorted(set(values) - known)
            if unknown:
                listed = sorted(known)
                shown = ", ".join(map(_quote, listed[:8])) + (f", ... ({len(listed):,} in all)" if len(listed) > 8 else "")
                raise FilterError(parameter, f"unknown {parameter} {_quote(unknown[0])}; known: {shown or '(none)'}")
        chosen[name] = tuple(values)
    return Filters(start=start, end=end, **chosen)


def conditions(filters: Filters, table: Table) -> ColumnElement[bool]:
    """The WHERE clause for ``filters`` on any table with the sales dimension columns."""
    c = table.c
    clauses: list[ColumnElement[bool]] = []
    if filters.start is not None:
        clauses.append(c.order_date >= filters.start)
    if filters.end is not None:
        # Half-open, so timestamps stored by other tools still fall on their day.
        clauses.append(c.order_date < filters.end + timedelta(days=1))
    for name, column in LIST_PARAMETERS.values():
        values = getattr(filters, name)
        if values:
            clauses.append(c[column].in_(values))
    return and_(true(), *clauses)


def _parse_date(parameter: str, values: list[str] | None) -> date | None:
    if not values:
        return None
    if len(values) > 1:
        raise FilterError(parameter, "given more than once")
    text = values[0].strip()
    if text == "":
        return None
    if not _ISO_DATE.fullmatch(text):
        raise FilterError(parameter, f"{_quote(text)} is not a date; use YYYY-MM-DD")
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise FilterError(parameter, f"{_quote(text)} is not a valid date") from None
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise FilterError(parameter, f"{text} is outside {EARLIEST_DATE.year}..{LATEST_DATE.year}")
    return value


def _check_text(parameter: str, value: str) -> None:
    if value == "":
        raise FilterError(parameter, "empty value")
    if len(value) > MAX_VALUE_LENGTH:
        raise FilterError(parameter, f"value longer than {MAX_VALUE_LENGTH} characters")
    if _CONTROL.search(value):
        raise FilterError(parameter, "value contains control characters")


def _quote(value: str) -> str:
    shown = value if len(value) <= 40 else value[:37] + "..."
    return repr(shown)
