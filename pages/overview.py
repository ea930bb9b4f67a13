"""Overview: the state of the business under the current filters, and the orders behind it."""

from __future__ import annotations

from datetime import date

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, NoUpdate, Output, State, callback, clientside_callback, dcc, html, no_update

from bi_app import figures, service
from bi_app.analytics.orders import span_text
from bi_app.components import chart, count, empty_state, kpi_card, section
from bi_app.context import may_download
from bi_app.money import MoneyFormat
from bi_app.shell import filters_of, search_of, with_filters
from bi_app.views import page_view
from data_layer.filters import COMPARISONS, Filters
from data_layer.schema import MONEY_COLUMNS, SALES_COLUMNS

dash.register_page(__name__, path="/", name="Overview", title="Overview · E-commerce BI", order=0,
                   download="orders")

GRID_HEIGHT = "420px"
def grid_columns(money: MoneyFormat) -> list[dict]:
    """The grid's columns: money written in the data's currency and locale (by the browser, with
    ``money`` of assets/dashAgGridFunctions.js)."""
    formatter = {"function": f"money(params.value, {money.locale.replace('_', '-')!r}, {money.currency!r})"}
    return [{"field": name, "headerName": name.replace("_", " ").capitalize(), "sortable": True,
             **({"valueFormatter": formatter, "type": "rightAligned"} if name in MONEY_COLUMNS else {})}
            for name in SALES_COLUMNS]


def graph(graph_id: str) -> dcc.Loading:
    # The space is held before plotly.js has loaded, so nothing below jumps when the charts draw.
    return dcc.Loading(chart(graph_id, style={"minHeight": f"{figures.HEIGHT}px"}),
                       type="dot", delay_show=300)


def layout(**_query: str) -> html.Div:
    return html.Div(
        [
            html.H1("Overview", className="h2 mb-3"),
            html.Div(id="overview-status"),
            dcc.Loading(html.Div(id="overview-kpis", className="kpi-slot"), type="dot", delay_show=300),
            dbc.Row(
                [
                    dbc.Col(section(None, graph("overview-trend")), lg=8, className="mb-3"),
                    dbc.Col(section(None, graph("overview-segments")), lg=4, className="mb-3"),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(section(None, graph("overview-products")), lg=4, className="mb-3"),
                    dbc.Col(section(None, graph("overview-regions")), lg=4, className="mb-3"),
                    dbc.Col(section(None, graph("overview-distribution")), lg=4, className="mb-3"),
                ]
            ),
            section(
                "Transactions",
                # The grid is made when this slot comes into view: below the fold, it would
                # otherwise add about a fifth to the page's drawing time for rows nobody sees yet.
                html.Div(html.Div("The matching orders appear here.", className="text-muted small p-3"),
                         id="overview-grid-slot", style={"minHeight": GRID_HEIGHT}),
            ),
            dcc.Store(id="overview-grid-wanted", data=False),
        ]
    )


def transactions_grid() -> dag.AgGrid:
    """The orders under the filters, paged and sorted on the server (see :func:`grid_rows`)."""
    return dag.AgGrid(
        id="overview-grid",
        columnDefs=grid_columns(service.money_format()),
        rowModelType="infinite",
        defaultColDef={"resizable": True, "minWidth": 110},
        dashGridOptions={"rowBuffer": 0, "cacheBlockSize": 100, "maxBlocksInCache": 5, "infiniteInitialRowCount": 100},
        style={"height": GRID_HEIGHT},
    )


# Once the KPIs and charts have arrived (the page has its height), watches the grid's slot:
# when some of it is in the viewport, the grid is wanted.
clientside_callback(
    """function(_kpis, wanted) {
        if (wanted) { return dash_clientside.no_update; }
        const want = () => dash_clientside.set_props("overview-grid-wanted", {data: true});
        if (!("IntersectionObserver" in window)) { want(); return dash_clientside.no_update; }
        requestAnimationFrame(() => requestAnimationFrame(() => {
            const slot = document.getElementById("overview-grid-slot");
            if (!slot) { return; }
            if (window.overviewGridObserver) { window.overviewGridObserver.disconnect(); }
            window.overviewGridObserver = new IntersectionObserver(entries => {
                if (entries.some(entry => entry.isIntersecting)) { window.overviewGridObserver.disconnect(); want(); }
            });
            window.overviewGridObserver.observe(slot);
        }));
        return dash_clientside.no_update;
    }""",
    Output("overview-grid-slot", "title"),
    Input("overview-kpis", "children"),
    State("overview-grid-wanted", "data"),
    prevent_initial_call=True,
)


@callback(Output("overview-grid-slot", "children"), Input("overview-grid-wanted", "data"), prevent_initial_call=True)
def show_grid(wanted: bool) -> dag.AgGrid:
    return transactions_grid() if wanted else no_update


def export_link(table: str, query: str | None) -> str | None:
    """The CSV of ``table`` for the filters of ``query``; None for a user who may not download (``query`` None)."""
    return None if query is None else f"/export/{table}.csv{query}"


#: What the overview shows, computed in one request (the browser opens at most six
#: connections to a server: six separate callbacks would queue behind the grid's).
CHARTS = {
    "overview-trend": ("trend", lambda t, m, q: figures.trend(t["monthly"], m, last_year=t.get("last_year"))),
    "overview-segments": ("segments", lambda s, m, q: figures.share_pie(s, "segment", "revenue", "Revenue by segment",
                                                                         m)),
    "overview-products": ("products", lambda p, m, q: figures.bars(p["products"], "product", "revenue",
                                                                   "Revenue by product", money=m,
                                                                   see_all=export_link("products", q))),
    "overview-regions": ("regions", lambda r, m, q: figures.bars(r, "region", "revenue", "Revenue by region", money=m,
                                                                 see_all=export_link("regions", q))),
    "overview-distribution": ("distribution", lambda d, m, q: figures.histogram(d["histogram"], d, m)),
}


@callback(
    Output("overview-kpis", "children"),
    Output("overview-status", "children"),
    *[Output(graph_id, "figure") for graph_id in CHARTS],
    Input("url", "search"),
    Input("db-status", "data"),
)
def show_overview(search: str | None, _db: str) -> tuple:
    down = figures.empty("", "No figures: see the message above")
    return page_view(search, overview, failed=lambda banner: (None, banner, *(down for _ in CHARTS)),
                     kept_as="overview")


def overview(filters: Filters) -> tuple:
    """The KPI cards (or the empty state) and the five charts for ``filters``."""
    results = service.run_many(["kpis", *(name for name, _draw in CHARTS.values())], filters)
    if filters.compare == "last-year":
        results["trend"] = {**results["trend"], "last_year": service.trend_a_year_earlier(filters)}
    currency = service.money_format()
    # The "all as CSV" links' query string, for those who may download; None for the others.
    query = search_of(filters) if may_download() else None
    charts = [draw(results[name], currency, query) for name, draw in CHARTS.values()]
    kpis = results["kpis"]
    if kpis["orders"]["value"] == 0:
        return (empty_state(), None, *charts)
    summary = [] if query is None else [html.A("Executive summary (PDF)", href=f"/export/summary.pdf{query}",
                                               id="overview-summary-pdf",
                                               className="small float-end link-primary ms-3")]
    return ([*summary, *kpi_cards(kpis, currency, filters.compare)], None, *charts)


def kpi_cards(kpis: dict, currency: MoneyFormat, compare: str = "previous") -> list:
    """The period caption (with the spans compared) and the five KPI cards with their change against
    ``compare`` (the previous period, or the same period last year); net revenue says what it is net of."""
    satisfaction = kpis["average_satisfaction"]["value"]
    gross, returns = kpis["gross_sales"]["value"], kpis["returns"]["value"]
    adjustments = kpis["adjustments"]["value"]
    net_of = f"{currency(gross)} gross − {currency(returns)} returns" + (
        f" {'+' if adjustments >= 0 else '−'} {currency(abs(adjustments))} adjustments and fees"
        if adjustments else "")

    def changes(name: str) -> list[tuple[str, float | None]]:
        key = "change_last_year" if compare == "last-year" else "change"
        return [(f"vs {COMPARISONS[compare]}", kpis[name][key])]

    cards = [
        kpi_card("Net revenue", currency(kpis["revenue"]["value"]), card_id="overview-kpi-revenue",
                 changes=changes("revenue"), detail=net_of),
        kpi_card("Orders", count(kpis["orders"]["value"]), card_id="overview-kpi-orders", changes=changes("orders"),
                 detail="with a sale"),
        kpi_card("Average order value", currency(kpis["average_order_value"]["value"]),
                 card_id="overview-kpi-aov", changes=changes("average_order_value"), detail="net revenue ÷ orders"),
        kpi_card("Unique customers", count(kpis["customers"]["value"]), card_id="overview-kpi-customers",
                 changes=changes("customers")),
        kpi_card("Average satisfaction", "—" if satisfaction is None else f"{satisfaction:.2f} / 5",
                 card_id="overview-kpi-satisfaction", changes=changes("average_satisfaction"),
                 note="no ratings in these orders" if satisfaction is None else None),
    ]
    return [period_caption(kpis), dbc.Row([dbc.Col(card, xs=12, sm=6, lg=True, className="mb-3") for card in cards])]


def period_caption(kpis: dict) -> html.Div:
    """How many orders, over which days, compared with which: a partial period says where the data ends."""
    period, previous, last_year = kpis["period"], kpis["previous_period"], kpis["same_period_last_year"]
    text = f"{count(kpis['orders']['value'], 'order')}, {span_text(period['start'], period['through'])}"
    if period["partial"]:
        text += (f" (the period runs to {period['end']}, past the data's last order: it is compared like for "
                 "like, over the same number of days)")
    orders = kpis["orders"]
    spans = [(span, orders[key]) for span, key in ((previous, "previous"), (last_year, "last_year")) if span]
    compared = list(dict.fromkeys(span_text(span["start"], span["end"]) for span, count_then in spans if count_then))
    if compared:
        text += f"; compared with {' and with '.join(compared)}"
    empty = list(dict.fromkeys(span_text(span["start"], span["end"]) for span, count_then in spans if not count_then))
    if empty:
        text += f"; no orders {' nor '.join(empty)} to compare with"
    return html.Div(text + ".", id="overview-period", className="text-muted small mb-2")


@callback(
    Output("url", "href", allow_duplicate=True),
    Input("overview-regions", "clickData"),
    Input("overview-segments", "clickData"),
    Input("overview-products", "clickData"),
    Input("overview-trend", "clickData"),
    State("url", "search"),
    prevent_initial_call=True,
)
def drill_down(region, segment, product, month, search: str | None):  # noqa: ANN001, ANN201
    """A click on a chart narrows the view: region and segment go to their page."""
    clicked = dash.ctx.triggered[0]["value"]
    point = clicked["points"][0] if clicked else {}
    if not point or point.get("customdata", "") is None:  # nothing, or the "Other (k more)" bar
        return no_update
    if dash.ctx.triggered_id in DRILL_TARGETS:
        path, parameter = DRILL_TARGETS[dash.ctx.triggered_id]
        return with_filters(path, search, **{parameter: point["customdata"]})
    return with_filters("/", search, **month_of(point["x"]))


#: Where a click on a bar or slice of each chart leads, and the filter it adds.
DRILL_TARGETS = {"overview-regions": ("/regions", "region"), "overview-segments": ("/segments", "segment"),
                 "overview-products": ("/", "product")}


def month_of(x: object) -> dict[str, str]:
    """The start and end dates of the month of a trend point (plotly reads "2024-03" as a date)."""
    start = date.fromisoformat(f"{str(x)[:7]}-01")
    end = (pd.Timestamp(start) + pd.offsets.MonthEnd(0)).date()
    return {"start": start.isoformat(), "end": end.isoformat()}


@callback(
    Output("overview-grid", "getRowsResponse"),
    Input("overview-grid", "getRowsRequest"),
    State("url", "search"),
    prevent_initial_call=True,
)
def grid_rows(request: dict | None, search: str | None) -> dict | NoUpdate:
    """One block of the transactions grid, paged and sorted in the database."""
    if not request:
        return no_update
    filters, _ = filters_of(search)
    sort = [(s["colId"], s["sort"] == "desc") for s in request.get("sortModel", [])]
    start, end = request["startRow"], request["endRow"]
    rows, total = service.orders_page(filters, offset=start, limit=end - start, sort=sort)
    return {"rowData": rows, "rowCount": total}


# A new filter empties the grid's block cache (once there is a grid), so it asks for its rows again.
clientside_callback(
    """function(search) {
        if (document.getElementById("overview-grid")) {
            dash_ag_grid.getApiAsync("overview-grid").then(api => api.purgeInfiniteCache());
        }
        return window.dash_clientside.no_update;
    }""",
    Output("overview-grid", "id"),
    Input("url", "search"),
    prevent_initial_call=True,
)
