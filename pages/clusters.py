"""Clusters: who the customers are by K-Means segment and RFM, how good the model is, who may leave."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, callback, dcc, html

from bi_app import figures, service
from bi_app.components import chart, empty_state, kpi_card, section, table
from bi_app.context import may_download
from bi_app.ml.features import SEGMENTATION_FEATURES
from bi_app.money import MoneyFormat
from bi_app.shell import search_of
from bi_app.views import page_view
from data_layer.filters import Filters

dash.register_page(__name__, path="/clusters", name="Clusters", title="Clusters · E-commerce BI", order=3,
                   download="clusters")

PROFILE_MONEY = ("revenue", "total_spent", "average_order_value", "total_discounts")


def layout(**_query: str) -> html.Div:
    return html.Div(
        [
            html.H1("Customer clusters", className="h2 mb-3"),
            html.Div(id="clusters-downloads", className="d-flex flex-wrap gap-2 mb-3"),
            dcc.Loading(html.Div(id="clusters-content"), type="dot", delay_show=300),
        ]
    )


@callback(
    Output("clusters-content", "children"),
    Output("clusters-downloads", "children"),
    Input("url", "search"),
    Input("db-status", "data"),
)
def show_clusters(search: str | None, _db: str) -> tuple:
    return page_view(search, clusters_view, failed=lambda banner: (banner, []))


def clusters_view(filters: Filters) -> tuple:
    """The model, the profiles, RFM and churn risk for ``filters``, and the customer downloads."""
    query = search_of(filters)
    links = [
        html.A("Customers with cluster, RFM and churn (CSV)", href=f"/export/customers.csv{query}", download="",
               id="clusters-download-csv", className="btn btn-sm btn-outline-primary"),
        html.A("Customers (XLSX)", href=f"/export/customers.xlsx{query}", download="",
               id="clusters-download-xlsx", className="btn btn-sm btn-outline-primary"),
    ] if may_download() else []
    results = service.run_many(["clusters", "rfm", "churn"], filters)
    clusters = results["clusters"]
    if clusters.get("pending"):  # RFM needs no model
        return [dbc.Alert(clusters["reason"], color="info", id="clusters-pending"),
                rfm_section(results["rfm"], service.money_format())], links
    if not clusters["available"]:
        return dbc.Alert(f"No segmentation model for this data: {clusters['reason']}", color="warning"), links
    if clusters["customers"] == 0:
        return empty_state(), links
    money = service.money_format()
    return [model_section(clusters["model"]), profile_section(clusters, money), rfm_section(results["rfm"], money),
            churn_section(results["churn"])], links


def model_section(model: dict) -> html.Div:
    metrics, stability = model["metrics"], model["stability"]
    how = (f"k = {model['k']} chosen from 2–7 by the best silhouette, trained on "
           f"{model['trained_on_customers']:,} customers (all of them, unfiltered) on {model['trained_at'][:10]}"
           + (" with mini-batch K-Means and a sampled silhouette" if model["minibatch"] else "") + ".")
    cards = [
        kpi_card("Silhouette", f"{metrics['silhouette']:.3f}", card_id="clusters-silhouette",
                 note="−1 to 1, higher is better"),
        kpi_card("Inertia", f"{metrics['inertia']:,.0f}", card_id="clusters-inertia",
                 note="within-cluster squared distance"),
        kpi_card("Calinski-Harabasz", f"{metrics['calinski_harabasz']:,.1f}", card_id="clusters-calinski",
                 note="higher is better"),
        kpi_card("Davies-Bouldin", f"{metrics['davies_bouldin']:.3f}", card_id="clusters-davies",
                 note="lower is better"),
    ]
    stable = (f"Stability over {stability['runs']} refits on {stability['fraction']:.0%} subsamples: silhouette "
              f"{stability['silhouette_mean']:.3f} ± {stability['silhouette_sd']:.3f}, adjusted Rand index against "
              f"the full model {stability['adjusted_rand_mean']:.3f} ± {stability['adjusted_rand_sd']:.3f}.")
    return html.Div([
        html.P(how, className="text-muted small mb-2", id="clusters-model"),
        dbc.Row([dbc.Col(card, xs=12, sm=6, lg=3, className="mb-3") for card in cards]),
        html.P(stable, className="small", id="clusters-stability"),
        dbc.Row([
            dbc.Col(section(None, chart("clusters-silhouette-chart",
                                        figures.silhouette_by_k(model["silhouette_by_k"], model["k"]))),
                    lg=6, className="mb-3"),
            dbc.Col(section(None, chart("clusters-importance", figures.importance(model["feature_importance"]))),
                    lg=6, className="mb-3"),
        ]),
    ])


def profile_section(clusters: dict, money: MoneyFormat) -> html.Div:
    profiles = clusters["profiles"]
    columns = ["name", "customers", "customer_share", "revenue", "revenue_share", *SEGMENTATION_FEATURES]
    return html.Div([
        section(f"Cluster profiles of the {clusters['customers']:,} matching customers",
                table(profiles[columns], table_id="clusters-profile", money=PROFILE_MONEY,
                      percent=("customer_share", "revenue_share"),
                      decimals=("order_count", "average_satisfaction", "total_items", "recency_days"),
                      currency=money)),
        html.Div(className="mb-3"),
        section(None, chart("clusters-projection", figures.projection(clusters["projection"]))),
        html.Div(className="mb-3"),
    ])


def rfm_section(rfm, money: MoneyFormat) -> html.Div:  # noqa: ANN001
    shown = rfm[rfm["customers"] > 0]
    return dbc.Row([
        dbc.Col(section(None, chart("clusters-rfm-chart", figures.bars(
            shown, "segment", "customers", "Customers per RFM segment", money=None))), lg=5, className="mb-3"),
        dbc.Col(section("RFM segments", table(
            rfm[["segment", "customers", "customer_share", "revenue", "revenue_share", "average_recency_days",
                 "average_orders"]],
            table_id="clusters-rfm", money=("revenue",), percent=("customer_share", "revenue_share"),
            decimals=("average_recency_days", "average_orders"), currency=money),
            html.P("R, F and M score recency (days from the last order to the data's last order date), orders "
                   "and spend from 1 to 5: a customer's percentile rank among the matching customers, in "
                   "fifths (5 is best; equal customers score equally). The first rule that holds names the "
                   "segment:", className="small text-muted mt-2 mb-1"),
            html.Ul([html.Li([html.Strong(segment), f": {rule}"]) for segment, rule in
                     zip(rfm["segment"], rfm["rule"], strict=True)], className="small text-muted mb-0")),
            lg=7, className="mb-3"),
    ])


def churn_section(churn: dict) -> html.Div:
    if churn.get("pending"):
        return dbc.Alert(churn["reason"], color="info", id="clusters-churn")
    if not churn["available"]:
        return dbc.Alert(f"No churn model for this data: {churn['reason']}", color="warning", id="clusters-churn")
    e = churn["evaluation"]
    model_auc = e.get("model_roc_auc", e["roc_auc"])
    if e.get("used", "model") == "model":
        used = (f"The gradient-boosted model (ROC AUC {model_auc:.3f}) beats ranking by recency alone "
                f"({e['baseline_roc_auc']:.3f}) by at least {e.get('margin', 0):.2f}, so it gives the probabilities")
    else:
        used = (f"The gradient-boosted model (ROC AUC {model_auc:.3f}) does not beat ranking by recency alone "
                f"({e['baseline_roc_auc']:.3f}) by {e['margin']:.2f}, so the probabilities come from the recency "
                "baseline (days since the last order)")
    text = (f"Churn = no order in the {e['horizon_days']} days after a cutoff. Trained at {e['train_cutoff']}, "
            f"tested at {e['test_cutoff']} on {e['test_customers']:,} customers it never saw. {used}: ROC AUC "
            f"{e['roc_auc']:.3f}; top decile precision {e['top_decile_precision']:.1%}, "
            f"recall {e['top_decile_recall']:.1%}; Brier score {e['brier_score']:.3f}. "
            f"{churn['at_risk_customers']:,} of the {churn['customers']:,} matching customers have a churn "
            f"probability of {churn['threshold']:.0%} or more.")
    return html.Div([
        html.H2("Churn risk", className="h4 mt-2"),
        html.P(text, id="clusters-churn", className="small"),
        section(None, chart("clusters-churn-chart", figures.columns(
            churn["distribution"], "band", "customers", "Customers by churn probability"))),
    ])
