"""Reports: emailed executive summaries on a schedule (subscriptions), alert rules, and every delivery."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, callback, ctx, dcc, html, no_update

from bi_app.auth import record
from bi_app.busy import BusyError, heavy_work
from bi_app.components import section
from bi_app.context import current_config, current_write_engine, signed_in_user
from bi_app.incidents import reference_for
from bi_app.reporting import run_now
from bi_app.service import known_values
from data_layer import reports
from data_layer.filters import PERIODS
from data_layer.reports import ALERT_CONDITIONS, ALERT_MEASURES, FREQUENCIES, AlertRule, ReportError
from data_layer.users import list_users

log = logging.getLogger(__name__)

#: The least role that may manage reports (subscribe themselves or others, add alerts).
REPORTS_ROLE = "analyst"
dash.register_page(__name__, path="/reports", name="Reports", title="Reports · E-commerce BI", order=6, filters=False,
                   role=REPORTS_ROLE)

SCHEDULE_FIELDS = ("frequency", "day", "at", "timezone")


def layout(**_query: str) -> html.Div:
    return html.Div([
        html.H1("Reports", className="h2 mb-3"),
        html.P("Executive summaries emailed on a schedule, and alerts that email when a figure crosses a line "
               "(and again when it is back). Each recipient gets only the regions they may see.",
               className="text-muted"),
        dcc.Store(id="reports-changed", data=0),
        dcc.Interval(id="reports-refresh", interval=30_000),
        html.Div(id="reports-status"),
        dcc.Loading(html.Div(id="reports-action-result"), type="dot"),
        html.Div(section("Subscriptions", html.Div(id="reports-subscriptions"), subscription_form()), className="mb-3"),
        html.Div(section("Alerts", html.Div(id="reports-alerts"), alert_form()), className="mb-3"),
        section("Deliveries", html.Div(id="reports-history")),
    ])


def field(label: str, control: Any, width: int = 3) -> dbc.Col:
    return dbc.Col([dbc.Label(label, html_for=control.id, className="small mb-0"), control], md=width,
                   className="mb-2")


def schedule_fields(prefix: str, frequency: str) -> list[dbc.Col]:
    zone = current_config().timezone or "UTC"
    return [
        field("Every", dbc.Select(id=f"{prefix}-frequency", value=frequency,
                                  options=[{"label": f, "value": f} for f in FREQUENCIES]), 2),
        field("On (weekly: mon..sun; monthly: 1..28)", dbc.Input(id=f"{prefix}-day", value="mon", maxLength=3), 2),
        field("At", dbc.Input(id=f"{prefix}-at", value="07:00", type="time"), 2),
        field("Time zone", dbc.Input(id=f"{prefix}-timezone", value=zone, maxLength=64), 2),
    ]


def subscription_form() -> html.Details:
    return html.Details([
        html.Summary("New subscription", className="fw-semibold my-2"),
        dbc.Row([
            field("Name", dbc.Input(id="reports-sub-name", placeholder="Weekly summary", maxLength=200), 4),
            field("Period", dbc.Select(id="reports-sub-period", value="previous-week",
                                       options=[{"label": label, "value": key} for key, label in PERIODS.items()]), 2),
            field("Compared with", dbc.Select(id="reports-sub-compare", value="previous", options=[
                {"label": "previous period", "value": "previous"},
                {"label": "same period last year", "value": "last-year"}]), 2),
            field("Regions (none: all)", dcc.Dropdown(id="reports-sub-regions", multi=True), 4),
            field("Recipients", dcc.Dropdown(id="reports-sub-recipients", multi=True), 6),
            *schedule_fields("reports-sub", "weekly"),
            dbc.Col(dbc.Checkbox(id="reports-sub-workbook", value=False, label="Attach the report workbook"),
                    md=4, className="mb-2"),
        ]),
        dbc.Button("Subscribe", id="reports-sub-add", color="primary", className="mb-2"),
        html.Div(id="reports-sub-feedback"),
    ])


def alert_form() -> html.Details:
    return html.Details([
        html.Summary("New alert", className="fw-semibold my-2"),
        dbc.Row([
            field("Name", dbc.Input(id="reports-alert-name", placeholder="North revenue down", maxLength=200), 4),
            field("Measure", dbc.Select(id="reports-alert-measure", value="revenue",
                                        options=[{"label": w, "value": k} for k, w in ALERT_MEASURES.items()]), 2),
            field("Over the last (days)", dbc.Input(id="reports-alert-days", type="number", min=1, max=366,
                                                    value=7), 2),
            field("When it", dbc.Select(id="reports-alert-condition", value="below_last_year_pct", options=[
                {"label": words.format(threshold="…"), "value": key} for key, words in ALERT_CONDITIONS.items()]), 4),
            field("… (a value, or a percentage)", dbc.Input(id="reports-alert-threshold", type="number",
                                                             value=20), 2),
            field("Regions (none: all)", dcc.Dropdown(id="reports-alert-regions", multi=True), 4),
            field("Recipients", dcc.Dropdown(id="reports-alert-recipients", multi=True), 6),
            *schedule_fields("reports-alert", "daily"),
        ]),
        dbc.Button("Add the alert", id="reports-alert-add", color="primary", className="mb-2"),
        html.Div(id="reports-alert-feedback"),
    ])


@callback(
    Output("reports-status", "children"),
    Output("reports-subscriptions", "children"),
    Output("reports-alerts", "children"),
    Output("reports-history", "children"),
    *[Output(f"reports-{kind}-{what}", "options") for kind in ("sub", "alert") for what in ("regions", "recipients")],
    Input("reports-changed", "data"),
    Input("reports-refresh", "n_intervals"),
)
def show_reports(_changed: int, _tick: int | None) -> tuple:
    """Every subscription and alert, the latest deliveries, whether mail goes out, and the form's choices."""
    return reports_view()


def reports_view() -> tuple:
    try:
        with current_write_engine().begin() as conn:
            subscriptions, alerts = reports.list_subscriptions(conn), reports.list_alerts(conn)
            deliveries, running, people = reports.history(conn, 50), reports.last_scheduler(conn), list_users(conn)
        regions = [{"label": r, "value": r} for r in known_values().get("region", [])]
    except Exception as exc:  # noqa: BLE001 - a message, never a dead page
        reference = reference_for(log, "Reports page", exc)
        down = dbc.Alert(f"The reports cannot be shown right now (reference {reference}). Try again in a minute.",
                         color="warning", id="reports-error")
        return (down, None, None, None, [], [], [], [])
    recipients = [{"label": f"{u.name}{'' if u.email else ' (no email address)'}", "value": u.name} for u in people]
    return (status(running), items_table(subscriptions, "subscription"), items_table(alerts, "alert"),
            history_table(deliveries), regions, recipients, regions, recipients)


def status(running: reports.SchedulerState | None) -> list:
    notes = []
    if not current_config().smtp_url:
        notes.append(dbc.Alert("No mail server is set up on this server, so nothing is sent yet: ask an "
                               "administrator to set one up.", color="warning", id="reports-no-mail"))
    if running is None:
        notes.append(dbc.Alert("No scheduler has run yet, so nothing is sent on schedule: ask an administrator "
                               "to start it.", color="warning", id="reports-no-scheduler"))
    else:
        ago = (datetime.now(UTC) - datetime.fromisoformat(running.last_look)).total_seconds()
        late = ago > 300
        notes.append(html.P(f"The scheduler last looked for due reports {_ago(ago)} ago (on {running.host})"
                            + (": it may have stopped; ask an administrator." if late else "."),
                            className="text-danger small" if late else "text-muted small", id="reports-scheduler"))
    return notes


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.0f} h"


def items_table(items: list, kind: str) -> dbc.Table | html.P:
    if not items:
        return html.P(f"No {kind}s yet.", className="text-muted small")
    rows = [html.Tr([
        html.Td(item.name), html.Td(view_words(item)), html.Td(reports.describe_schedule(item.schedule, item.timezone)),
        html.Td(item.next_due.strftime("%Y-%m-%d %H:%M UTC")), html.Td(", ".join(item.recipients)),
        html.Td([dbc.Button("Send now" if kind == "subscription" else "Check now", size="sm", color="secondary",
                            id={"type": "reports-run", "item": item.id}, className="me-1"),
                 dbc.Button("Remove", size="sm", color="danger", outline=True,
                            id={"type": "reports-remove", "item": item.id})]),
    ]) for item in items]
    head = ["Name", "What", "When", "Next", "To", ""]
    return dbc.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)], size="sm",
                     responsive=True, id=f"reports-{kind}-table")


def view_words(item: Any) -> str:
    if isinstance(item, reports.Alert):
        where = f" ({reports.describe_where(item.query)})" if item.query else ""
        return item.rule.describe() + where + (" · holds now" if item.state == "firing" else "")
    return reports.describe_view(item.query, PERIODS) + (" · with the workbook" if item.workbook else "")


def history_table(deliveries: list[reports.Delivery]) -> dbc.Table | html.P:
    if not deliveries:
        return html.P("Nothing delivered yet.", className="text-muted small")
    rows = [html.Tr([html.Td(d.created_at.replace("T", " ")[:16]), html.Td(d.item_name), html.Td(d.kind),
                     html.Td(d.status, className={"sent": "text-success", "failed": "text-danger"}.get(d.status)),
                     html.Td(", ".join(d.recipients)), html.Td(d.attempts),
                     html.Td(d.error or (f"next try {(d.next_attempt or '')[:16]}" if d.status == "retrying" else ""))])
            for d in deliveries]
    head = ["When", "What", "Kind", "Outcome", "To", "Attempts", "Why"]
    return dbc.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)], size="sm",
                     responsive=True, striped=True, id="reports-history-table")


@callback(
    Output("reports-sub-feedback", "children"),
    Output("reports-changed", "data", allow_duplicate=True),
    Input("reports-sub-add", "n_clicks"),
    State("reports-sub-name", "value"), State("reports-sub-period", "value"), State("reports-sub-compare", "value"),
    State("reports-sub-regions", "value"), State("reports-sub-recipients", "value"),
    *[State(f"reports-sub-{name}", "value") for name in SCHEDULE_FIELDS],
    State("reports-sub-workbook", "value"), State("reports-changed", "data"),
    prevent_initial_call=True,
)
def add_subscription(_clicks: int, name: Any, period: Any, compare: Any, regions: Any, recipients: Any,
                     *schedule_and_rest: Any) -> tuple:
    """Store the subscription the form describes; say what was done or what is wrong."""
    *schedule, workbook, changed = schedule_and_rest
    return saved(lambda conn: new_subscription(conn, name, period, compare, regions, recipients, schedule,
                                               bool(workbook)), changed)


def new_subscription(conn: Any, name: Any, period: Any, compare: Any, regions: Any, recipients: Any,
                     schedule: list, workbook: bool) -> str:
    query = {"period": [str(period)]} if period in PERIODS else {}
    if compare == "last-year":
        query["compare"] = ["last-year"]
    if regions:
        query["region"] = [str(r) for r in regions]
    cron, zone = schedule_of(schedule)
    item = reports.add_subscription(conn, name=str(name or ""), owner=signed_in_user().name,
                                    recipients=[str(r) for r in recipients or []], query=query, schedule=cron,
                                    timezone=zone, workbook=workbook)
    record("report_changed", detail=f"subscription {item.id} {item.name!r} to {', '.join(item.recipients)}")
    return f"Subscribed {', '.join(item.recipients)} to {item.name!r}; first on {item.next_due:%Y-%m-%d %H:%M} UTC."


@callback(
    Output("reports-alert-feedback", "children"),
    Output("reports-changed", "data", allow_duplicate=True),
    Input("reports-alert-add", "n_clicks"),
    State("reports-alert-name", "value"), State("reports-alert-measure", "value"),
    State("reports-alert-days", "value"), State("reports-alert-condition", "value"),
    State("reports-alert-threshold", "value"), State("reports-alert-regions", "value"),
    State("reports-alert-recipients", "value"), *[State(f"reports-alert-{name}", "value") for name in SCHEDULE_FIELDS],
    State("reports-changed", "data"),
    prevent_initial_call=True,
)
def add_alert(_clicks: int, *values: Any) -> tuple:
    """Store the alert the form describes; say what was done or what is wrong."""
    *fields, changed = values
    return saved(lambda conn: new_alert(conn, *fields), changed)


def new_alert(conn: Any, name: Any, measure: Any, days: Any, condition: Any, threshold: Any,
              regions: Any, recipients: Any, *schedule: Any) -> str:
    try:
        rule = AlertRule(str(measure), str(condition), float(threshold), int(days))
    except (TypeError, ValueError) as exc:
        raise ReportError(str(exc) if isinstance(exc, ReportError) else
                          "the window is a whole number of days and the threshold a number") from None
    query = {"region": [str(r) for r in regions]} if regions else {}
    cron, zone = schedule_of(list(schedule))
    item = reports.add_alert(conn, name=str(name or ""), owner=signed_in_user().name,
                             recipients=[str(r) for r in recipients or []], query=query, rule=rule, schedule=cron,
                             timezone=zone)
    record("report_changed", detail=f"alert {item.id} {item.name!r} to {', '.join(item.recipients)}")
    return f"Added the alert {item.name!r}: {rule.describe()}; first checked {item.next_due:%Y-%m-%d %H:%M} UTC."


def schedule_of(values: list) -> tuple[str, str]:
    frequency, day, at, zone = (str(v or "") for v in values)
    reports.next_due("* * * * *", zone or "UTC", datetime.now(UTC))  # a zone it cannot read: said before anything
    return reports.schedule_of(frequency, at or "07:00", day or None), zone or "UTC"


def saved(make: Any, changed: Any) -> tuple:
    """Run ``make(conn)`` in a transaction: its sentence, or the reason nothing was stored."""
    try:
        with current_write_engine().begin() as conn:
            said = make(conn)
    except ReportError as exc:
        return dbc.Alert(f"Not saved: {exc}.", color="danger"), no_update
    except Exception as exc:  # noqa: BLE001 - a message, never a dead page
        return dbc.Alert(f"Not saved (reference {reference_for(log, 'Reports page', exc)}).", color="danger"), no_update
    return dbc.Alert(said, color="success"), (changed or 0) + 1


@callback(
    Output("reports-action-result", "children"),
    Output("reports-changed", "data", allow_duplicate=True),
    Input({"type": "reports-run", "item": ALL}, "n_clicks"),
    Input({"type": "reports-remove", "item": ALL}, "n_clicks"),
    State("reports-changed", "data"),
    prevent_initial_call=True,
)
def act(_runs: list, _removes: list, changed: Any) -> tuple:
    """Send a subscription or check an alert now, or remove one."""
    trigger = ctx.triggered_id
    if not isinstance(trigger, dict) or not ctx.triggered[0]["value"]:  # a button drawn, not pressed
        return no_update, no_update
    said = acted(str(trigger.get("type")), str(trigger.get("item")))
    return said, (changed or 0) + 1


def acted(action: str, item_id: str) -> dbc.Alert:
    try:
        if action == "reports-remove":
            with current_write_engine().begin() as conn:
                removed = reports.remove(conn, item_id)
            record("report_changed", detail=f"removed {item_id} {removed!r}")
            return dbc.Alert(f"Removed {removed!r}.", color="success", id="reports-action")
        with heavy_work("reports"):
            delivery = run_now(item_id)
    except (ReportError, BusyError) as exc:
        return dbc.Alert(f"{str(exc)[:1].upper()}{str(exc)[1:]}.", color="warning", id="reports-action")
    except Exception as exc:  # noqa: BLE001 - a message, never a dead page
        return dbc.Alert(f"Not done (reference {reference_for(log, 'Reports page', exc)}).", color="danger",
                         id="reports-action")
    if isinstance(delivery, str):  # an alert whose state did not change
        return dbc.Alert(delivery, color="info", id="reports-action")
    if delivery.status == "sent":
        return dbc.Alert(f"Sent {delivery.item_name!r} to {', '.join(delivery.recipients)}.", color="success",
                         id="reports-action")
    return dbc.Alert(f"Not sent: {delivery.error}.", color="warning", id="reports-action")
