"""Which days a KPI answer compares (docs/MEASURES.md, "Periods"), on the calendar's edge cases."""

from __future__ import annotations

from datetime import date

import pytest

from bi_app.analytics.orders import compared_spans
from data_layer.filters import FilterError, default_period, parse_filters, period_dates

D = date.fromisoformat


@pytest.mark.parametrize(("start", "end", "data_end", "through", "previous", "last_year"), [
    # A whole month before the data's end: the whole previous month, and the month a year before.
    ("2024-06-01", "2024-06-30", "2025-02-08", "2024-06-30", ("2024-05-01", "2024-05-31"),
     ("2023-06-01", "2023-06-30")),
    # February of a leap year: all of January; last year's February ends on the 28th.
    ("2024-02-01", "2024-02-29", "2025-02-08", "2024-02-29", ("2024-01-01", "2024-01-31"),
     ("2023-02-01", "2023-02-28")),
    # Half a year: the half before, whole.
    ("2023-01-01", "2023-06-30", "2025-01-01", "2023-06-30", ("2022-07-01", "2022-12-31"),
     ("2022-01-01", "2022-06-30")),
    # The data ends on the 8th: 1-8 against 1-8.
    ("2025-02-01", "2025-02-28", "2025-02-08", "2025-02-08", ("2025-01-01", "2025-01-08"),
     ("2024-02-01", "2024-02-08")),
    # Days, not months: the same number of days before, up to the matching day.
    ("2024-03-05", "2024-03-18", "2024-03-10", "2024-03-10", ("2024-02-20", "2024-02-25"),
     ("2023-03-05", "2023-03-10")),
    # A period of more than a year has no same period last year.
    ("2023-01-01", "2024-06-30", "2025-01-01", "2024-06-30", ("2021-07-01", "2022-12-31"), None),
])
def test_compared_spans(start: str, end: str, data_end: str, through: str, previous: tuple[str, str],
                        last_year: tuple[str, str] | None) -> None:
    spans = compared_spans(D(start), D(end), D(data_end))
    assert spans.through == D(through) and spans.partial == (D(through) < D(end))
    assert spans.previous == (D(previous[0]), D(previous[1]))
    assert spans.last_year == (None if last_year is None else (D(last_year[0]), D(last_year[1])))


@pytest.mark.parametrize(("query", "start", "end"), [("start=2030-01-01", "2030-01-01", None),
                                                      ("end=2020-01-01", None, "2020-01-01")])
def test_a_filter_wholly_outside_the_data_keeps_its_own_bounds(client, query: str, start: str | None,  # noqa: ANN001
                                                               end: str | None) -> None:
    """From a day after the data's last order (or up to one before its first): no orders, the filter's own
    bound, never a period that ends before it starts, and nothing to compare with."""
    data = client.get(f"/api/v1/kpis?{query}").get_json()["data"]
    assert data["period"]["start"] == start and data["period"]["end"] == end
    assert data["previous_period"] is None and data["same_period_last_year"] is None
    assert data["orders"]["value"] == 0 and data["revenue"]["value"] == 0


@pytest.mark.parametrize(("period", "anchor", "start", "end"), [
    ("last-7-days", "2024-03-10", "2024-03-04", "2024-03-10"),
    ("last-90-days", "2024-03-10", "2023-12-12", "2024-03-10"),
    ("month-to-date", "2024-03-10", "2024-03-01", "2024-03-31"),
    ("quarter-to-date", "2024-05-10", "2024-04-01", "2024-06-30"),
    ("year-to-date", "2024-05-10", "2024-01-01", "2024-12-31"),
    ("last-12-months", "2024-05-10", "2023-06-01", "2024-05-31"),
    ("previous-month", "2024-01-10", "2023-12-01", "2023-12-31"),
    ("previous-week", "2024-03-10", "2024-02-26", "2024-03-03"),  # a Sunday: the week before its own
    ("previous-week", "2024-03-04", "2024-02-26", "2024-03-03"),  # a Monday
    ("previous-week", "2024-01-03", "2023-12-25", "2023-12-31"),  # across a year's end
    ("previous-quarter", "2024-02-29", "2023-10-01", "2023-12-31"),
    ("previous-quarter", "2024-12-31", "2024-07-01", "2024-09-30"),
])
def test_presets_are_relative_to_the_datas_last_order(period: str, anchor: str, start: str, end: str) -> None:
    assert period_dates(period, D(anchor)) == (D(start), D(end))
    assert period_dates(period, None) == (None, None) and period_dates("all", D(anchor)) == (None, None)


def test_a_preset_to_date_is_compared_like_for_like() -> None:
    """Month to date on the 10th: the 1st to the 10th, against the 1st to the 10th of the month before."""
    start, end = period_dates("month-to-date", D("2024-03-10"))
    spans = compared_spans(start, end, D("2024-03-10"))
    assert spans.partial and spans.through == D("2024-03-10")
    assert spans.previous == (D("2024-02-01"), D("2024-02-10"))
    assert spans.last_year == (D("2023-03-01"), D("2023-03-10"))


@pytest.mark.parametrize(("first", "last", "expected"), [
    ("2022-01-01", "2024-03-10", "last-90-days"),
    ("2023-12-12", "2024-03-10", "last-30-days"),  # 90 days of data: the previous 90 days are not there
    ("2024-02-10", "2024-03-10", "last-7-days"),
    ("2024-03-01", "2024-03-10", "all"),
])
def test_the_default_period_has_a_whole_previous_period_to_compare(first: str, last: str, expected: str) -> None:
    assert default_period(D(first), D(last)) == expected
    assert default_period(None, None) == "all"


def test_a_period_parses_to_its_dates_and_keeps_its_name_in_the_link() -> None:
    filters = parse_filters({"period": ["last-30-days"], "compare": ["last-year"], "region": ["North"]},
                            data_dates=(D("2023-01-01"), D("2024-03-10")))
    assert (filters.start, filters.end) == (D("2024-02-10"), D("2024-03-10"))
    assert filters.to_query() == [("period", "last-30-days"), ("compare", "last-year"), ("region", "North")]
    assert filters.cache_key() == "start=2024-02-10&end=2024-03-10&region=North&compared=by-days"  # not the name
    with pytest.raises(FilterError, match="not both"):
        parse_filters({"period": ["all"], "start": ["2024-01-01"]})
    with pytest.raises(FilterError, match="unknown period 'last-year'; use last-7-days"):
        parse_filters({"period": ["last-year"]})
    with pytest.raises(FilterError, match="unknown compare"):
        parse_filters({"compare": ["yesterday"]})


def test_the_last_30_days_are_compared_with_the_30_days_before_even_when_they_are_a_month() -> None:
    """The last 30 days ending on 30 June are 1-30 June: against 2-31 May, not all 31 days of May."""
    start, end = period_dates("last-30-days", D("2025-06-30"))
    assert (start, end) == (D("2025-06-01"), D("2025-06-30"))
    assert compared_spans(start, end, D("2025-06-30"), by_days=True).previous == (D("2025-05-02"), D("2025-05-31"))
    assert compared_spans(start, end, D("2025-06-30")).previous == (D("2025-05-01"), D("2025-05-31"))
    by_days = parse_filters({"period": ["last-30-days"]}, data_dates=(D("2024-01-01"), D("2025-06-30")))
    typed = parse_filters({"start": ["2025-06-01"], "end": ["2025-06-30"]})
    assert by_days.by_days and not typed.by_days and by_days.cache_key() != typed.cache_key()


def test_a_year_is_compared_with_the_year_before_named_once(client) -> None:  # noqa: ANN001
    """A year's previous period is also its same period last year: the caption names it once, with
    orders or without (the demo orders start in 2023)."""
    from pages.overview import period_caption

    for year in (2023, 2024):
        data = client.get(f"/api/v1/kpis?start={year}-01-01&end={year}-12-31").get_json()["data"]
        assert data["previous_period"] == data["same_period_last_year"]
        before = f"{data['previous_period']['start']} to {data['previous_period']['end']}"
        caption = period_caption(data).children
        assert caption.count(before) == 1, caption
        assert ("no orders " in caption) == (data["orders"]["previous"] == 0) == (year == 2023), caption
