"""Clusters: customer segmentation by K-Means (content arrives with the customer-intelligence work)."""

import dash
import dash_bootstrap_components as dbc
from dash import html

dash.register_page(__name__, path="/clusters", name="Clusters", title="Clusters · E-commerce BI", order=3,
                   download="segments")


def layout(**_query: str) -> html.Div:
    return html.Div([
        html.H2("Customer clusters", className="mb-3"),
        dbc.Alert("Coming next: K-Means customer clusters with their quality metrics, RFM segments and churn "
                  "risk, under the same filters.", color="secondary", id="clusters-placeholder"),
    ])
