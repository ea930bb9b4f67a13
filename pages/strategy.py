"""Strategy: the five recommendations computed from the data, with projections from the user's assumptions."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, callback, dcc, html

from bi_app import figures, service
from bi_app.components import chart, section
from bi_app.context import may_download
from bi_app.jsonable import to_jsonable
from bi_app.ml.strategy import ASSUMPTIONS, TITLES, project
from bi_app.money import MoneyFormat
from bi_app.shell import filters_of
from bi_app.views import page_view
from data_layer.filters import Filters

dash.register_page(__name__, path="/strategy", name="Strategy", title="Strategy · E-commerce BI", order=4,
                   download="orders")

TARGETS = [a for a in ASSUMPTIONS if a.target]


def layout(**_query: str) -> html.Div:
    currency = service.money_format().currency
    return html.Div(
        [
            html.H1("Strategy", className="h2 mb-3"),
            dcc.Store(id="strategy-numbers"),
            dcc.Loading(html.Div(id="strategy-forecast", className="mb-3"), type="dot", delay_show=300),
            dbc.Row([dbc.Col(recommendation_card(name, currency), lg=6, className="mb-3") for name in TITLES]),
        ]
    )


def recommendation_card(name: str, currency: str) -> dbc.Card:
    """A recommendation: its finding (from the data), its assumptions, its projection, its target list."""
    inputs = [
        dbc.Col(
            [
                dbc.Label(f"{a.label} ({currency if a.unit == 'money' else a.unit})",
                          html_for=dom_id({"type": "assumption", "name": a.name}), className="small mb-0"),
                dbc.Input(id={"type": "assumption", "name": a.name}, type="number", value=a.default,
                          min=a.minimum, max=a.maximum, step=1, size="sm", debounce=True),
                dbc.FormFeedback(f"Use a whole number from {a.minimum:,} to {a.maximum:,}. Until then the "
                                 f"projection uses {a.default:,}.", type="invalid",
                                 id={"type": "assumption-feedback", "name": a.name}),
            ],
            xs=12, sm=6,
        )
        for a in ASSUMPTIONS if a.recommendation == name
    ]
    return dbc.Card(
        [
            dbc.CardHeader(TITLES[name], className="fw-semibold"),
            dbc.CardBody([
                dcc.Loading(html.P(id=f"strategy-finding-{name}", className="mb-2"), type="dot", delay_show=300),
                dbc.Row(inputs, className="g-2 mb-2"),
                html.Div(id=f"strategy-projection-{name}", className="mb-2"),
                html.A("Download target customers (CSV)", id=f"strategy-download-{name}", download="",
                       className="btn btn-sm btn-outline-primary" + ("" if may_download() else " d-none")),
            ]),
        ],
        className="h-100 shadow-sm",
        id=f"strategy-{name}",
    )


@callback(
    Output("strategy-numbers", "data"),
    Output("strategy-forecast", "children"),
    *[Output(f"strategy-finding-{name}", "children") for name in TITLES],
    Input("url", "search"),
    Input("db-status", "data"),
    *[Input({"type": "assumption", "name": a.name}, "value") for a in TARGETS],
)
def show_recommendations(search: str | None, _db: str, *targets: Any) -> tuple:
    """The data behind each recommendation (recomputed when the filters or who is targeted change)."""
    chosen = {a.name: valid(a, value) for a, value in zip(TARGETS, targets, strict=True)}
    return page_view(search, lambda filters: recommendations_view(filters, chosen),
                     failed=lambda banner: (None, banner, *("—" for _ in TITLES)))


def recommendations_view(filters: Filters, chosen: dict[str, Any]) -> tuple:
    """The recommendations' numbers (kept in the page for the projections), the forecast, the findings."""
    recommendations = service.run("recommendations", filters, **chosen)
    # A forecast needs history: every month up to the period's end, whatever its start.
    forecast = service.run("forecast", replace(filters, start=None, period=None))
    findings = [recommendations[name]["finding"] for name in TITLES]
    return to_jsonable(recommendations), forecast_section(forecast, service.money_format()), *findings


@callback(
    *[Output(f"strategy-projection-{name}", "children") for name in TITLES],
    *[Output(f"strategy-download-{name}", "href") for name in TITLES],
    Output({"type": "assumption", "name": ALL}, "invalid"),
    Input("strategy-numbers", "data"),
    Input({"type": "assumption", "name": ALL}, "value"),
    State({"type": "assumption", "name": ALL}, "id"),
    State("url", "search"),
)
def show_projections(numbers: dict | None, values: list, ids: list[dict], search: str | None) -> tuple:
    """Each projection under the assumptions as they stand (no database work), and the target-list links."""
    spec = {a.name: a for a in ASSUMPTIONS}
    given = [(i.get("name") if isinstance(i, dict) else None, v) for i, v in zip(ids or [], values or [], strict=False)]
    chosen = {a.name: a.default for a in ASSUMPTIONS} | {name: valid(spec[name], value) for name, value in given
                                                         if name in spec}
    invalid = [name not in spec or valid(spec[name], value) != value for name, value in given]
    filters, _ = filters_of(search)
    money = service.money_format()
    projections, links = [], []
    for name in TITLES:
        entry = numbers.get(name) if isinstance(numbers, dict) else None
        projections.append(projection_view(name, entry, chosen, money))
        targets = {a.name: chosen[a.name] for a in TARGETS if a.recommendation == name}
        links.append(f"/export/targets/{name}.csv?{urlencode(filters.to_query() + sorted(targets.items()))}"
                     if may_download() else None)
    return (*projections, *links, invalid)


def dom_id(component_id: dict) -> str:
    """The id a pattern-matching component gets in the page (Dash writes its keys sorted, as JSON),
    for a label's ``for``."""
    return json.dumps(component_id, sort_keys=True, separators=(",", ":"))


def valid(assumption, value: Any) -> int:  # noqa: ANN001
    """The value when it is a whole number in range, else the assumption's default."""
    if isinstance(value, (int, float)) and float(value).is_integer() and \
            assumption.minimum <= value <= assumption.maximum:
        return int(value)
    return assumption.default


def projection_view(name: str, entry: Any, chosen: dict[str, int], currency: MoneyFormat) -> Any:
    """The projection of recommendation ``name`` from its ``entry`` of the page's store (None when it has none)."""
    if not isinstance(entry, dict) or entry.get("available") is not True:  # the finding says why
        return None
    try:
        own = {k: v for k, v in chosen.items() if k in entry["assumptions"]}
        result = project(name, entry["numbers"], own)
    except (KeyError, TypeError, ValueError):  # a store the page did not write: a crafted request's
        return None
    colour = "kpi-up" if result["net"] >= 0 else "kpi-down"
    return html.Div([
        html.Div([html.Span("Projected net impact: "),
                  html.Strong(currency(result["net"]), id=f"strategy-net-{name}", className=colour)]),
        html.Div(f"{currency(result['revenue'])} revenue − {currency(result['cost'])} cost · {result['formula']}"
                 + (" (reached: these customers spent no more than that lately)" if result.get("capped") else ""),
                 className="text-muted small"),
    ])


def forecast_section(forecast: dict, money: MoneyFormat) -> Any:
    if not forecast["available"]:
        return dbc.Alert(f"No forecast: {forecast['reason']}", color="light", id="strategy-forecast-note",
                         className="border")
    backtest = forecast["backtest"]
    mape = "—" if backtest["mape"] is None else f"{backtest['mape']:.1%}"
    note = (f"{forecast['method']}, from every month of the data up to the period's end (the period's own "
            "start is not used: a forecast needs history). "
            f"Backtest: refitted without the last {len(backtest['months'])} months, its "
            f"forecast of them was off by {mape} on average (MAPE: {forecast['quality']} by Lewis's scale; a "
            "forecast is shown up to 50%).")
    if forecast["partial_month_left_out"]:
        note += (f" Left out as partial months (the data or the filters cover only part of them): "
                 f"{forecast['partial_month_left_out']}.")
    return section(None, chart("strategy-forecast-chart", figures.forecast(forecast, money)),
                   html.P(note, id="strategy-forecast-note", className="small text-muted mb-0"))
