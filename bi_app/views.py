"""What the pages' callbacks share: the filters read from the URL with a banner on any failure, and
the per-entity breakdown page (Segments, Regions)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dash_bootstrap_components as dbc
import pandas as pd
import plotly.graph_objects as go
from dash import html

from bi_app import service
from bi_app.components import chart, empty_state, leader_laggard, section, table
from bi_app.context import may_download
from bi_app.money import MoneyFormat
from bi_app.shell import error_banner, filters_of
from data_layer.filters import Filters

T = TypeVar("T")


def page_view(search: str | None, draw: Callable[[Filters], T],
              failed: Callable[[dbc.Alert], T] = lambda banner: banner, *, kept_as: str | None = None) -> T:
    """``draw`` of the filters in the URL's query string; on any failure (the database down or slow,
    a filter it cannot use) ``failed`` of a banner saying what went wrong, and the page keeps working.
    With ``kept_as``, the drawing is kept in the cache under that name (:func:`service.rendered_view`):
    for a page that draws from the analyses' answers only (no trained models)."""
    try:
        filters, _notices = filters_of(search)  # the filter bar shows the notices
        if kept_as is None:
            return draw(filters)
        return service.rendered_view(kept_as, filters, lambda: draw(filters), may_download())
    except Exception as exc:  # noqa: BLE001 - a banner, never a traceback
        return failed(error_banner(exc))


@dataclass(frozen=True)
class BreakdownChart:
    """One chart of a breakdown page: its graph id, Bootstrap column width, and figure of the frame."""

    graph_id: str
    width: int
    figure: Callable[[pd.DataFrame, MoneyFormat], go.Figure]


@dataclass(frozen=True)
class Breakdown:
    """A page of figures per value of one dimension: the analysis that answers it, the measure its
    leader and laggard are named by, its charts and its table's formats."""

    analysis: str
    key: str
    title: str
    leader_measure: str
    leader_label: str
    charts: tuple[BreakdownChart, ...]
    money: tuple[str, ...]
    percent: tuple[str, ...] = ()
    decimals: tuple[str, ...] = field(default=("satisfaction",))
    #: What the table's figures mean where a reader could take them otherwise (under the table).
    note: str = ""

    def view(self, filters: Filters) -> Any:
        """The page's content for ``filters``: callout, charts and table, or the empty state."""
        frame = service.run(self.analysis, filters)
        if frame.empty:
            return empty_state()
        money = service.money_format()
        callout = leader_laggard(frame, self.key, self.leader_measure, self.leader_label,
                                 f"{self.analysis}-callout", money)
        charts = [dbc.Col(section(None, chart(one.graph_id, one.figure(frame, money))), lg=one.width,
                          className="mb-3") for one in self.charts]
        listed = table(frame, table_id=f"{self.analysis}-table", money=self.money, percent=self.percent,
                       decimals=self.decimals, currency=money)
        notes = [html.P(self.note, className="text-muted small mt-2 mb-0")] if self.note else []
        return [callout, dbc.Row(charts), section(self.title, html.Div([listed, *notes]))]
