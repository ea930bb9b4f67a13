"""The page shell: navigation, the global filter bar kept in the URL, filter chips, downloads.

The URL's query string is the one state: the filter bar writes it, every page
reads it (``Input("url", "search")``), so a link reproduces a view and the
browser's back and forward buttons work.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlencode

import dash
import dash_bootstrap_components as dbc
from dash import Input, NoUpdate, Output, State, callback, clientside_callback, ctx, dcc, html, no_update
from dash.development.base_component import Component
from flask_wtf.csrf import generate_csrf
from sqlalchemy.exc import SQLAlchemyError

from bi_app import service
from bi_app.auth import LOGOUT_PATH, may_open, page_for
from bi_app.components import attributes, navbar
from bi_app.context import current_config, current_engine, may_download, signed_in_user
from bi_app.incidents import reference_for
from data_layer.engine import DatabaseError, DatabaseSlowError, is_timeout, ping
from data_layer.filters import COMPARISONS, LIST_PARAMETERS, PERIODS, Filters
from data_layer.meta import OPTIONAL_FIELDS, absent_fields, data_version, database_is_slow
from data_layer.users import User

log = logging.getLogger(__name__)
LIST_FILTERS = tuple(LIST_PARAMETERS)  # region, segment, category, product
LABELS = {"region": "Region", "segment": "Segment", "category": "Category", "product": "Product"}
#: The period select's value for dates chosen by hand.
CUSTOM = "custom"
PLURALS = {"region": "regions", "segment": "segments", "category": "categories", "product": "products"}


def query_of(search: str | None) -> dict[str, list[str]]:
    """``?a=1&a=2`` -> ``{"a": ["1", "2"]}``."""
    return parse_qs((search or "").lstrip("?"), keep_blank_values=True)


def search_of(filters: Filters) -> str:
    """The query string (with its ``?``) for ``filters``; empty for no filter."""
    pairs = filters.to_query()
    return f"?{urlencode(pairs)}" if pairs else ""


def filters_of(search: str | None) -> tuple[Filters, list[str]]:
    """The filters in a page's query string, and a notice for each parameter that was dropped. A query
    without (valid) dates is the period the dashboard opens on (``BI_DEFAULT_PERIOD``, else the last 90 days
    when the data allows a whole previous period: :func:`default_period`)."""
    query = query_of(search)
    filters, notices = service.parse_leniently(query)
    if filters.period is None and filters.start is None and filters.end is None:  # none given, or none valid
        query = {name: values for name, values in query.items() if name not in ("start", "end")}
        query["period"] = [service.opening_period()]
        filters, _again = service.parse_leniently(query)
    return filters, notices


def layout() -> html.Div:
    """The shell around every page: the signed-in user's pages only."""
    user = signed_in_user()
    return html.Div(
        [
            dcc.Location(id="url", refresh="callback-nav"),
            # Checks the database every few seconds; pages redraw when it comes back.
            dcc.Interval(id="db-retry", interval=5000),
            dcc.Store(id="db-status", data="ok"),
            dcc.Store(id="filter-options-tag"),  # which option lists the filter bar holds (see option_lists)
            dcc.Store(id="page-titles", data={p["path"]: p["title"] for p in dash.page_registry.values()}),
            html.A("Skip to the figures", href="#page-content", className="visually-hidden-focusable"),
            navbar([page for page in dash.page_registry.values() if may_open(user, page)], account(user)),
            dbc.Container(
                [
                    # A named section is a landmark: screen readers list it, and no content is outside one.
                    html.Section(
                        [
                            filter_bar(),
                            html.Div(id="filter-notice"),
                            html.Div(id="data-notice"),
                            html.Div(id="filter-chips", className="d-flex flex-wrap gap-2 mb-2"),
                            html.Div(id="downloads", className="d-flex flex-wrap gap-2 mb-3"),
                        ],
                        **attributes(aria_label="Filters and downloads"),
                    ),
                    html.Main(id="page-content", tabIndex="-1"),
                ],
                fluid=True,
                className="py-3",
            ),
        ]
    )


def filter_bar() -> dbc.Card:
    """Period preset, date range, comparison and the four list filters; their values mirror the URL.
    Period, dates and comparison are the browser's own controls (labelled, keyboard- and screen-reader
    friendly; the date inputs open on the period's month)."""
    def labelled(label: str, control, **width: int) -> dbc.Col:  # noqa: ANN001
        return dbc.Col([dbc.Label(label, html_for=control.id, className="visually-hidden"), control], **width)

    dropdowns = [
        # One line per option, whole on hover: with names near 60 characters the list showed two at a time.
        labelled(f"{LABELS[name]} filter", dcc.Dropdown(id=f"filter-{name}", multi=True, maxHeight=340, optionHeight=34,
                                                       placeholder=f"All {PLURALS[name]}", className="filter-dropdown"),
                 xs=12, sm=6, lg=2)
        for name in LIST_FILTERS
    ]
    periods = [{"label": "Custom dates", "value": CUSTOM}] + [{"label": label, "value": name}
                                                         for name, label in PERIODS.items()]
    return dbc.Card(
        dbc.CardBody(
            [
                dbc.Row(
                    [
                        labelled("Period", dbc.Select(id="filter-period", options=periods),
                                 xs=12, sm=6, lg=2),
                        # debounce: a date counts once typed whole (Enter or leaving the box), not at
                        # each digit of its year.
                        labelled("From", dbc.Input(id="filter-start", type="date", debounce=True), xs=6, sm=3, lg=2),
                        labelled("To", dbc.Input(id="filter-end", type="date", debounce=True), xs=6, sm=3, lg=2),
                        labelled("Compare with", dbc.Select(
                            id="filter-compare", value="previous",
                            options=[{"label": f"vs {label}", "value": name} for name, label in COMPARISONS.items()]),
                            xs=12, sm=6, lg=3),
                    ],
                    className="g-2 mb-2",
                ),
                dbc.Row(
                    [
                        *dropdowns,
                        dbc.Col(dbc.Button("Reset", id="filter-reset", color="primary", outline=True, size="sm"),
                                xs=12, lg=2, className="d-flex align-items-center"),
                    ],
                    className="g-2",
                ),
            ],
            className="py-2",
        ),
        className="mb-2 shadow-sm",
        id="filter-bar",
    )


@callback(
    Output("url", "search"),
    Output("filter-period", "value"),
    Output("filter-start", "value"),
    Output("filter-end", "value"),
    Output("filter-start", "max"),
    Output("filter-compare", "value"),
    *[Output(f"filter-{name}", "value") for name in LIST_FILTERS],
    *[Output(f"filter-{name}", "options") for name in LIST_FILTERS],
    Output("filter-options-tag", "data"),
    Output("filter-notice", "children"),
    Input("url", "search"),
    Input("filter-period", "value"),
    Input("filter-start", "value"),
    Input("filter-end", "value"),
    Input("filter-compare", "value"),
    *[Input(f"filter-{name}", "value") for name in LIST_FILTERS],
    Input("filter-reset", "n_clicks"),
    Input("db-status", "data"),
    State("filter-options-tag", "data"),
)
def sync_filters(search: str | None, period: str | None, start: str | None, end: str | None, compare: str | None,
                 *values: Any) -> tuple:
    """Keep the URL and the filter bar in step, whichever of them changed (one callback, as Dash needs
    for two components that set each other); a URL without dates gets the default period written into
    it (see :func:`filters_of`)."""
    try:
        options = service.known_values()
        _first, last = service.data_dates()
    except Exception as exc:  # noqa: BLE001 - the banner says the database is unreachable
        return (no_update, *(no_update,) * (6 + 2 * len(LIST_FILTERS)), error_banner(exc))
    if ctx.triggered_id in (None, "url", "db-status", "filter-reset"):
        filters, notices = filters_of("" if ctx.triggered_id == "filter-reset" else search)
    else:
        filters, notices = filters_from_bar(ctx.triggered_id, search, period, start, end, compare,
                                            values[: len(LIST_FILTERS)])
    new_search = search_of(filters)
    # The bar always shows what the figures use (a date it could not use, a reset, a preset's days).
    return (new_search if new_search != (search or "") else no_update, *bar_values(filters, last),
            *option_lists(options, shown=values[-1]), filter_notice(notices))


def filters_from_bar(changed: str, search: str | None, period: str | None, start: str | None, end: str | None,
                     compare: str | None, lists: tuple) -> tuple[Filters, list[str]]:
    """The filters the bar now shows, after its ``changed`` control changed (the dates it does not
    show stay as the URL ``search`` has them), and a notice for each value that cannot be used."""
    query: dict[str, list[str]] = {"compare": [compare or "previous"]}
    if changed == "filter-period" and period and period != CUSTOM:
        query["period"] = [period]
    elif changed in ("filter-period", "filter-start", "filter-end"):  # dates as typed (or shown)
        query.update(start=[start[:10]] if start else [], end=[end[:10]] if end else [])
        if not start and not end:
            query["period"] = ["all"]
    else:
        query.update({name: chosen for name, chosen in query_of(search).items() if name in ("period", "start", "end")})
    for name, chosen in zip(LIST_FILTERS, lists, strict=True):
        query[name] = list(chosen or [])
    return service.parse_leniently({k: v for k, v in query.items() if v})


def option_lists(options: dict[str, list[str]], shown: str | None) -> list:
    """The list filters' dropdown options (every value in the data, each whole on hover) and their tag, when
    they differ from the lists the bar holds (tagged ``shown``); else unchanged (``no_update``): a browser
    redrawing every list at each choice made a filter change slower."""
    tag = hashlib.blake2b(json.dumps(options, sort_keys=True).encode(), digest_size=8).hexdigest()
    if tag == shown:
        return [no_update] * (len(LIST_FILTERS) + 1)
    return [*([{"label": value, "value": value, "title": value} for value in options.get(name, [])]
              for name in LIST_FILTERS), tag]


def filter_notice(notices: list[str]) -> dbc.Alert | None:
    """What the bar could not use, or nothing."""
    if not notices:
        return None
    return dbc.Alert(["Some filters were not used: ", "; ".join(notices)], color="warning", dismissable=True,
                     id="filter-notice-alert", className="py-2")


def bar_values(filters: Filters, last: date | None) -> tuple:
    """The filter bar's values for ``filters``: period, dates, the latest day the start date can be
    (the data's last: an empty date input then opens on the data's months, not today's), comparison,
    and the list filters' values."""
    return (
        filters.period or CUSTOM,
        filters.start.isoformat() if filters.start else "",
        filters.end.isoformat() if filters.end else "",
        last.isoformat() if last else None,
        filters.compare,
        *[list(getattr(filters, LIST_PARAMETERS[name][0])) for name in LIST_FILTERS],
    )


@callback(Output("page-content", "children"), Input("url", "pathname"))
def route(pathname: str | None):  # noqa: ANN201
    """The registered page for the path (the query string is read by each page's callbacks)."""
    page = page_for(pathname)
    if page is None:
        return html.Div([html.H1("Page not found", className="h2"),
                         html.P(["Nothing lives at ", html.Code(pathname or ""), ". ",
                                 dcc.Link("Back to the overview", href="/")])], id="not-found")
    user = signed_in_user()
    if not may_open(user, page):
        return html.Div([html.H1("Not allowed", className="h2"),
                         html.P([f"The {page['name']} page needs the {page.get('role')} role; you are signed in as "
                                 f"{user.name} ({user.role}). ", dcc.Link("Back to the overview", href="/")])],
                        id="not-allowed")
    return page["layout"]()


clientside_callback(
    """function(pathname, titles) {
        document.title = titles[pathname] || titles["/"];
        return window.dash_clientside.no_update;
    }""",
    Output("page-titles", "id"),
    Input("url", "pathname"),
    State("page-titles", "data"),
)


@callback(
    Output("filter-chips", "children"),
    Output("downloads", "children"),
    Output("data-notice", "children"),
    Output("filter-bar", "style"),
    Input("url", "search"),
    Input("url", "pathname"),
)
def show_chips_and_downloads(search: str | None, pathname: str | None) -> tuple[list, list, object, dict]:
    """The chips of the active filters, the download links for them, and what the data lacks; a page
    that filters nothing (``filters=False`` in its registration: Data) shows none of them."""
    if not (page_for(pathname) or {}).get("filters", True):
        return [], [], None, {"display": "none"}
    filters, _ = filters_of(search)
    return chips(filters, pathname), downloads(filters, pathname), data_notice(), {}


def data_notice() -> dbc.Alert | None:
    """Say which optional fields the data has none of, so their figures are read as absent, not zero."""
    try:
        with current_engine().connect() as conn:
            absent = absent_fields(conn)
    except Exception:  # noqa: BLE001 - the database banner says it is unreachable
        return None
    if not absent:
        return None
    return dbc.Alert(f"This data has no {'; no '.join(OPTIONAL_FIELDS[name] for name in absent)}: the figures "
                     "that need them are left out or marked “—”, and labels read “Unknown”.",
                     color="info", id="data-notice-alert", className="py-2")


def chips(filters: Filters, pathname: str | None) -> list:
    """One chip per active filter value (the period by its name; all time has none): a link to the same
    page without that value, so removing it needs no callback."""
    links = []
    for parameter, value in filters.to_query():
        if parameter == "compare" or (parameter == "period" and value == "all"):
            continue
        label = {"start": "From", "end": "To", "period": "Period"}.get(parameter, LABELS.get(parameter, parameter))
        shown = PERIODS[value] if parameter == "period" else value
        links.append(
            dbc.Button(
                [f"{label}: {shown} ", html.Span("×", className="ms-1", **attributes(aria_hidden="true"))],
                href=f"{pathname or '/'}{search_without(filters, parameter, value)}",
                color="primary", outline=True, size="sm", className="rounded-pill filter-chip",
                title=f"Remove this filter ({label}: {shown})",
            )
        )
    return links


def search_without(filters: Filters, parameter: str, value: str) -> str:
    """The query string of ``filters`` without one of their values (in :meth:`Filters.to_query`'s order);
    with no dates left, all time (not the default period)."""
    pairs = [pair for pair in filters.to_query() if pair != (parameter, value)]
    if not any(name in ("period", "start", "end") for name, _value in pairs):
        pairs.insert(0, ("period", "all"))
    return f"?{urlencode(pairs)}"


def account(user: User) -> Component:
    """Who is signed in, and the button to sign out (a form with its CSRF token); in demo mode, a badge
    saying that no one signs in."""
    if not current_config().secret_key:
        return dbc.Badge("Demo mode: no sign-in", color="light", text_color="primary", id="demo-badge",
                         className="ms-lg-3", title="This server has no secret key set: it answers this machine "
                         "only, and everyone using it may see and change everything.")
    return html.Form(
        [
            dcc.Input(type="hidden", name="csrf_token", value=generate_csrf()),
            html.Span(f"{user.name} ({user.role})", className="text-white small me-2", id="signed-in-user"),
            dbc.Button("Sign out", type="submit", color="light", outline=True, size="sm", id="logout-button"),
        ],
        action=LOGOUT_PATH, method="POST", id="logout-form", className="d-flex align-items-center ms-lg-3",
    )


def downloads(filters: Filters, pathname: str | None) -> list:
    """Download links for the current filters (an analyst's and above): the page's data as CSV and the
    XLSX report."""
    if not may_download():
        return []
    query = search_of(filters)
    table = (page_for(pathname) or {}).get("download", "orders")
    return [
        html.A(
            f"Download {table} (CSV)",
            href=f"/export/{table}.csv{query}", className="btn btn-sm btn-outline-primary",
            id="download-csv", download="",
        ),
        html.A(
            "Download report (XLSX)", href=f"/export/report.xlsx{query}",
            className="btn btn-sm btn-outline-primary", id="download-report", download="",
        ),
    ]


def error_banner(exc: Exception) -> dbc.Alert:
    """What a page shows when its figures could not be computed: that the database cannot be
    reached (the page redraws by itself when it can), or, for any other failure, that this view
    failed (logged with its traceback); the rest of the app keeps working either way."""
    if is_timeout(exc):
        reference = reference_for(log, "The database was too slow for a page", exc)
        return dbc.Alert(
            "The database is slow to answer right now (a long operation may be holding it). Figures it had "
            "already given are still shown; this one comes back by itself when it answers again. "
            f"(Reference {reference}: the details are in the server's log.)",
            color="warning", id="database-slow-banner",
        )
    if isinstance(exc, (SQLAlchemyError, DatabaseError)):
        reference = reference_for(log, "A page could not reach the database", exc)
        return dbc.Alert(
            "The database cannot be reached right now. The figures will come back by themselves when it "
            f"does. (Reference {reference}: the details are in the server's log.)",
            color="danger", id="database-banner",
        )
    reference = reference_for(log, "A view could not be computed", exc, traceback=True)
    return dbc.Alert(
        f"This view could not be computed. The error is logged under reference {reference}; other filters "
        "and pages keep working.",
        color="danger", id="error-banner",
    )


def with_filters(pathname: str, search: str | None, **changes: list[str] | str | None) -> str:
    """A link to ``pathname`` keeping the current filters, with some parameters replaced."""
    query = query_of(search)
    if "start" in changes or "end" in changes:
        query.pop("period", None)
    for parameter, value in changes.items():
        query[parameter] = [] if value is None else ([value] if isinstance(value, str) else list(value))
    filters, _ = service.parse_leniently({k: v for k, v in query.items() if v})
    return f"{pathname}{search_of(filters)}"


@callback(Output("db-status", "data"), Input("db-retry", "n_intervals"), State("db-status", "data"))
def watch_database(_ticks: int | None, status: str) -> str | NoUpdate:
    """``ok``, ``slow`` (the data version took too long: see :func:`data_version`) or ``down``; changes
    only when the database's state does, so pages redraw then."""
    engine = current_engine()
    try:
        ping(engine)
        with engine.connect() as conn:
            data_version(conn)
        now = "slow" if database_is_slow(engine) else "ok"
    except DatabaseSlowError:
        now = "slow"
    except (DatabaseError, SQLAlchemyError):
        now = "down"
    return now if status != now else no_update


@callback(
    Output("navbar-collapse", "is_open"),
    Input("navbar-toggler", "n_clicks"),
    State("navbar-collapse", "is_open"),
    prevent_initial_call=True,
)
def toggle_navbar(_clicks: int, is_open: bool) -> bool:
    """Open and close the menu on narrow screens."""
    return not is_open
