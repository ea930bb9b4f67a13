"""Which days a KPI answer compares (docs/MEASURES.md, "Periods"), on the calendar's edge cases."""

from __future__ import annotations

from datetime import date

import pytest

from bi_app.analytics.orders import compared_spans

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
