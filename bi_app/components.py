"""Small UI factories shared by the pages: they take data and return components."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dash_bootstrap_components as dbc
import pandas as pd
from dash import dcc, html
from dash.development.base_component import Component

from bi_app.money import DEFAULT_FORMAT, MoneyFormat


def navbar(pages: Iterable[Mapping], account: Component) -> dbc.Navbar:
    """The top navigation, one link per page of ``pages`` in ``order``, and the ``account`` area."""
    links = [
        dbc.NavItem(dbc.NavLink(page["name"], href=page["relative_path"], active="exact"))
        for page in sorted(pages, key=lambda p: p.get("order", 0))
    ]
    return dbc.Navbar(
        dbc.Container(
            [
                dbc.NavbarBrand("E-commerce BI", href="/"),
                dbc.NavbarToggler(id="navbar-toggler"),
                dbc.Collapse([dbc.Nav(links, navbar=True, className="me-auto"), account], id="navbar-collapse",
                             navbar=True),
            ],
            fluid=True,
        ),
        color="primary",
        dark=True,
    )


def kpi_card(
    title: str, value: str, *, card_id: str, note: str | None = None,
    changes: Sequence[tuple[str, float | None]] = (), detail: str | None = None,
) -> dbc.Card:
    """A headline figure: title, formatted value, what it is made of (``detail``), its changes
    (``(against what, change)`` pairs, such as the previous period and the same period last year),
    and a note. A card given comparisons that all lack a base says so."""
    body = [
        html.Div(title, className="text-muted small text-uppercase"),
        html.Div(value, id=card_id, className="fs-3 fw-semibold kpi-value"),
    ]
    if detail:
        body.append(html.Div(detail, id=f"{card_id}-detail", className="small text-muted"))
    shown = [(against, change) for against, change in changes if change is not None]
    for index, (against, change) in enumerate(shown):
        if round(change, 3) == 0:
            text, tone = f"no change {against}", "kpi-flat"
        else:
            text, tone = f"{'▲' if change > 0 else '▼'} {abs(change):.1%} {against}", (
                "kpi-up" if change > 0 else "kpi-down")
        body.append(html.Div(text, id=f"{card_id}-change" if index == 0 else f"{card_id}-change-{index + 1}",
                             className=f"small fw-semibold {tone}"))
    if changes and not shown and note is None:
        body.append(html.Div("no earlier period to compare", id=f"{card_id}-change", className="small text-muted"))
    if note:
        body.append(html.Div(note, className="small text-muted"))
    return dbc.Card(dbc.CardBody(body), className="h-100 shadow-sm")


#: What a chart's toolbar offers: only what acts in the browser (download a PNG, zoom, reset).
#: Plotly's "share" and "edit in Chart Studio" buttons send the chart's data to an outside service,
#: and sales data must never leave the deployment.
CHART_CONFIG: dcc.Graph.Config = {
    "displaylogo": False,
    "responsive": True,
    "showSendToCloud": False,
    "showEditInChartStudio": False,
    "showLink": False,
    "modeBarButtonsToRemove": ["sendDataToCloud", "editInChartStudio", "pan2d", "select2d", "lasso2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
}


def chart(graph_id: str, figure: object = None, **props: Any) -> dcc.Graph:
    """A chart with the app's toolbar (:data:`CHART_CONFIG`); ``figure`` may come later from a callback."""
    if figure is not None:
        props["figure"] = figure
    return dcc.Graph(id=graph_id, config=CHART_CONFIG, **props)


def section(title: str | None, *children, **kwargs) -> dbc.Card:  # noqa: ANN002, ANN003
    """A card around a chart or table, with a header when ``title`` is given (charts carry their own)."""
    parts = [dbc.CardHeader(title, className="fw-semibold")] if title else []
    return dbc.Card([*parts, dbc.CardBody(list(children), className="p-2")], className="h-100 shadow-sm", **kwargs)


def empty_state(message: str = "No orders match these filters. Remove a filter chip to widen the view.") -> dbc.Alert:
    """What a page shows when the filters leave nothing."""
    return dbc.Alert(message, color="info", className="empty-state")


def table(frame, *, table_id: str, money: tuple[str, ...] = (), percent: tuple[str, ...] = (),  # noqa: ANN001
          decimals: tuple[str, ...] = (), currency: MoneyFormat = DEFAULT_FORMAT) -> dbc.Table:
    """A formatted read-only table of a small DataFrame (``money`` columns written in ``currency``)."""
    def cell(column: str, value: Any) -> str:
        if value is None or (isinstance(value, float) and value != value):
            return "—"
        if column in money:
            return currency(value)
        if column in percent:
            return f"{value:.1%}"
        if column in decimals:
            return f"{value:,.2f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    header = html.Thead(html.Tr([html.Th(c.replace("_", " ").capitalize()) for c in frame.columns]))
    rows = [html.Tr([html.Td(cell(c, v)) for c, v in zip(frame.columns, record, strict=True)])
            for record in frame.itertuples(index=False)]
    # Scrolls sideways on a phone: a region keyboard users can focus and scroll too.
    return html.Div(dbc.Table([header, html.Tbody(rows)], id=table_id, striped=True, hover=True, size="sm",
                              className="mb-0"),
                    className="table-responsive", tabIndex="0", role="region",
                    **attributes(aria_label=table_id.replace("-", " ")))


def attributes(**values: str) -> dict[str, Any]:
    """HTML attributes whose names hold a hyphen (``aria_label`` -> ``aria-label``), for a component's keywords."""
    return {name.replace("_", "-"): value for name, value in values.items()}


def count(value: int | None, noun: str | None = None) -> str:
    """A whole number with thousands separators, and ``noun`` after it in the right number
    ("1 order", "2 orders")."""
    if value is None:
        return "—"
    if noun is None:
        return f"{value:,}"
    return f"{value:,} {noun if value == 1 else noun + 's'}"


def leader_laggard(frame: pd.DataFrame, key: str, measure: str, label: str, callout_id: str,
                   currency: MoneyFormat = DEFAULT_FORMAT) -> dbc.Alert | None:
    """Name the best and worst entity by ``measure``, with the numbers that make them so."""
    ranked = frame.dropna(subset=[measure]).sort_values(measure, ascending=False)
    if len(ranked) < 2:
        return None
    best, worst = ranked.iloc[0], ranked.iloc[-1]
    gap = 1 - worst[measure] / best[measure] if best[measure] else None
    return dbc.Alert(
        [
            html.Strong(f"Leader: {best[key]}"), f" at {currency(best[measure])} {label}; ",
            html.Strong(f"laggard: {worst[key]}"), f" at {currency(worst[measure])}",
            f" ({gap:.0%} below the leader's level)." if gap is not None else ".",
        ],
        color="light", id=callout_id, className="border",
    )
