"""Small UI factories shared by the pages: they take data and return components."""

from __future__ import annotations

from typing import Iterable, Mapping

import dash_bootstrap_components as dbc
from dash import html


def navbar(pages: Iterable[Mapping]) -> dbc.Navbar:
    """The top navigation, one link per registered page in ``order``."""
    links = [
        dbc.NavItem(dbc.NavLink(page["name"], href=page["relative_path"], active="exact"))
        for page in sorted(pages, key=lambda p: p.get("order", 0))
    ]
    return dbc.Navbar(
        dbc.Container(
            [
                dbc.NavbarBrand("E-commerce BI", href="/"),
                dbc.NavbarToggler(id="navbar-toggler"),
                dbc.Collapse(dbc.Nav(links, navbar=True), id="navbar-collapse", navbar=True),
            ],
            fluid=True,
        ),
        color="primary",
        dark=True,
    )


def kpi_card(title: str, value: str, *, card_id: str, note: str | None = None) -> dbc.Card:
    """A headline figure: its title, its formatted value and an optional note under it."""
    body = [
        html.Div(title, className="text-muted small text-uppercase"),
        html.Div(value, id=card_id, className="fs-3 fw-semibold kpi-value"),
    ]
    if note:
        body.append(html.Div(note, className="small text-muted"))
    return dbc.Card(dbc.CardBody(body), className="h-100 shadow-sm")


def error_banner(message: str, *, banner_id: str) -> dbc.Alert:
    """A red banner saying what went wrong, for a page that cannot show its data."""
    return dbc.Alert(message, id=banner_id, color="danger", className="mb-3")


def money(value: float | None) -> str:
    """Dollars with thousands separators and cents, or an em dash for no value."""
    return "—" if value is None else f"${value:,.2f}"


def count(value: int | None) -> str:
    """A whole number with thousands separators."""
    return "—" if value is None else f"{value:,}"
