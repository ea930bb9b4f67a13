"""Scheduled reports against a real SMTP server on loopback (aiosmtpd, started here) and real SQLite and
PostgreSQL: a subscription due now sends one email whose PDF holds the API's figures for the recipient's scope;
an alert mails once when its rule starts to hold and once when it stops; a missed run is delivered once; a
refused delivery is retried with backoff; two scheduler processes deliver each report once."""

from __future__ import annotations

import email
import io
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from aiosmtpd.controller import Controller
from pypdf import PdfReader
from sqlalchemy import Engine, select

from bi_app.context import CONFIG_KEY
from data_layer import reports
from data_layer.bootstrap import load_demo_data
from data_layer.demo_data import generate_orders
from data_layer.loader import load_orders
from data_layer.users import add_user, set_email
from tests.support import BI_APP, USER_PASSWORD, net_revenue

pytestmark = [pytest.mark.slow, pytest.mark.browser]


class Inbox:
    """An SMTP server's handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802 - aiosmtpd's hook
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp() -> tuple[str, Inbox]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", inbox
    finally:
        controller.stop()


@pytest.fixture
def site(engine: Engine, db_url: str, app, point_app_at, smtp, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    """The app on 2,000 demo orders in ``engine``, mailing through the test's SMTP server, with two recipients:
    adam (every region) and nora (North only)."""
    load_demo_data(engine, 2000, 42, replace=True)
    point_app_at(db_url)
    config = replace(app.server.config[CONFIG_KEY], smtp_url=smtp[0], mail_from="Reports <bi@example.com>",
                     base_url="https://bi.example.com")
    monkeypatch.setitem(app.server.config, CONFIG_KEY, config)
    with engine.begin() as conn:
        for name, regions in (("adam", ()), ("nora", ("North",))):
            add_user(conn, name, "viewer", USER_PASSWORD, regions)
            set_email(conn, name, f"{name}@example.com")
    return engine


def pdf_of(mail: EmailMessage) -> str:
    part = next(p for p in mail.iter_attachments() if p.get_content_type() == "application/pdf")
    reader = PdfReader(io.BytesIO(part.get_content()))
    assert len(reader.pages) == 1
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def stored(engine: Engine) -> pd.DataFrame:
    lines = pd.read_sql("SELECT * FROM advanced_sales_data", engine)
    lines["order_date"] = pd.to_datetime(lines["order_date"]).dt.date
    lines["net"] = net_revenue(lines)
    return lines


def subscribe(engine: Engine, *, recipients=("adam", "nora"), due_ago: timedelta = timedelta(minutes=1),  # noqa: ANN001
              query=None, schedule: str = "0 7 * * 1", workbook: bool = False) -> reports.Subscription:  # noqa: ANN001
    with engine.begin() as conn:
        return reports.add_subscription(conn, name="Weekly", owner="adam", recipients=recipients,
                                        query=query or {"period": ["previous-week"]}, schedule=schedule,
                                        timezone="UTC", workbook=workbook, now=datetime.now(UTC) - due_ago
                                        - timedelta(days=7))


def test_a_subscription_due_now_sends_each_recipient_one_email_with_the_apis_figures_for_their_scope(
        site: Engine, app, client, smtp) -> None:  # noqa: ANN001
    from bi_app.reporting import run_due

    _url, inbox = smtp
    subscribe(site, workbook=True)
    with app.server.test_request_context("/"):
        first = run_due()
        again = run_due()  # the next look: nothing is due any more
    assert first.sent == ["Weekly"] and not first.failed and not again.sent
    assert len(inbox.to("adam@example.com")) == 1 and len(inbox.to("nora@example.com")) == 1
    assert len(inbox.messages) == 2

    lines = stored(site)
    last = lines["order_date"].max()
    monday = last - timedelta(days=last.weekday() + 7)
    week = lines[(lines["order_date"] >= monday) & (lines["order_date"] <= monday + timedelta(days=6))]
    for address, query, part in (("adam@example.com", "", week), ("nora@example.com", "&region=North",
                                                                 week[week["region"] == "North"])):
        mail = inbox.to(address)[0]
        api = client.get(f"/api/v1/kpis?period=previous-week{query}").get_json()["data"]
        assert api["revenue"]["value"] == pytest.approx(round(part["net"].sum(), 2))
        text = pdf_of(mail)
        assert f"${api['revenue']['value']:,.2f}" in text and f"Orders {api['orders']['value']:,}" in text
        assert f"{monday} to {monday + timedelta(days=6)}" in text
        assert mail["From"] == "Reports <bi@example.com>" and mail["Subject"].startswith("Weekly: Previous week")
        assert mail.get_body(("plain",)).get_content().startswith("Executive summary")
        assert "https://bi.example.com/?period=previous-week" in mail.get_body(("html",)).get_content()
        assert any(p.get_filename() == "report.xlsx" for p in mail.iter_attachments())
    nora = pdf_of(inbox.to("nora@example.com")[0])
    assert "regions North" in nora and not any(region in nora for region in ("South", "East", "West"))
    with site.connect() as conn:
        (delivery,) = reports.history(conn)
    assert (delivery.status, delivery.attempts, delivery.recipients) == ("sent", 1, ("adam", "nora"))
    assert 'bi_report_deliveries{kind="summary",status="sent"} 1.0' in client.get("/metrics").get_data(as_text=True)


def test_a_run_missed_while_nothing_ran_is_delivered_once(site: Engine, app, smtp) -> None:  # noqa: ANN001
    from bi_app.reporting import run_due

    _url, inbox = smtp
    item = subscribe(site, recipients=("adam",), due_ago=timedelta(days=3), schedule="0 7 * * *")  # 3 days missed
    now = datetime.now(UTC).replace(microsecond=0)
    with app.server.test_request_context("/"):
        run_due(now)
        run_due(now + timedelta(seconds=1))
    assert len(inbox.messages) == 1
    with site.connect() as conn:
        moved = reports.get_subscription(conn, item.id)
    assert now < moved.next_due <= now + timedelta(days=1) and (moved.next_due.hour, moved.next_due.minute) == (7, 0)


def test_a_refused_delivery_is_retried_later_not_at_once_and_then_sent(site: Engine, app, smtp,  # noqa: ANN001
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from bi_app.reporting import run_due

    url, inbox = smtp
    down = replace(app.server.config[CONFIG_KEY], smtp_url=f"smtp://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setitem(app.server.config, CONFIG_KEY, down)
    subscribe(site, recipients=("adam",))
    now = datetime.now(UTC).replace(microsecond=0)
    with app.server.test_request_context("/"):
        failed = run_due(now)
        soon = run_due(now + timedelta(seconds=30))  # before the first retry's time: nothing
    with site.connect() as conn:
        (delivery,) = reports.history(conn)
    assert failed.failed == ["Weekly"] and not soon.sent and not soon.failed
    assert delivery.status == "retrying" and delivery.attempts == 1 and "cannot be reached" in delivery.error
    assert delivery.next_attempt == (now + timedelta(minutes=reports.RETRY_MINUTES[0])).isoformat()
    monkeypatch.setitem(app.server.config, CONFIG_KEY, replace(down, smtp_url=url))
    with app.server.test_request_context("/"):
        retried = run_due(now + timedelta(minutes=1, seconds=1))
    with site.connect() as conn:
        (delivery,) = reports.history(conn)
    assert retried.sent == ["Weekly"] and (delivery.status, delivery.attempts) == ("sent", 2)
    assert len(inbox.messages) == 1


def test_an_alert_mails_once_when_it_starts_to_hold_and_once_when_it_stops(site: Engine, app, smtp) -> None:  # noqa: ANN001
    from bi_app.reporting import run_due

    _url, inbox = smtp
    lines = stored(site)
    last = lines["order_date"].max()
    window = lines[(lines["order_date"] > last - timedelta(days=7)) & (lines["region"] == "North")]
    counted = window[(window["line_type"] == "sale") & (window["total_amount"] != 0)]["order_id"].nunique()
    rule = reports.AlertRule("orders", "above", counted + 5, 7)  # does not hold: North had `counted` orders
    now = datetime.now(UTC).replace(microsecond=0)
    with site.begin() as conn:
        alert = reports.add_alert(conn, name="North busy", owner="adam", recipients=("adam", "nora"),
                                  query={"region": ["North"]}, rule=rule, schedule="0 * * * *", timezone="UTC",
                                  now=now - timedelta(hours=2))

    def look(hours: int) -> None:
        with app.server.test_request_context("/"):
            run_due(now + timedelta(hours=hours))

    look(0)
    assert inbox.messages == []
    extra = pd.DataFrame(next(generate_orders(10, 3, first_order_number=900_000)).to_pandas())
    extra = extra.assign(order_date=last, region="North", customer_id="C-EXTRA")
    load_orders(site, [pa.Table.from_pandas(extra, preserve_index=False)], mode="append")
    look(1)  # 10 more North orders on the last day: the rule now holds
    look(2)  # still holds: nothing more
    assert [m["Subject"] for m in inbox.to("adam@example.com")] == ["Alert: North busy (North)"]
    body = inbox.to("nora@example.com")[0].get_body(("plain",)).get_content()
    assert f": {counted + 10:,};" in body and "Now holds: orders of the last 7 days is above" in body
    load_demo_data(site, 2000, 42, replace=True)  # the orders as they were: back below
    look(3)  # cleared
    look(4)
    assert [m["Subject"] for m in inbox.to("adam@example.com")] == ["Alert: North busy (North)",
                                                                   "Cleared: North busy (North)"]
    with site.connect() as conn:
        assert reports.get_alert(conn, alert.id).state == "clear"
        kinds = sorted(d.kind for d in reports.history(conn))
    assert kinds == ["alert-off", "alert-on"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_schedulers_deliver_each_report_once_and_the_second_takes_over(backend: str, tmp_path: Path, smtp,  # noqa: ANN001
                                                                           request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'shop.sqlite'}" if backend == "sqlite" else \
        request.getfixturevalue("postgres_schema_url")
    from data_layer.engine import make_engine

    engine = make_engine(url)
    load_demo_data(engine, 500, 7, replace=True)
    with engine.begin() as conn:
        add_user(conn, "adam", "admin", USER_PASSWORD)
        set_email(conn, "adam", "adam@example.com")
    smtp_url, inbox = smtp
    env = {**os.environ, "BI_DATABASE_URL": url, "BI_DATA_DIR": str(tmp_path / "data"), "BI_SMTP_URL": smtp_url,
           "BI_COLUMNAR": "0", "BI_LOG_LEVEL": "INFO"}
    env.pop("BI_CACHE_URL", None)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    schedulers = [subprocess.Popen([BI_APP, "scheduler", "--tick", "0.3"], env=env, stdout=log.open("w"),
                                   stderr=subprocess.STDOUT) for log in logs]
    try:
        def state() -> reports.SchedulerState | None:
            with engine.begin() as conn:
                return reports.last_scheduler(conn)

        def wait_for(condition, what: str) -> None:  # noqa: ANN001
            deadline = time.monotonic() + 180
            while not condition():
                assert time.monotonic() < deadline, f"{what}:\n" + "\n".join(log.read_text()[-2000:] for log in logs)
                assert all(s.poll() is None for s in schedulers if s.pid != gone[0]), "a scheduler exited"
                time.sleep(0.1)

        gone = [0]
        wait_for(lambda: state() is not None, "no scheduler looked")
        first = subscribe(engine, recipients=("adam",))
        wait_for(lambda: len(inbox.messages) >= 1, "the subscription was not delivered")
        looks = state().looks
        wait_for(lambda: state().looks >= looks + 5, "the scheduler stopped looking")
        assert len(inbox.messages) == 1
        with engine.connect() as conn:
            rows = conn.execute(select(reports.deliveries.c.item)).scalars().all()
        assert rows == [first.id]
        working = state().pid
        assert working in {s.pid for s in schedulers}
        os.kill(working, signal.SIGKILL)
        gone[0] = working
        wait_for(lambda: state().pid != working, "the waiting scheduler did not take over")
        subscribe(engine, recipients=("adam",))
        wait_for(lambda: len(inbox.messages) >= 2, "the second subscription was not delivered")
        looks = state().looks
        wait_for(lambda: state().looks >= looks + 5, "the scheduler stopped looking")
        assert len(inbox.messages) == 2
    finally:
        for scheduler in schedulers:
            if scheduler.poll() is None:
                scheduler.terminate()
                scheduler.wait(timeout=30)
        engine.dispose()


def test_the_reports_page_adds_sends_lists_and_removes_and_says_what_is_wrong(site: Engine, app, smtp) -> None:  # noqa: ANN001
    from pages.reports import acted, history_table, new_alert, new_subscription, reports_view, saved

    _url, inbox = smtp
    schedule = ["weekly", "mon", "07:30", "Europe/Paris"]
    with app.server.test_request_context("/"):
        bad_zone = saved(lambda conn: new_subscription(conn, "Weekly", "previous-week", "previous", ["North"],
                                                       ["adam"], ["weekly", "mon", "07:30", "Mars/Olympus"], False), 0)
        nobody = saved(lambda conn: new_subscription(conn, "Weekly", "previous-week", "previous", [], [], schedule,
                                                     False), 0)
        made = saved(lambda conn: new_subscription(conn, "Weekly North", "previous-week", "last-year", ["North"],
                                                   ["adam", "nora"], schedule, True), 3)
        too_wide = saved(lambda conn: new_alert(conn, "Down", "revenue", 7, "below_last_year_pct", 25, [], ["nora"],
                                                "daily", "", "08:00", "UTC"), 0)
        alert = saved(lambda conn: new_alert(conn, "Down", "revenue", 7, "below_last_year_pct", 25, ["North"],
                                             ["nora"], "daily", "", "08:00", "UTC"), 0)
        status, subscriptions, alerts, history, *options = reports_view()
    assert "Not saved: unknown time zone 'Mars/Olympus'" in str(bad_zone[0]) and bad_zone[1] is dash_no_update()
    assert "Not saved: a report goes to one user at least." in str(nobody[0])
    assert "Subscribed adam, nora to 'Weekly North'" in str(made[0]) and made[1] == 4
    assert "Not saved: nora may see only North" in str(too_wide[0])
    assert "Added the alert 'Down': net revenue of the last 7 days is more than 25% below the same days last year" \
        in str(alert[0])
    assert "Weekly North" in str(subscriptions) and "weekly on mon at 07:30 (Europe/Paris)" in str(subscriptions)
    assert "Previous week · North · vs same period last year · with the workbook" in str(subscriptions)
    assert options[0] == [{"label": region, "value": region} for region in ("East", "North", "South", "West")]
    assert "Down" in str(alerts) and "Nothing delivered yet." in str(history)
    assert "No scheduler has run yet" in str(status) and "adam" in str(options[1])
    with site.connect() as conn:
        (subscription,) = reports.list_subscriptions(conn)
        (rule,) = reports.list_alerts(conn)
    assert subscription.query == {"period": ["previous-week"], "compare": ["last-year"], "region": ["North"]}
    with app.server.test_request_context("/"):
        sent = acted("reports-run", subscription.id)
        removed = acted("reports-remove", rule.id)
        unknown = acted("reports-remove", "0123456789abcdef")
        with site.connect() as conn:
            shown = history_table(reports.history(conn))
    assert "Sent 'Weekly North' to adam, nora." in str(sent) and len(inbox.messages) == 2
    assert all("regions North" in pdf_of(mail) or "North" in pdf_of(mail) for mail in inbox.messages)
    assert "Removed 'Down'." in str(removed) and "No subscription or alert '0123456789abcdef'." in str(unknown)
    assert "Weekly North" in str(shown) and "sent" in str(shown)


def dash_no_update():  # noqa: ANN201
    from dash import no_update

    return no_update


def test_an_alerts_window_is_the_last_complete_days(site: Engine, app) -> None:  # noqa: ANN001
    from bi_app.reporting import measure

    lines = stored(site)
    last = lines["order_date"].max()
    rule = reports.AlertRule("orders", "above", 0, 3)
    with site.begin() as conn:
        alert = reports.add_alert(conn, name="Busy", owner="adam", recipients=("adam",), query={}, rule=rule,
                                  schedule="0 8 * * *", timezone="UTC")
    for now, end in ((datetime(last.year, last.month, last.day, 12, tzinfo=UTC), last - timedelta(days=1)),
                     (datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=30), last)):
        with app.server.test_request_context("/"):
            measured = measure(alert, now)
        window = lines[(lines["order_date"] > end - timedelta(days=3)) & (lines["order_date"] <= end)]
        counted = window[(window["line_type"] == "sale") & (window["total_amount"] != 0)]["order_id"].nunique()
        assert (measured["start"], measured["end"]) == ((end - timedelta(days=2)).isoformat(), end.isoformat())
        assert measured["value"] == counted and measured["holds"] is (counted > 0)


def test_a_retry_after_one_recipient_was_refused_sends_only_to_the_others(site: Engine, app, smtp) -> None:  # noqa: ANN001
    from bi_app.reporting import run_due

    _url, inbox = smtp
    refusing = {"nora@example.com"}

    async def handle_RCPT(server, session, envelope, address, options):  # noqa: ANN001, ANN202, N802 - aiosmtpd's hook
        if address in refusing:
            return "450 4.2.1 Mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    inbox.handle_RCPT = handle_RCPT
    subscribe(site)  # to adam and nora
    now = datetime.now(UTC).replace(microsecond=0)
    with app.server.test_request_context("/"):
        run_due(now)
        with site.connect() as conn:
            (delivery,) = reports.history(conn)
        assert delivery.status == "retrying" and delivery.sent_to == ("adam",)
        assert "the mail server refused nora@example.com (450 4.2.1 Mailbox busy, try later)" in delivery.error
        refusing.clear()
        run_due(now + timedelta(minutes=2))
    with site.connect() as conn:
        (delivery,) = reports.history(conn)
    assert [m["To"] for m in inbox.messages] == ["adam@example.com", "nora@example.com"], "adam got it once"
    assert (delivery.status, delivery.error, delivery.sent_to) == ("sent", None, ("adam", "nora"))


def test_a_view_the_data_does_not_have_or_a_recipient_who_may_see_none_of_it_is_refused(site: Engine) -> None:
    cases = [({"period": ["last-fortnight"]}, ("adam",), "the view cannot be shown: unknown period 'last-fortnight'"),
             ({"region": ["Atlantis"]}, ("adam",), "the view cannot be shown: unknown region 'Atlantis'"),
             ({"region": ["South"]}, ("nora",), "nora may see only North: this view cannot go to them"),
             ({"period": ["previous-week"]}, ("ghost",), "no user named 'ghost'")]
    for query, recipients, reason in cases:
        with site.begin() as conn, pytest.raises(reports.ReportError, match=re.escape(reason)):
            reports.add_subscription(conn, name="X", owner="adam", recipients=recipients, query=query,
                                     schedule="0 7 * * *", timezone="UTC")
    with site.begin() as conn:  # some of a view within her regions: she gets that part
        reports.add_subscription(conn, name="X", owner="adam", recipients=("nora",),
                                 query={"region": ["North", "South"]}, schedule="0 7 * * *", timezone="UTC")
    with pytest.raises(reports.ReportError, match="a daily report has no day"):
        reports.schedule_of("daily", "07:00", "fri")
    with pytest.raises(reports.ReportError, match=r"the time is HH:MM, 00:00 to 23:59, got '7:5'"):
        reports.schedule_of("weekly", "7:5", "mon")


def test_a_send_now_that_fails_is_not_sent_again_later(site: Engine, app, smtp,  # noqa: ANN001
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from bi_app.reporting import run_due, run_now

    _url, inbox = smtp
    item = subscribe(site, recipients=("adam",), due_ago=timedelta(days=-3))  # due in days: only sent now
    down = replace(app.server.config[CONFIG_KEY], smtp_url=f"smtp://127.0.0.1:{free_port()}")
    monkeypatch.setitem(app.server.config, CONFIG_KEY, down)
    with app.server.test_request_context("/"):
        failed = run_now(item.id)
    assert failed.status == "failed" and "cannot be reached" in failed.error
    monkeypatch.undo()
    with app.server.test_request_context("/"):
        later = run_due(datetime.now(UTC) + timedelta(hours=3))
    assert not later.sent and inbox.messages == []
