"""Segments: who the customer segments are, what they spend, and which leads or lags."""

from __future__ import annotations

import dash
from dash import Input, Output, callback, dcc, html

from bi_app import figures
from bi_app.views import Breakdown, BreakdownChart, page_view

dash.register_page(__name__, path="/segments", name="Segments", title="Segments · E-commerce BI", order=1,
                   download="segments")

SEGMENTS = Breakdown(
    analysis="segments", key="segment", title="Segments",
    leader_measure="average_spend", leader_label="average spend per order",
    charts=(
        BreakdownChart("segments-share", 5,
                       lambda frame, money: figures.share_pie(frame, "segment", "revenue", "Revenue by segment",
                                                              money)),
        BreakdownChart("segments-spend", 7,
                       lambda frame, money: figures.bars(frame, "segment", "average_spend", "Average spend per order",
                                                         money=money, additive=False)),
    ),
    money=("revenue", "average_spend"), percent=("revenue_share",), decimals=("satisfaction", "items_per_order"),
)


def layout(**_query: str) -> html.Div:
    return html.Div(
        [
            html.H1("Customer segments", className="h2 mb-3"),
            dcc.Loading(html.Div(id="segments-content"), type="dot", delay_show=300),
        ]
    )


@callback(Output("segments-content", "children"), Input("url", "search"), Input("db-status", "data"))
def show_segments(search: str | None, _db: str) -> object:
    return page_view(search, SEGMENTS.view, kept_as="segments")
