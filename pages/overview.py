"""Overview: the state of the business in four numbers."""

import dash
import dash_bootstrap_components as dbc
from dash import html

from bi_app import service
from bi_app.components import count, error_banner, kpi_card, money
from data_layer.engine import describe_error
from data_layer.filters import Filters

dash.register_page(__name__, path="/", name="Overview", title="Overview · E-commerce BI", order=0)


def layout(**_query: str) -> html.Div:
    try:
        figures = service.run("kpis", Filters())
    except Exception as exc:  # noqa: BLE001 - shown to the user, the server keeps serving
        message = f"The database cannot be read: {describe_error(exc)}"
        return html.Div([html.H2("Overview"), error_banner(message, banner_id="overview-error")])
    value = {name: figures[name]["value"] for name in ("revenue", "orders", "customers",
                                                       "average_order_value", "average_satisfaction")}
    satisfaction = "—" if value["average_satisfaction"] is None else f"{value['average_satisfaction']:.2f} / 5"
    cards = [
        kpi_card("Total revenue", money(value["revenue"]), card_id="overview-kpi-revenue",
                 note=f"{count(value['orders'])} orders"),
        kpi_card("Average order value", money(value["average_order_value"]), card_id="overview-kpi-aov"),
        kpi_card("Unique customers", count(value["customers"]), card_id="overview-kpi-customers"),
        kpi_card("Average satisfaction", satisfaction, card_id="overview-kpi-satisfaction"),
    ]
    return html.Div(
        [
            html.H2("Overview", className="mb-3"),
            dbc.Row([dbc.Col(card, xs=12, sm=6, lg=3, className="mb-3") for card in cards]),
        ]
    )
