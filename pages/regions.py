"""Regions: where revenue comes from, per customer, and which region leads or lags."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, callback, dcc, html

from bi_app import figures, service
from bi_app.components import chart, empty_state, leader_laggard, section, table
from bi_app.shell import error_banner, filters_of

dash.register_page(__name__, path="/regions", name="Regions", title="Regions · E-commerce BI", order=2,
                   download="regions")


def layout(**_query: str) -> html.Div:
    return html.Div(
        [
            html.H1("Regions", className="h2 mb-3"),
            dcc.Loading(html.Div(id="regions-content"), type="dot", delay_show=300),
        ]
    )


@callback(Output("regions-content", "children"), Input("url", "search"), Input("db-status", "data"))
def show_regions(search: str | None, _db: str):  # noqa: ANN201
    try:
        filters, _ = filters_of(search)
        frame = service.run("regions", filters)
    except Exception as exc:  # noqa: BLE001
        return error_banner(exc)
    if frame.empty:
        return empty_state()
    money = service.money_format()
    callout = leader_laggard(frame, "region", "revenue_per_customer", "revenue per customer", "regions-callout", money)
    return [
        callout,
        dbc.Row(
            [
                dbc.Col(section(None, chart("regions-revenue", figures.bars(
                    frame, "region", "revenue", "Revenue by region", money=money))),
                    lg=6, className="mb-3"),
                dbc.Col(section(None, chart("regions-per-customer", figures.bars(
                    frame, "region", "revenue_per_customer", "Revenue per customer", money=money, additive=False))),
                    lg=6, className="mb-3"),
            ]
        ),
        section("Regions", table(frame, table_id="regions-table",
                                 money=("revenue", "revenue_per_customer", "guest_revenue"),
                                 percent=("customer_share",), decimals=("satisfaction",), currency=money)),
    ]
