"""Strategy: recommendations computed from the data (content arrives with the customer-intelligence work)."""

import dash
import dash_bootstrap_components as dbc
from dash import html

dash.register_page(__name__, path="/strategy", name="Strategy", title="Strategy · E-commerce BI", order=4,
                   download="segments")


def layout(**_query: str) -> html.Div:
    return html.Div([
        html.H2("Strategy", className="mb-3"),
        dbc.Alert("Coming next: VIP, cross-sell, regional, churn-prevention and pricing recommendations with "
                  "their numbers and projected impact, and the revenue forecast.", color="secondary",
                  id="strategy-placeholder"),
    ])
