"""The one filter model every query, export and API answer goes through.

A :class:`Filters` value is parsed from URL query parameters
(``start``, ``end``, ``region``, ``segment``, ``category``, ``product``; list
parameters repeat: ``?region=North&region=East``), checked against the values
the data holds, and turned into SQLAlchemy Core conditions with bound
parameters only. A ``period`` (``last-90-days``, ``month-to-date``, ... see
:data:`PERIODS`) stands for dates relative to the data's last order date, and
``compare`` says which comparison the pages lead with. Row-level scoping (a regional manager's region) will be added
here, in :func:`conditions`, so it applies to every query at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import date, timedelta

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
FILTER_PARAMETERS: tuple[str, ...] = DATE_PARAMETERS + ("period", "compare") + tuple(LIST_PARAMETERS)

#: Date presets, relative to the data's last order date (the *anchor*), as an executive asks.
#: A preset that runs past the anchor (month, quarter, year to date, the last 12 months) is a partial
#: period: its comparisons cover the same elapsed days (docs/MEASURES.md, "Periods").
PERIODS: dict[str, str] = {
    "last-7-days": "Last 7 days",
    "last-30-days": "Last 30 days",
    "last-90-days": "Last 90 days",
    "month-to-date": "Month to date",
    "quarter-to-date": "Quarter to date",
    "year-to-date": "Year to date",
    "last-12-months": "Last 12 months",
    "previous-week": "Previous week",
    "previous-month": "Previous month",
    "previous-quarter": "Previous quarter",
    "all": "All time",
}
#: What the KPI cards and the trend compare with (the API answers both).
COMPARISONS: dict[str, str] = {"previous": "previous period", "last-year": "same period last year"}

MAX_VALUE_LENGTH = TEXT_LIMIT
MAX_VALUES_PER_PARAMETER = 100
EARLIEST_DATE, LATEST_DATE = date(1900, 1, 1), date(2100, 12, 31)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class FilterError(ValueError):
    """A query parameter that cannot be used; ``parameter`` names it, and ``values`` its values at fault
    when the others are good (unknown or out-of-scope values of a list filter; empty: the parameter as a
    whole)."""

    #: The HTTP status an API or export answers it with.
    status = 400

    def __init__(self, parameter: str, message: str, values: tuple[str, ...] = ()) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message
        self.values = values


class OutOfScopeError(FilterError):
    """A filter asks for a region outside the regions its viewer may see."""

    status = 403


#: Filter fields that choose how an answer is shown, not which lines it covers: the preset a date
#: range came from (its dates are in the key) and the comparison the pages lead with.
NOT_IN_ANSWERS = ("period", "compare")


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
    #: The preset (a key of :data:`PERIODS`) ``start`` and ``end`` were resolved from, if any: a link
    #: keeps the preset, so it follows the data.
    period: str | None = None
    #: Which comparison the pages lead with (a key of :data:`COMPARISONS`); queries ignore it.
    compare: str = "previous"
    #: The regions the viewer may see (their user's scope; empty: every region): applied by
    #: :func:`conditions` to every query besides ``regions``, part of every cache key, never a URL
    #: parameter. Set only by :func:`parse_filters`, from the signed-in user.
    scope: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (*(name for name, _column in LIST_PARAMETERS.values()), "scope"):
            object.__setattr__(self, name, tuple(sorted(set(getattr(self, name)))))

    def to_query(self) -> list[tuple[str, str]]:
        """The query parameters that parse back to these filters, in a stable order (a preset rather
        than the dates it stands for)."""
        pairs: list[tuple[str, str]] = []
        if self.period:
            pairs.append(("period", self.period))
        else:
            pairs.extend((name, day.isoformat()) for name, day in (("start", self.start), ("end", self.end)) if day)
        if self.compare != "previous":
            pairs.append(("compare", self.compare))
        for parameter, (name, _column) in LIST_PARAMETERS.items():
            pairs.extend((parameter, value) for value in getattr(self, name))
        return pairs

    @property
    def by_days(self) -> bool:
        """True for "the last N days": compared with the N days before, even when they are a calendar month."""
        return self.period is not None and self.period.startswith("last-") and self.period.endswith("-days")

    def without_dates(self) -> Filters:
        """The same filters over the whole date range."""
        return replace(self, start=None, end=None, period=None)

    def cache_key(self) -> str:
        """A stable text form of what the filters select, for every cache key (see
        :func:`data_layer.cache.result_key`): each field but those in :data:`NOT_IN_ANSWERS`, so a
        field added to the filters changes every key at once."""
        parameters = {name: parameter for parameter, (name, _column) in LIST_PARAMETERS.items()}
        pairs: list[tuple[str, str]] = []
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in NOT_IN_ANSWERS or value is None:
                continue
            if isinstance(value, tuple):
                pairs += [(parameters.get(field.name, field.name), str(item)) for item in value]
            else:
                pairs.append((field.name, value.isoformat() if isinstance(value, date) else str(value)))
        if self.by_days and self.start:
            pairs.append(("compared", "by-days"))
        return "&".join(f"{k}={v}" for k, v in pairs)

    def describe(self) -> list[tuple[str, str]]:
        """Human-readable (label, value) pairs, e.g. for the report's first sheet."""
        return [
            *([("Period", PERIODS[self.period])] if self.period else []),
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
    data_dates: tuple[date | None, date | None] = (None, None),
    scope: Iterable[str] = (),
) -> Filters:
    """Parse query parameters (each name -> its list of values) into :class:`Filters`.

    A ``period`` is resolved to dates with :func:`period_dates` from ``data_dates`` (the data's first
    and last order dates). Raises :class:`FilterError` naming the parameter for an unknown parameter
    (other than ``allowed_extra``), a malformed or reversed date, a repeated
    date, a period together with dates, an unknown period or comparison,
    an over-long or control-character value, or a value not in
    ``known_values`` (parameter -> the values the data holds). ``scope`` (the viewer's regions;
    empty: every region) goes into the filters; a region outside it raises :class:`OutOfScopeError`,
    and the regions listed in a message are only those in it.
    """
    scope = tuple(scope)
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
    compare = _parse_choice("compare", lists.get("compare"), COMPARISONS) or "previous"
    period = _parse_choice("period", lists.get("period"), PERIODS)
    if period and (start or end):
        raise FilterError("period", "give a period or start and end dates, not both")
    if period:
        start, end = period_dates(period, data_dates[1])

    chosen: dict[str, tuple[str, ...]] = {}
    for parameter, (name, _column) in LIST_PARAMETERS.items():
        values = lists.get(parameter, [])
        if len(values) > MAX_VALUES_PER_PARAMETER:
            raise FilterError(parameter, f"at most {MAX_VALUES_PER_PARAMETER} values")
        for value in values:
            _check_text(parameter, value)
        outside = sorted(set(values) - set(scope)) if scope and parameter == "region" else []
        if outside:
            raise OutOfScopeError(parameter, f"{_quote(outside[0])} is not among the regions you may see",
                                  tuple(outside))
        if known_values is not None and values:
            known = set(known_values.get(parameter, ()))
            if scope and parameter == "region":
                known &= set(scope)
            unknown = sorted(set(values) - known)
            if unknown:
                listed = sorted(known)
                more = f", ... ({len(listed):,} in all)" if len(listed) > 8 else ""
                shown = ", ".join(map(_quote, listed[:8])) + more
                raise FilterError(parameter, f"unknown {parameter} {_quote(unknown[0])}; known: {shown or '(none)'}",
                                  tuple(unknown))
        chosen[name] = tuple(values)
    return Filters(start=start, end=end, period=period, compare=compare, scope=scope, **chosen)


def period_dates(period: str, anchor: date | None) -> tuple[date | None, date | None]:
    """The first and last day of preset ``period`` (a key of :data:`PERIODS`) when the data's last
    order is on ``anchor`` (no data, or ``all``: no dates). "To date" presets and the last 12 months
    run to the end of the anchor's month, quarter or year: a partial period, compared like for like."""
    if anchor is None or period == "all":
        return None, None
    if period.startswith("last-") and period.endswith("-days"):
        return anchor - timedelta(days=int(period.split("-")[1]) - 1), anchor
    if period == "previous-week":  # Monday to Sunday, the week before the anchor's
        monday = anchor - timedelta(days=anchor.weekday() + 7)
        return monday, monday + timedelta(days=6)
    month = anchor.replace(day=1)
    quarter = month.replace(month=(anchor.month - 1) // 3 * 3 + 1)
    starts = {
        "month-to-date": (month, 1),
        "quarter-to-date": (quarter, 3),
        "year-to-date": (month.replace(month=1), 12),
        "last-12-months": (_months_before(month, 11), 12),
        "previous-month": (_months_before(month, 1), 1),
        "previous-quarter": (_months_before(quarter, 3), 3),
    }
    first, months = starts[period]
    return first, _months_before(first, -months) - timedelta(days=1)


def default_period(first: date | None, last: date | None) -> str:
    """The period a dashboard opens on: the last 90 days, or 30, or 7, the longest whose previous
    span the data covers whole (so the cards compare like with like); all time when the data spans
    less than two weeks."""
    for days in (90, 30, 7):
        if first is not None and last is not None and first <= last - timedelta(days=2 * days - 1):
            return f"last-{days}-days"
    return "all"


def _months_before(first_of_month: date, months: int) -> date:
    index = first_of_month.year * 12 + first_of_month.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


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
    if filters.scope:
        clauses.append(c.region.in_(filters.scope))
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


def _parse_choice(parameter: str, values: list[str] | None, choices: Mapping[str, str]) -> str | None:
    if not values:
        return None
    if len(values) > 1:
        raise FilterError(parameter, "given more than once")
    if values[0] not in choices:
        raise FilterError(parameter, f"unknown {parameter} {_quote(values[0])}; use {', '.join(choices)}")
    return values[0]


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
