"""Regions: where revenue comes from, per customer, and which region leads or lags."""

from __future__ import annotations

import dash
from dash import Input, Output, callback, dcc, html

from bi_app import figures
from bi_app.views import Breakdown, BreakdownChart, page_view

dash.register_page(__name__, path="/regions", name="Regions", title="Regions · E-commerce BI", order=2,
                   download="regions")

REGIONS = Breakdown(
    analysis="regions", key="region", title="Regions",
    leader_measure="revenue_per_customer", leader_label="revenue per customer",
    charts=(
        BreakdownChart("regions-revenue", 6,
                       lambda frame, money: figures.bars(frame, "region", "revenue", "Revenue by region",
                                                         money=money)),
        BreakdownChart("regions-per-customer", 6,
                       lambda frame, money: figures.bars(frame, "region", "revenue_per_customer",
                                                         "Revenue per customer", money=money, additive=False)),
    ),
    money=("revenue", "revenue_per_customer", "guest_revenue"), percent=("customer_share",),
    note="Customer share: a region's customers among all the matching customers; a customer who ordered in "
         "several regions counts in each, so the shares can add up to more than 100%. Revenue per customer: "
         "registered customers' net revenue per registered customer; guests' revenue is beside it.",
)


def layout(**_query: str) -> html.Div:
    return html.Div(
        [
            html.H1("Regions", className="h2 mb-3"),
            dcc.Loading(html.Div(id="regions-content"), type="dot", delay_show=300),
        ]
    )


@callback(Output("regions-content", "children"), Input("url", "search"), Input("db-status", "data"))
def show_regions(search: str | None, _db: str) -> object:
    return page_view(search, REGIONS.view, kept_as="regions")
