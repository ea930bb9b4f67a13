"""Segments: who the customer segments are, what they spend, and which leads or lags."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, callback, dcc, html

from bi_app import figures, service
from bi_app.components import chart, empty_state, leader_laggard, section, table
from bi_app.shell import error_banner, filters_of

dash.register_page(__name__, path="/segments", name="Segments", title="Segments · E-commerce BI", order=1,
                   download="segments")


def layout(**_query: str) -> html.Div:
    return html.Div(
        [
            html.H1("Customer segments", className="h2 mb-3"),
            dcc.Loading(html.Div(id="segments-content"), type="dot", delay_show=300),
        ]
    )


@callback(Output("segments-content", "children"), Input("url", "search"), Input("db-status", "data"))
def show_segments(search: str | None, _db: str):  # noqa: ANN201
    try:
        filters, _ = filters_of(search)
        frame = service.run("segments", filters)
    except Exception as exc:  # noqa: BLE001
        return error_banner(exc)
    if frame.empty:
        return empty_state()
    money = service.money_format()
    callout = leader_laggard(frame, "segment", "average_spend", "average spend per order", "segments-callout", money)
    return [
        callout,
        dbc.Row(
            [
                dbc.Col(section(None, chart("segments-share", figures.share_pie(
                    frame, "segment", "revenue", "Revenue by segment", money))),
                    lg=5, className="mb-3"),
                dbc.Col(section(None, chart("segments-spend", figures.bars(
                    frame, "segment", "average_spend", "Average spend per order", money=money, additive=False))),
                    lg=7, className="mb-3"),
            ]
        ),
        section("Segments", table(frame, table_id="segments-table", money=("revenue", "average_spend"),
                                  percent=("revenue_share",), decimals=("satisfaction", "items_per_order"),
                                  currency=money)),
    ]
