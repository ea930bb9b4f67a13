"""The Dash app on its embedded demo database, through Flask's test client."""

from __future__ import annotations

from dataclasses import replace

import dash
import pytest

from bi_app.context import CONFIG_KEY
from data_layer.demo_data import generate_orders_frame


def find_text(component: object, component_id: str) -> str | None:
    """The children of the component with ``component_id`` in a layout tree."""
    if getattr(component, "id", None) == component_id:
        return component.children  # type: ignore[attr-defined]
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if child is not None and not isinstance(child, str):
            found = find_text(child, component_id)
            if found is not None:
                return found
    return None


def overview(app: dash.Dash):
    page = dash.page_registry["pages.overview"]
    with app.server.test_request_context("/"):
        return page["layout"]()


def test_first_run_seeds_the_embedded_database_and_healthz_is_ok(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert response.json["database"].startswith("sqlite:///")


def test_overview_shows_the_four_kpis_of_the_demo_orders(app: dash.Dash, client) -> None:
    orders = generate_orders_frame(2000, seed=42)  # what the first run seeds
    revenue = round(orders["total_amount"].sum(), 2)
    layout = overview(app)
    assert find_text(layout, "overview-kpi-revenue") == f"${revenue:,.2f}"
    assert find_text(layout, "overview-kpi-aov") == f"${revenue / len(orders):,.2f}"
    assert find_text(layout, "overview-kpi-customers") == f"{orders['customer_id'].nunique():,}"
    satisfaction = orders["satisfaction_rating"].mean()
    assert find_text(layout, "overview-kpi-satisfaction") == f"{satisfaction:.2f} / 5"
    assert client.get("/").status_code == 200
    assert client.get("/_dash-layout").status_code == 200


def test_unreachable_database_gives_503_and_a_banner(app: dash.Dash, client, monkeypatch: pytest.MonkeyPatch) -> None:
    down = replace(
        app.server.config[CONFIG_KEY],
        database_url="postgresql://bi:Hunter2Secret@127.0.0.1:1/shop",
        connect_timeout_s=2,
        embedded=False,
    )
    monkeypatch.setitem(app.server.config, CONFIG_KEY, down)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert "Connection refused" in response.json["reason"]
    assert "Hunter2Secret" not in response.get_data(as_text=True)
    banner = find_text(overview(app), "overview-error")
    assert banner.startswith("The database cannot be read:") and "Hunter2Secret" not in banner


def test_navigation_comes_from_the_page_registry(app: dash.Dash, client) -> None:
    assert dash.page_registry["pages.overview"]["path"] == "/"
    assert "Overview" in str(app.layout)
