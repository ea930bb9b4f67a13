"""The Dash app on its embedded demo database, through Flask's test client."""

from __future__ import annotations

import re
from dataclasses import replace

import dash
import pytest

from bi_app.context import CONFIG_KEY
from data_layer.demo_data import generate_orders_frame
from tests.support import URL_PASSWORD, net_revenue


def find_text(component: object, component_id: str) -> str | None:
    """The children of the component with ``component_id`` in a layout tree."""
    if isinstance(component, (list, tuple)):
        for child in component:
            found = find_text(child, component_id)
            if found is not None:
                return found
        return None
    if component is None or isinstance(component, (str, int, float)):
        return None
    if isinstance(component, dict):  # a component as the browser gets it (a page kept in the cache)
        props = component.get("props", {})
        return props.get("children") if props.get("id") == component_id else find_text(props.get("children"),
                                                                                        component_id)
    if getattr(component, "id", None) == component_id:
        return component.children  # type: ignore[attr-defined]
    return find_text(getattr(component, "children", None), component_id)


def overview(app: dash.Dash, search: str = ""):
    """What the overview's KPI callback renders for ``search`` (cards, status banner)."""
    from pages.overview import show_overview

    with app.server.test_request_context("/"):
        cards, status, *_charts = show_overview(search, "ok")
    return dash.html.Div([status, cards])


def test_first_run_seeds_the_embedded_database_and_healthz_is_ok(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert response.json["database"].startswith("sqlite:///")


def test_overview_shows_the_four_kpis_of_the_demo_orders(app: dash.Dash, client) -> None:
    orders = generate_orders_frame(2000, seed=42)  # what the first run seeds
    revenue = round(net_revenue(orders).sum(), 2)
    layout = overview(app, "?period=all")
    assert find_text(layout, "overview-kpi-revenue") == f"${revenue:,.2f}"
    assert find_text(layout, "overview-kpi-aov") == f"${revenue / len(orders):,.2f}"
    assert find_text(layout, "overview-kpi-customers") == f"{orders['customer_id'].nunique():,}"
    satisfaction = orders["satisfaction_rating"].mean()
    assert find_text(layout, "overview-kpi-satisfaction") == f"{satisfaction:.2f} / 5"
    assert client.get("/").status_code == 200
    assert client.get("/_dash-layout").status_code == 200


def test_unreachable_database_gives_503_and_a_banner(app: dash.Dash, client, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
                                                    caplog: pytest.LogCaptureFixture) -> None:
    down = replace(
        app.server.config[CONFIG_KEY],
        database_url=f"postgresql://bi:{URL_PASSWORD}@127.0.0.1:1/shop",
        connect_timeout_s=2,
        embedded=False,
    )
    monkeypatch.setitem(app.server.config, CONFIG_KEY, down)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert "Connection refused" in response.json["reason"]
    assert URL_PASSWORD not in response.get_data(as_text=True)
    banner = find_text(overview(app), "database-banner")
    assert banner.startswith("The database cannot be reached right now") and URL_PASSWORD not in banner
    # No host, port or driver message on the page: a reference, under which the log has them.
    reference = re.search(r"Reference ([0-9a-f]{8})", banner).group(1)
    assert "127.0.0.1" not in banner and "refused" not in banner
    assert any(reference in record.getMessage() and "127.0.0.1" in record.getMessage() for record in caplog.records)
    answer = client.get("/api/v1/kpis")
    assert answer.status_code == 503 and answer.json["error"]["code"] == "database_unavailable"
    assert "127.0.0.1" not in answer.get_data(as_text=True) and re.fullmatch("[0-9a-f]{8}", answer.json["error"]["reference"])


def test_a_failure_that_is_not_the_database_says_so(app: dash.Dash, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    from bi_app import service

    def broken(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise ValueError("a bug in an analysis")

    monkeypatch.setattr(service, "run_many", broken)
    layout = overview(app)
    assert find_text(layout, "database-banner") is None
    banner = find_text(layout, "error-banner")
    assert banner.startswith("This view could not be computed.") and "ValueError" not in banner
    assert "a bug in an analysis" not in banner  # no exception text reaches the browser ...
    reference = re.search(r"reference ([0-9a-f]{8})", banner).group(1)
    assert reference in caplog.text and "a bug in an analysis" in caplog.text  # ... the log has it, traceback too


def test_navigation_comes_from_the_page_registry(app: dash.Dash) -> None:
    paths = {page["path"] for page in dash.page_registry.values()}
    assert paths == {"/", "/segments", "/regions", "/clusters", "/strategy", "/data", "/reports"}
    with app.server.test_request_context("/"):
        shell = str(app.layout())
    for page in dash.page_registry.values():
        assert page["name"] in shell


def test_a_page_drawn_once_is_kept_until_the_data_changes(app: dash.Dash, db_url: str, point_app_at,  # noqa: ANN001
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The overview's rendering (cards and figures) is kept per data version, filters and download right: a
    second look draws nothing and is exactly the first; a viewer's is drawn for a viewer; a new load redraws."""
    import json

    from flask import g
    from plotly.io.json import to_json_plotly

    from bi_app import figures
    from bi_app.context import USER_KEY
    from data_layer.bootstrap import load_demo_data
    from data_layer.engine import make_engine
    from data_layer.users import User
    from pages.overview import show_overview

    engine = make_engine(db_url)
    load_demo_data(engine, 400, 3, replace=True)
    point_app_at(db_url)
    drawn: list[str] = []
    original = figures.bars
    monkeypatch.setattr(figures, "bars", lambda *args, **kwargs: drawn.append("bars") or original(*args, **kwargs))

    def look(role: str) -> str:
        with app.server.test_request_context("/"):
            g.setdefault(USER_KEY, User("someone", role, ()))
            return to_json_plotly(show_overview("?period=all", "ok"))

    first = look("analyst")
    assert drawn, "the first look draws the figures"
    drawn.clear()
    assert look("analyst") == first and drawn == [], "the second look draws nothing"
    viewer = look("viewer")  # may not download: its own rendering (its charts carry no CSV links)
    assert drawn, "a viewer's page is drawn for a viewer"
    summary_link, *cards = json.loads(first)[0]  # an analyst may download the summary; a viewer may not
    assert summary_link["props"]["id"] == "overview-summary-pdf"
    assert json.loads(viewer)[0] == cards, "the same cards"

    load_demo_data(engine, 300, 4, replace=True)  # a new data version
    drawn.clear()
    assert look("analyst") != first and drawn, "new data is drawn anew"
    engine.dispose()


def test_the_filter_bar_gets_its_option_lists_only_when_they_differ_from_what_it_holds(client) -> None:
    """The option lists go to the browser on its first call and whenever the data's values differ from the lists
    it holds (their tag), not at every choice in the bar: redrawing each list slowed every filter change."""
    from tests.support import callback_body

    orders = generate_orders_frame(2000, seed=42)  # what the first run seeds
    sync = next(d for d in client.get("/_dash-dependencies").json if "filter-options-tag.data" in d["output"])

    def bar(tag: str | None, changed: dict[str, object]) -> dict:
        body = callback_body(sync, {"url.search": "?period=all", "filter-options-tag.data": tag, **changed})
        body["state"] = [{**entry, "value": tag} for entry in body["state"]]
        answer = client.post("/_dash-update-component", json=body)
        assert answer.status_code == 200
        return answer.json["response"]

    first = bar(None, {})
    assert [o["value"] for o in first["filter-region"]["options"]] == sorted(orders["region"].unique())
    assert [o["value"] for o in first["filter-product"]["options"]] == sorted(orders["product"].unique())
    tag = first["filter-options-tag"]["data"]
    picked = bar(tag, {"filter-region.value": ["West"]})
    assert "filter-region" not in picked or "options" not in picked["filter-region"]
    assert "filter-options-tag" not in picked
    stale = bar("a tag of other lists", {"filter-region.value": ["West"]})
    assert stale["filter-options-tag"]["data"] == tag
    assert len(stale["filter-region"]["options"]) == orders["region"].nunique()
