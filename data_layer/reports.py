"""Scheduled reports in the app's own tables: subscriptions (a view's executive summary emailed on a schedule,
``bi_subscriptions``), alert rules (a measure checked on a schedule, emailed when it starts and when it stops
holding, ``bi_alerts``) and every delivery with its outcome (``bi_deliveries``).

A schedule is a cron expression (minute hour day-of-month month day-of-week) in an IANA time zone, read by
APScheduler's ``CronTrigger`` (a well-kept implementation, daylight saving included). Each item keeps the next
time it is due (UTC); :func:`claim` records the delivery for one due time and moves the item on in one
transaction, and a delivery is unique per (item, kind, due time): however many schedulers or "run now"s look
at an item, each due time is delivered once. A due time missed while nothing ran is delivered once, on the
next look, and the item moves on to the next time after now (never a burst of catch-up emails).
"""

from __future__ import annotations

import fcntl
import json
import logging
import re
import secrets
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from data_layer.engine import is_postgres, run
from data_layer.filters import FilterError, parse_filters
from data_layer.schema import ID_LIMIT, TEXT_LIMIT
from data_layer.summaries import known_dimension_values
from data_layer.users import User, find_user

log = logging.getLogger(__name__)

reports_metadata = MetaData()
subscriptions = Table(
    "bi_subscriptions",
    reports_metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(TEXT_LIMIT), nullable=False),
    Column("owner", String(ID_LIMIT), nullable=False),
    Column("recipients", Text, nullable=False),  # JSON list of user names
    Column("query", Text, nullable=False),  # JSON: the view's filters as query parameters
    Column("schedule", String(100), nullable=False),  # cron expression
    Column("timezone", String(64), nullable=False),
    Column("workbook", Integer, nullable=False, default=0),  # 1: the report workbook attached
    Column("next_due", String(32), nullable=False),  # UTC, ISO 8601
    Column("created_at", String(32), nullable=False),
)
alerts = Table(
    "bi_alerts",
    reports_metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(TEXT_LIMIT), nullable=False),
    Column("owner", String(ID_LIMIT), nullable=False),
    Column("recipients", Text, nullable=False),
    Column("query", Text, nullable=False),  # the filters the measure is taken under (no dates: the rule's window)
    Column("rule", Text, nullable=False),  # JSON of :class:`AlertRule`
    Column("schedule", String(100), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("next_due", String(32), nullable=False),
    Column("state", String(8), nullable=False, default="clear"),  # "clear" or "firing"
    Column("last_value", Text),  # JSON: what the last check measured
    Column("checked_at", String(32)),
    Column("created_at", String(32), nullable=False),
)
deliveries = Table(
    "bi_deliveries",
    reports_metadata,
    Column("id", String(16), primary_key=True),
    Column("item", String(16), nullable=False),  # a subscription's or an alert's id
    Column("item_name", String(TEXT_LIMIT), nullable=False),
    Column("kind", String(16), nullable=False),  # "summary", "alert-on", "alert-off"
    Column("due", String(32), nullable=False),  # the due time it answers (UTC)
    Column("status", String(12), nullable=False),  # "sending", "sent", "retrying", "failed"
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", String(32)),
    Column("recipients", Text, nullable=False),  # JSON list of user names
    Column("detail", Text),  # an alert's message (JSON: subject, text, html), sent again on a retry
    Column("error", Text),  # why the last attempt failed
    Column("sent_to", Text),  # JSON list of the recipients who have it: a retry sends to the others only
    Column("created_at", String(32), nullable=False),
    Column("finished_at", String(32)),
    UniqueConstraint("item", "kind", "due", name="bi_deliveries_once"),
)

scheduler_state = Table(
    "bi_scheduler",
    reports_metadata,
    Column("id", Integer, primary_key=True),  # one row: the scheduler that runs
    Column("host", String(TEXT_LIMIT), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", String(32), nullable=False),
    Column("last_look", String(32), nullable=False),
    Column("looks", Integer, nullable=False),
)

#: Minutes to wait before each retry of a failed delivery; after the last it is marked failed.
RETRY_MINUTES = (1, 5, 30, 120)
#: A delivery still "sending" this long after it was claimed was left by a scheduler that stopped: tried again.
STALE_SENDING = timedelta(minutes=15)
#: The deliveries a history shows.
HISTORY_ROWS = 100

#: Schedules the Reports page and the command line offer, as cron expressions of ``at`` ("07:30") and ``day``.
FREQUENCIES = ("daily", "weekly", "monthly")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: Measures an alert can watch: name -> words.
ALERT_MEASURES = {"revenue": "net revenue", "orders": "orders", "return_rate": "return rate"}
#: How an alert compares: name -> words (``{threshold}`` is the rule's threshold).
ALERT_CONDITIONS = {
    "below": "is below {threshold}",
    "above": "is above {threshold}",
    "below_last_year_pct": "is more than {threshold}% below the same days last year",
    "above_last_year_pct": "is more than {threshold}% above the same days last year",
}


class ReportError(ValueError):
    """A subscription or alert cannot be made or changed as asked; the message says why."""


@dataclass(frozen=True)
class AlertRule:
    """``measure`` over the last ``days`` complete days of the data (through its last order date, or yesterday
    while orders still come in today) ``condition`` ``threshold`` (a value, or a percentage against the same days
    a year earlier)."""

    measure: str
    condition: str
    threshold: float
    days: int = 7

    def __post_init__(self) -> None:
        if self.measure not in ALERT_MEASURES:
            raise ReportError(f"measure must be one of {', '.join(ALERT_MEASURES)}, got {self.measure!r}")
        if self.condition not in ALERT_CONDITIONS:
            raise ReportError(f"condition must be one of {', '.join(ALERT_CONDITIONS)}, got {self.condition!r}")
        if not 1 <= self.days <= 366:
            raise ReportError(f"the window is 1 to 366 days, got {self.days}")
        if self.condition.endswith("_pct") and not 0 < self.threshold < 1000:
            raise ReportError(f"a percentage threshold is above 0 and below 1000, got {self.threshold:g}")

    def describe(self, written: str | None = None) -> str:
        """"net revenue of the last 7 days is more than 25% below the same days last year" (``written``: the
        threshold as it should be written, money in its currency, say)."""
        window = "the last complete day" if self.days == 1 else f"the last {self.days} days"
        threshold = written or f"{self.threshold:g}"
        return f"{ALERT_MEASURES[self.measure]} of {window} " + ALERT_CONDITIONS[self.condition].format(
            threshold=threshold)


@dataclass(frozen=True)
class Scheduled:
    """What subscriptions and alerts share: a name, who made it, who gets it (user names), its view (filters as
    query parameters), its schedule (cron) in ``timezone``, and when it is next due (UTC)."""

    id: str
    name: str
    owner: str
    recipients: tuple[str, ...]
    query: dict[str, list[str]]
    schedule: str
    timezone: str
    next_due: datetime


@dataclass(frozen=True)
class Subscription(Scheduled):
    """A view's executive summary, emailed on its schedule (``workbook``: the report workbook attached)."""

    workbook: bool = False


@dataclass(frozen=True)
class Alert(Scheduled):
    """An alert rule on the view, checked on its schedule; ``state`` says whether it held at the last check."""

    rule: AlertRule = AlertRule("revenue", "below", 0.0)
    state: str = "clear"
    last_value: dict[str, Any] = field(default_factory=dict)
    checked_at: str | None = None


@dataclass(frozen=True)
class Delivery:
    """One delivery of a subscription or an alert (``kind``) for the time it was due, and how it went."""

    id: str
    item: str
    item_name: str
    kind: str
    due: str
    status: str
    attempts: int
    next_attempt: str | None
    recipients: tuple[str, ...]
    detail: str | None
    created_at: str
    finished_at: str | None
    error: str | None = None
    sent_to: tuple[str, ...] = ()


def create_report_tables(conn: Connection) -> None:
    """Make the tables when they are not there (in the caller's transaction)."""
    reports_metadata.create_all(conn, checkfirst=True)


def schedule_of(frequency: str, at: str, day: str | None = None) -> str:
    """The cron expression of "daily at 07:30", "weekly on mon at 07:30", "monthly on 1 at 07:30";
    :class:`ReportError` for anything else."""
    written = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", at.strip())
    if written is None:
        raise ReportError(f"the time is HH:MM, 00:00 to 23:59, got {at!r}")
    hour, minute = int(written[1]), int(written[2])
    if frequency == "daily":
        if day:
            raise ReportError("a daily report has no day; give --every weekly or monthly with a day")
        return f"{minute} {hour} * * *"
    if frequency == "weekly":
        if (day or "mon").lower()[:3] not in WEEKDAYS:
            raise ReportError(f"the day of a weekly report is one of {', '.join(WEEKDAYS)}, got {day!r}")
        return f"{minute} {hour} * * {(day or 'mon').lower()[:3]}"
    if frequency == "monthly":
        if not (day or "1").isdigit() or not 1 <= int(day or "1") <= 28:
            raise ReportError(f"the day of a monthly report is 1 to 28, got {day!r}")
        return f"{minute} {hour} {int(day or '1')} * *"
    raise ReportError(f"the frequency is one of {', '.join(FREQUENCIES)}, got {frequency!r}")


def describe_schedule(schedule: str, timezone: str) -> str:
    """"weekly on mon at 07:30 (Europe/Paris)" for the schedules :func:`schedule_of` makes; else the cron."""
    parts = schedule.split()
    if len(parts) == 5 and parts[0].isdigit() and parts[1].isdigit() and parts[3] == "*":
        at = f"{int(parts[1]):02d}:{int(parts[0]):02d}"
        if parts[2] == "*" and parts[4] == "*":
            return f"daily at {at} ({timezone})"
        if parts[2] == "*" and parts[4] in WEEKDAYS:
            return f"weekly on {parts[4]} at {at} ({timezone})"
        if parts[2].isdigit() and parts[4] == "*":
            return f"monthly on day {parts[2]} at {at} ({timezone})"
    return f"cron '{schedule}' ({timezone})"


def describe_view(query: Mapping[str, list[str]], periods: Mapping[str, str]) -> str:
    """"Previous week · North, South · vs same period last year" (``periods``: preset -> its name)."""
    period = (query.get("period") or [""])[0]
    chosen = [value for name, values in query.items() if name not in ("period", "compare", "start", "end")
              for value in values]
    parts = [periods.get(period, "the dashboard's period") if period or not query.get("start") else
             f"{(query.get('start') or [''])[0]} to {(query.get('end') or [''])[0]}", ", ".join(chosen)]
    if query.get("compare") == ["last-year"]:
        parts.append("vs same period last year")
    return " · ".join(part for part in parts if part)


def describe_where(query: Mapping[str, list[str]]) -> str:
    """An alert's view in words: its values ("North, Office"), or "all orders"."""
    return ", ".join(value for values in query.values() for value in values) or "all orders"


def next_due(schedule: str, timezone: str, after: datetime) -> datetime:
    """The first time ``schedule`` (cron, in ``timezone``) falls after ``after`` (UTC); :class:`ReportError`
    for a schedule or zone that cannot be read."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"unknown time zone {timezone!r} (an IANA name such as Europe/Paris)") from None
    try:
        trigger = CronTrigger.from_crontab(schedule, timezone=zone)
    except ValueError as exc:
        raise ReportError(f"the schedule {schedule!r} is not a cron expression: {exc}") from None
    fire = trigger.get_next_fire_time(None, after.astimezone(zone) + timedelta(seconds=1))
    if fire is None:
        raise ReportError(f"the schedule {schedule!r} never falls due")
    return fire.astimezone(UTC).replace(microsecond=0)


def add_subscription(conn: Connection, *, name: str, owner: str, recipients: Iterable[str],  # noqa: PLR0913 - keyword-only
                     query: Mapping[str, list[str]], schedule: str, timezone: str, workbook: bool = False,
                     now: datetime | None = None) -> Subscription:
    """Store a subscription, first due at the schedule's next time after ``now``; :class:`ReportError` for a view
    the data does not have, or a recipient who may see none of it."""
    create_report_tables(conn)
    check_view(conn, query, recipients, whole=False)
    values = _new_item(name, owner, recipients, query, schedule, timezone, now)
    conn.execute(insert(subscriptions).values(**values, workbook=int(workbook)))
    return get_subscription(conn, values["id"])


def add_alert(conn: Connection, *, name: str, owner: str, recipients: Iterable[str],  # noqa: PLR0913 - keyword-only
              query: Mapping[str, list[str]], rule: AlertRule, schedule: str, timezone: str,
              now: datetime | None = None) -> Alert:
    """Store an alert rule, first checked at the schedule's next time after ``now``; :class:`ReportError` for a view
    the data does not have, or a recipient who may not see all of it."""
    create_report_tables(conn)
    check_view(conn, query, recipients, whole=True)
    values = _new_item(name, owner, recipients, query, schedule, timezone, now)
    conn.execute(insert(alerts).values(**values, rule=json.dumps(rule.__dict__), state="clear"))
    return get_alert(conn, values["id"])


def check_view(conn: Connection, query: Mapping[str, list[str]], recipients: Iterable[str], *,
               whole: bool) -> None:
    """:class:`ReportError` unless ``query`` is a view of the data (known period and values) and each recipient is
    a user who may see it: all of it (``whole``: an alert's numbers are of the whole view), else some of it (a
    summary is cut to each recipient's regions)."""
    try:
        parse_filters(query, known_values=known_dimension_values(conn))
    except FilterError as exc:
        raise ReportError(f"the view cannot be shown: {exc.message}") from None
    regions = set(query.get("region", []))
    for name in recipients:
        user = find_user(conn, name)
        if user is None:
            raise ReportError(f"no user named {name!r}")
        if not may_see(user, regions, whole=whole):
            raise ReportError(f"{user.name} may see only {', '.join(user.regions)}: this "
                              f"{'alert' if whole else 'view'} cannot go to them (choose regions within theirs)")


def may_see(user: User, regions: set[str], *, whole: bool = True) -> bool:
    """True when ``user``'s scope covers a view of ``regions`` (none: every region): all of them (``whole``), else
    one at least (a view of every region: their own)."""
    if not user.regions:
        return True
    if not regions:
        return not whole
    return regions <= set(user.regions) if whole else bool(regions & set(user.regions))


def _new_item(name: str, owner: str, recipients: Iterable[str], query: Mapping[str, list[str]],
              schedule: str, timezone: str, now: datetime | None) -> dict[str, Any]:
    """The columns subscriptions and alerts share, checked: :class:`ReportError` for a name, recipients, schedule
    or time zone that cannot be used."""
    return {"id": secrets.token_hex(8), "name": _name(name), "owner": owner,
            "recipients": json.dumps(_recipients(recipients)), "query": json.dumps(dict(query)),
            "schedule": schedule, "timezone": timezone, "next_due": _iso(next_due(schedule, timezone, now or _now())),
            "created_at": _iso(_now())}


def list_subscriptions(conn: Connection) -> list[Subscription]:
    create_report_tables(conn)
    return [_subscription(row) for row in run(conn, select(subscriptions).order_by(subscriptions.c.name))
            .mappings()]


def list_alerts(conn: Connection) -> list[Alert]:
    create_report_tables(conn)
    return [_alert(row) for row in run(conn, select(alerts).order_by(alerts.c.name)).mappings()]


def get_subscription(conn: Connection, item_id: str) -> Subscription:
    row = run(conn, select(subscriptions).where(subscriptions.c.id == item_id)).mappings().first()
    if row is None:
        raise ReportError(f"no subscription {item_id!r}")
    return _subscription(row)


def get_alert(conn: Connection, item_id: str) -> Alert:
    row = run(conn, select(alerts).where(alerts.c.id == item_id)).mappings().first()
    if row is None:
        raise ReportError(f"no alert {item_id!r}")
    return _alert(row)


def remove(conn: Connection, item_id: str) -> str:
    """Remove a subscription or an alert (its history stays); its name. :class:`ReportError` when there is none."""
    create_report_tables(conn)
    for table in (subscriptions, alerts):
        row = run(conn, select(table.c.name).where(table.c.id == item_id)).first()
        if row is not None:
            conn.execute(delete(table).where(table.c.id == item_id))
            return str(row[0])
    raise ReportError(f"no subscription or alert {item_id!r}")


def due_subscriptions(conn: Connection, now: datetime) -> list[Subscription]:
    create_report_tables(conn)
    query = select(subscriptions).where(subscriptions.c.next_due <= _iso(now)).order_by(subscriptions.c.next_due)
    return [_subscription(row) for row in run(conn, query).mappings()]


def due_alerts(conn: Connection, now: datetime) -> list[Alert]:
    create_report_tables(conn)
    query = select(alerts).where(alerts.c.next_due <= _iso(now)).order_by(alerts.c.next_due)
    return [_alert(row) for row in run(conn, query).mappings()]


def claim(conn: Connection, *, item_id: str, item_name: str, kind: str, due: datetime,
          recipients: Iterable[str], detail: str | None = None) -> Delivery | None:
    """Record the delivery of ``item`` for the time ``due`` (status "sending"), once: None when it is recorded
    already (another scheduler, or an earlier look, has it). In its own savepoint: the caller's transaction
    goes on either way."""
    create_report_tables(conn)
    delivery_id = secrets.token_hex(8)
    try:
        with conn.begin_nested():
            conn.execute(insert(deliveries).values(
                id=delivery_id, item=item_id, item_name=item_name, kind=kind, due=_iso(due), status="sending",
                attempts=0, next_attempt=_iso(_now() + STALE_SENDING), recipients=json.dumps(list(recipients)),
                detail=detail, created_at=_iso(_now())))
    except IntegrityError:
        return None
    return get_delivery(conn, delivery_id)


def move_on(conn: Connection, item: Subscription | Alert, now: datetime, **changes: Any) -> None:
    """Set ``item``'s next due time to its schedule's first after ``now`` (and ``changes``: an alert's state)."""
    table = subscriptions if isinstance(item, Subscription) else alerts
    values = {"next_due": _iso(next_due(item.schedule, item.timezone, now)), **changes}
    conn.execute(update(table).where(table.c.id == item.id).values(**values))


def record_check(conn: Connection, alert: Alert, state: str, value: Mapping[str, Any], now: datetime) -> None:
    """What an alert's check measured, and whether the rule holds (``state``)."""
    conn.execute(update(alerts).where(alerts.c.id == alert.id).values(
        state=state, last_value=json.dumps(dict(value), default=str), checked_at=_iso(now)))


def finish(conn: Connection, delivery: Delivery, error: str | None, now: datetime, *,
           permanent: bool = False) -> Delivery:
    """After an attempt: sent (``error`` None), else retried after :data:`RETRY_MINUTES`, or failed once they are
    spent (or at once when the failure is ``permanent``: no one to send to). The attempt is counted either way."""
    attempts = delivery.attempts + 1
    if error is None:
        values: dict[str, Any] = {"status": "sent", "finished_at": _iso(now), "next_attempt": None, "error": None}
    elif attempts <= len(RETRY_MINUTES) and not permanent:
        values = {"status": "retrying", "next_attempt": _iso(now + timedelta(minutes=RETRY_MINUTES[attempts - 1])),
                  "error": error}
    else:
        values = {"status": "failed", "finished_at": _iso(now), "next_attempt": None, "error": error}
    conn.execute(update(deliveries).where(deliveries.c.id == delivery.id).values(attempts=attempts, **values))
    return get_delivery(conn, delivery.id)


def note_sent(conn: Connection, delivery: Delivery, recipient: str) -> None:
    """Record that ``recipient`` has the delivery (a retry after a failure for another sends them nothing)."""
    sent = json.loads(run(conn, select(deliveries.c.sent_to).where(deliveries.c.id == delivery.id)).scalar_one()
                      or "[]")
    conn.execute(update(deliveries).where(deliveries.c.id == delivery.id).values(
        sent_to=json.dumps(sorted({*sent, recipient}))))


def retries_due(conn: Connection, now: datetime) -> list[Delivery]:
    """Deliveries waiting for a retry whose time has come, and those left "sending" by a scheduler that stopped
    mid-way (:data:`STALE_SENDING`)."""
    create_report_tables(conn)
    query = select(deliveries).where(deliveries.c.status.in_(("retrying", "sending")),
                                     deliveries.c.next_attempt <= _iso(now))
    return [_delivery(row) for row in run(conn, query).mappings()]


def take_retry(conn: Connection, delivery: Delivery) -> bool:
    """Mark a retry as under way (status "sending"); False when another scheduler took it first."""
    taken = conn.execute(update(deliveries).where(deliveries.c.id == delivery.id,
                                                  deliveries.c.status == delivery.status,
                                                  deliveries.c.attempts == delivery.attempts)
                         .values(status="sending", next_attempt=_iso(_now() + STALE_SENDING)))
    return taken.rowcount == 1


def get_delivery(conn: Connection, delivery_id: str) -> Delivery:
    return _delivery(run(conn, select(deliveries).where(deliveries.c.id == delivery_id)).mappings().one())


def history(conn: Connection, limit: int = HISTORY_ROWS) -> list[Delivery]:
    """The latest deliveries, newest first."""
    create_report_tables(conn)
    query = select(deliveries).order_by(deliveries.c.created_at.desc(), deliveries.c.id).limit(limit)
    return [_delivery(row) for row in run(conn, query).mappings()]


def delivery_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """How many deliveries there are of each (kind, status): what ``/metrics`` reports."""
    from sqlalchemy import func

    create_report_tables(conn)
    query = select(deliveries.c.kind, deliveries.c.status, func.count()).group_by(deliveries.c.kind,
                                                                                    deliveries.c.status)
    return {(kind, status): int(count) for kind, status, count in run(conn, query)}


def _recipients(recipients: Iterable[str]) -> list[str]:
    names = sorted({name.strip().lower() for name in recipients if name.strip()})
    if not names:
        raise ReportError("a report goes to one user at least")
    return names


def _name(name: str) -> str:
    name = " ".join(name.split())
    if not name or len(name) > TEXT_LIMIT:
        raise ReportError(f"a name is 1 to {TEXT_LIMIT} characters")
    return name


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _shared(row: Any) -> dict[str, Any]:  # a row mapping
    return {"id": row["id"], "name": row["name"], "owner": row["owner"],
            "recipients": tuple(json.loads(row["recipients"])), "query": json.loads(row["query"]),
            "schedule": row["schedule"], "timezone": row["timezone"], "next_due": _moment(row["next_due"])}


def _subscription(row: Any) -> Subscription:  # a row mapping
    return Subscription(**_shared(row), workbook=bool(row["workbook"]))


def _alert(row: Any) -> Alert:  # a row mapping
    return Alert(**_shared(row), rule=AlertRule(**json.loads(row["rule"])), state=row["state"],
                 last_value=json.loads(row["last_value"] or "{}"), checked_at=row["checked_at"])


def _delivery(row: Any) -> Delivery:  # a row mapping
    return Delivery(row["id"], row["item"], row["item_name"], row["kind"], row["due"], row["status"], row["attempts"],
                    row["next_attempt"], tuple(json.loads(row["recipients"])), row["detail"], row["created_at"],
                    row["finished_at"], row["error"], tuple(json.loads(row["sent_to"] or "[]")))


@dataclass(frozen=True)
class SchedulerState:
    """The scheduler that runs (or ran last): where, since when, when it last looked, and how many looks."""

    host: str
    pid: int
    started_at: str
    last_look: str
    looks: int


def note_look(conn: Connection, host: str, pid: int, started_at: datetime, now: datetime) -> None:
    """Record that the scheduler on ``host`` (``pid``) has just looked for due work."""
    create_report_tables(conn)
    row = run(conn, select(scheduler_state).where(scheduler_state.c.id == 1)).mappings().first()
    values = {"host": host, "pid": pid, "started_at": _iso(started_at), "last_look": _iso(now)}
    if row is None:
        conn.execute(insert(scheduler_state).values(id=1, looks=1, **values))
    else:
        same = row["host"] == host and row["pid"] == pid and row["started_at"] == _iso(started_at)
        conn.execute(update(scheduler_state).where(scheduler_state.c.id == 1).values(
            looks=(row["looks"] + 1) if same else 1, **values))


def last_scheduler(conn: Connection) -> SchedulerState | None:
    """The scheduler that looked last, if any ever did."""
    create_report_tables(conn)
    row = run(conn, select(scheduler_state).where(scheduler_state.c.id == 1)).mappings().first()
    return None if row is None else SchedulerState(row["host"], row["pid"], row["started_at"], row["last_look"],
                                                   row["looks"])


@contextmanager
def scheduler_lock(engine: Engine, stop: threading.Event, wait_s: float) -> Iterator[bool]:
    """Hold the database's scheduler lock while the block runs, waiting for it (trying every ``wait_s`` seconds)
    while another process holds it; yields False when ``stop`` was set before it was had. PostgreSQL: a session
    advisory lock per schema, held by a connection of its own and freed by the server when the process or its
    connection ends; SQLite: an exclusive lock on a file beside the database (which is on this machine)."""
    if is_postgres(engine):
        with _advisory_lock(engine, stop, wait_s) as held:
            yield held
    else:
        with _file_lock(Path(engine.url.database or "bi.sqlite"), stop, wait_s) as held:
            yield held


@contextmanager
def _advisory_lock(engine: Engine, stop: threading.Event, wait_s: float) -> Iterator[bool]:
    with engine.connect() as conn:
        # One lock per schema: deployments (and tests) sharing a server each have their own scheduler.
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        key = zlib.crc32(f"bi-app scheduler {schema}".encode())

        def take() -> bool:
            taken = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar_one())
            conn.commit()  # a session lock: no transaction (and no snapshot) stays open while it is held
            return taken

        held = _taken(take, stop, wait_s)
        try:
            yield held
        finally:
            if held:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()


@contextmanager
def _file_lock(database: Path, stop: threading.Event, wait_s: float) -> Iterator[bool]:
    path = database.with_name(database.name + ".scheduler-lock")
    with open(path, "a") as handle:

        def take() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        held = _taken(take, stop, wait_s)
        try:
            yield held
        finally:
            if held:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _taken(take: Callable[[], bool], stop: threading.Event, wait_s: float) -> bool:
    """Try ``take()`` every ``wait_s`` seconds until it succeeds (True) or ``stop`` is set (False)."""
    waited = False
    while not take():
        if not waited:
            log.info("Another scheduler runs for this database; waiting to take over")
            waited = True
        if stop.wait(wait_s):
            return False
    return True
