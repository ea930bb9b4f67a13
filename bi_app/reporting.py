"""Delivering subscriptions and alerts by email: what the scheduler does on each look (:func:`run_due`) and what
"run now" does. Runs in the app's context (its configuration, databases and result cache).

- A subscription's due time is claimed once (:func:`data_layer.reports.claim`); each recipient gets the
  executive summary of the view within their own region scope (a PDF attached, the HTML as the body, plain text
  beside it, the report workbook when asked), grouped so that each scope is computed once.
- An alert's rule is measured over its window; an email goes out when it starts to hold and when it stops, and
  nothing in between (its state is stored). Its recipients must be allowed to see the whole of its view.
- A failed delivery is tried again after 1, 5, 30 and 120 minutes, then marked failed; every outcome is in the
  history (the Reports page, ``bi-app reports history``) and in ``/metrics``.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bi_app import service, summary
from bi_app.context import current_config, current_engine, current_write_engine
from bi_app.incidents import reference_for
from bi_app.mail import Attachment, MailError, message, send
from data_layer import reports
from data_layer.filters import FilterError, Filters
from data_layer.meta import data_version
from data_layer.reports import Alert, Delivery, Subscription
from data_layer.users import User, find_user

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What one look did: deliveries made or failed, alert checks, by item name."""

    sent: list[str]
    failed: list[str]
    checked: list[str]


def run_due(now: datetime | None = None) -> Outcome:
    """Deliver every subscription and check every alert that is due, and retry the deliveries whose time has come."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    outcome = Outcome([], [], [])
    engine = current_write_engine()
    with engine.begin() as conn:
        retries = reports.retries_due(conn, now)
        due_subscriptions, due_alerts = reports.due_subscriptions(conn, now), reports.due_alerts(conn, now)
    for waiting in retries:
        with engine.begin() as conn:
            taken = reports.take_retry(conn, waiting)
        if taken:
            _record(_attempt(waiting, now), outcome)
    for subscription in due_subscriptions:
        with engine.begin() as conn:
            claimed = reports.claim(conn, item_id=subscription.id, item_name=subscription.name, kind="summary",
                                    due=subscription.next_due, recipients=subscription.recipients)
            reports.move_on(conn, subscription, now)
        if claimed is not None:
            _record(_attempt(claimed, now), outcome)
    for alert in due_alerts:
        outcome.checked.append(alert.name)
        changed = check_alert(alert, now)
        if changed is not None:
            _record(_attempt(changed, now), outcome)
    return outcome


def run_now(item_id: str) -> Delivery | str:
    """Deliver a subscription now (its schedule unchanged), or check an alert now: the delivery made (one that
    fails is not tried again later: the person who asked sees why), or, for an alert whose state did not change,
    what the check found."""
    now = datetime.now(UTC).replace(microsecond=0)
    with current_write_engine().begin() as conn:
        subscriptions = {s.id: s for s in reports.list_subscriptions(conn)}
        alerts = {a.id: a for a in reports.list_alerts(conn)}
    if item_id in subscriptions:
        item = subscriptions[item_id]
        with current_write_engine().begin() as conn:
            delivery = reports.claim(conn, item_id=item.id, item_name=item.name, kind="summary", due=now,
                                     recipients=item.recipients)
    elif item_id in alerts:
        delivery = check_alert(replace(alerts[item_id], next_due=now), now, move=False)
        if delivery is None:
            state = "holds" if _reloaded_alert(item_id).state == "firing" else "does not hold"
            return f"Checked: the rule {state}, as at its last check; nothing to send."
    else:
        raise reports.ReportError(f"no subscription or alert {item_id!r}")
    if delivery is None:
        raise reports.ReportError("this subscription was delivered for this very second already")
    return _attempt(delivery, now, retry=False)


def check_alert(alert: Alert, now: datetime, *, move: bool = True) -> Delivery | None:
    """Measure ``alert``'s rule and store the result; the delivery to attempt when its state changed (once per
    due time), else None."""
    try:
        measured = measure(alert, now)
    except FilterError as exc:
        log.warning("Alert %r not checked: %s", alert.name, exc.message)
        measured = {"holds": None, "error": exc.message}
    holds = measured["holds"]
    state = alert.state if holds is None else "firing" if holds else "clear"
    with current_write_engine().begin() as conn:
        delivery = None
        if state != alert.state:
            kind = "alert-on" if state == "firing" else "alert-off"
            delivery = reports.claim(conn, item_id=alert.id, item_name=alert.name, kind=kind, due=alert.next_due,
                                     recipients=alert.recipients,
                                     detail=json.dumps(alert_message(alert, measured, started=state == "firing")))
            if delivery is None:  # another look has this due time: it records the change
                return None
        reports.record_check(conn, alert, state, measured, now)
        if move:
            reports.move_on(conn, alert, now)
    return delivery


def measure(alert: Alert, now: datetime | None = None) -> dict[str, Any]:
    """The alert's measure over its window and the same days a year earlier, and whether the rule holds (None when
    it cannot be told: nothing a year earlier). The window is the last ``days`` complete days of the data: through
    its last order date, or through yesterday when orders are still coming in today (in ``BI_TIMEZONE``)."""
    last = service.data_dates()[1]
    if last is None:
        return {"holds": None, "reason": "no orders"}
    today = (now or datetime.now(UTC)).astimezone(ZoneInfo(current_config().timezone or "UTC")).date()
    last = min(last, today - timedelta(days=1))
    rule = alert.rule
    start = last - timedelta(days=rule.days - 1)
    query = {k: v for k, v in alert.query.items() if k not in ("period", "start", "end")}
    filters, _ = service.parse_request({**query, "start": [start.isoformat()], "end": [last.isoformat()],
                                        "compare": ["last-year"]}, scope=())
    kpis = service.run("kpis", filters)
    if rule.measure == "return_rate":
        value = _rate(kpis["returns"]["value"], kpis["gross_sales"]["value"])
        before = _rate(kpis["returns"]["last_year"], kpis["gross_sales"]["last_year"])
    else:
        value, before = kpis[rule.measure]["value"], kpis[rule.measure]["last_year"]
    holds: bool | None
    if rule.condition == "below":
        holds = value is not None and value < rule.threshold
    elif rule.condition == "above":
        holds = value is not None and value > rule.threshold
    elif not before or value is None:
        holds = None
    elif rule.condition == "below_last_year_pct":
        holds = value < before * (1 - rule.threshold / 100)
    else:
        holds = value > before * (1 + rule.threshold / 100)
    return {"holds": holds, "value": value, "last_year": before, "start": start.isoformat(), "end": last.isoformat(),
            "change": (value - before) / before if before and value is not None else None,
            "link": summary.dashboard_link(filters, current_config().base_url)}


def _rate(part: float | None, whole: float | None) -> float | None:
    return None if not whole or part is None else round(float(part) / float(whole), 4)


def alert_message(alert: Alert, measured: dict[str, Any], *, started: bool) -> dict[str, str]:
    """The subject and text of an alert's email: what holds (or no longer does), the numbers, the view's link."""
    money = service.money_format()
    rule = alert.rule

    def written(value: float | None) -> str:
        if value is None:
            return "—"
        return money(value) if rule.measure == "revenue" else f"{value:.1%}" if rule.measure == "return_rate" \
            else f"{value:,.0f}"

    threshold = None if rule.condition.endswith("_pct") else written(rule.threshold)
    what = rule.describe(threshold)
    scope = ", ".join(v for values in alert.query.values() for v in values) or "all orders"
    subject = f"{'Alert' if started else 'Cleared'}: {alert.name} ({scope})"
    change = measured.get("change")
    lines = [f"{'Now holds' if started else 'No longer holds'}: {what}.", "",
             f"{measured['start']} to {measured['end']} ({scope}): {written(measured.get('value'))}; the same days a "
             f"year earlier: {written(measured.get('last_year'))}"
             + (f" ({change:+.1%})" if change is not None else "") + "."]
    if measured.get("link"):
        lines += ["", f"The dashboard view: {measured['link']}"]
    lines += ["", "You get one email when the rule starts to hold and one when it stops, nothing in between."]
    return {"subject": subject, "text": "\n".join(lines)}


def _attempt(delivery: Delivery, now: datetime, *, retry: bool = True) -> Delivery:
    """Send ``delivery`` once (to the recipients who do not have it yet); record how it went. A failure is tried
    again later when ``retry`` and it may pass (the mail server, the browser), never when it cannot (no one to send
    to, a view the data no longer has)."""
    permanent = not retry
    try:
        if delivery.kind == "summary":
            _send_summary(delivery)
        else:
            _send_alert(delivery)
        error = None
    except _NoRecipientError as exc:
        error, permanent = str(exc), True
    except FilterError as exc:
        error, permanent = f"the view cannot be shown: {exc.message}", True
    except (MailError, summary.SummaryError) as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - recorded, retried, logged with its traceback; the scheduler goes on
        reference = reference_for(log, f"Delivery of {delivery.item_name!r}", exc, traceback=True)
        error = f"unexpected error (reference {reference}: the details are in the scheduler's log)"
    with current_write_engine().begin() as conn:
        finished = reports.finish(conn, delivery, error, now, permanent=permanent)
    if error:
        log.warning("Delivery of %r (%s, due %s) failed, attempt %d: %s; %s", delivery.item_name, delivery.kind,
                    delivery.due, finished.attempts, error,
                    f"it will be tried again at {finished.next_attempt}" if finished.status == "retrying"
                    else "not tried again")
    else:
        log.info("Delivered %r (%s, due %s) to %s", delivery.item_name, delivery.kind, delivery.due,
                 ", ".join(delivery.recipients))
    return finished


class _NoRecipientError(RuntimeError):
    pass


def _send_summary(delivery: Delivery) -> None:
    with current_write_engine().connect() as conn:
        subscription = reports.get_subscription(conn, delivery.item)
        people = [find_user(conn, name) for name in delivery.recipients]
    config = current_config()
    regions = set(subscription.query.get("region", []))
    reachable = [user for user in people
                 if user is not None and user.email and reports.may_see(user, regions, whole=False)]
    if not reachable:
        raise _NoRecipientError("no recipient has an email address and may see this view")
    by_scope: dict[tuple[str, ...], list[User]] = defaultdict(list)
    for user in reachable:
        if user.name not in delivery.sent_to:
            by_scope[user.regions].append(user)
    for scope, users in by_scope.items():
        filters = _view(subscription, scope)
        made = summary.executive_summary(filters)
        link = summary.dashboard_link(filters, config.base_url)
        html, text = summary.summary_html(made, link), summary.summary_text(made, link)
        attachments = [Attachment("summary.pdf", _pdf(html), "application", "pdf")]
        if subscription.workbook:
            attachments.append(Attachment("report.xlsx", _workbook(filters), "application",
                                          "vnd.openxmlformats-officedocument.spreadsheetml.sheet"))
        for user in users:
            send(config, message(config, user.email or "", f"{subscription.name}: {made.title}", text, html,
                                 attachments))
            _note_sent(delivery, user)


def _view(subscription: Subscription, scope: tuple[str, ...]) -> Filters:
    """The subscription's view within ``scope``: its regions that the scope allows, dates from its period as the
    data stands now."""
    query = dict(subscription.query)
    if scope and query.get("region"):  # a recipient sees the view's regions within theirs (some, checked above)
        query["region"] = [region for region in query["region"] if region in scope]
    if not (query.get("period") or query.get("start") or query.get("end")):
        query["period"] = [service.opening_period()]
    filters, _ = service.parse_request(query, scope=scope)
    return filters


def _pdf(html: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="bi-summary-") as folder:
        path = Path(folder) / "summary.pdf"
        summary.summary_pdf(html, path)
        return path.read_bytes()


def _workbook(filters: Filters) -> bytes:
    from bi_app.exports import REPORT_ANALYSES, build_report

    results = {name: service.run(name, filters) for name in REPORT_ANALYSES}
    with current_engine().connect() as conn:
        version = data_version(conn)
    out = io.BytesIO()
    build_report(filters, results, version, service.money_format()).save(out)
    return out.getvalue()


def _send_alert(delivery: Delivery) -> None:
    with current_write_engine().connect() as conn:
        alert = _reloaded_alert(delivery.item, conn)
        people = [find_user(conn, name) for name in delivery.recipients]
    config = current_config()
    regions = set(alert.query.get("region", []))
    allowed = [user for user in people if user is not None and user.email and reports.may_see(user, regions)]
    if not allowed:
        raise _NoRecipientError("no recipient with an email address may see this alert's view")
    content = json.loads(delivery.detail or "{}")
    for user in allowed:
        if user.name not in delivery.sent_to:
            send(config, message(config, user.email or "", content["subject"], content["text"]))
            _note_sent(delivery, user)


def _note_sent(delivery: Delivery, user: User) -> None:
    with current_write_engine().begin() as conn:
        reports.note_sent(conn, delivery, user.name)


def _reloaded_alert(item_id: str, conn: Any = None) -> Alert:
    if conn is not None:
        return reports.get_alert(conn, item_id)
    with current_write_engine().connect() as connection:
        return reports.get_alert(connection, item_id)


def _record(delivery: Delivery, outcome: Outcome) -> None:
    (outcome.sent if delivery.status == "sent" else outcome.failed).append(delivery.item_name)
