"""The executive summary on a real shop's shape (1,500 products with names near 60 characters, 40 regions, no
segments) on SQLite and PostgreSQL: its numbers against pandas on the stored rows and against the API, the
PDF printed by a real headless Chromium read back with a PDF text extractor (one A4 page), a region-scoped
user's summary, an empty period, the download and the command line."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from pypdf import PdfReader

from bi_app.importing import import_file
from data_layer.engine import make_engine
from data_layer.importer import ImportChoices
from tests.conftest import private_schema
from tests.support import BI_APP, net_revenue, wide_shop

pytestmark = [pytest.mark.slow, pytest.mark.browser]

A4_POINTS = (595, 842)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shop_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """The wide shop imported once per backend (the tests only read it): its URL and its stored lines, read
    with pandas."""
    folder = tmp_path_factory.mktemp(f"shop-{request.param}")
    with ExitStack() as stack:
        url = f"sqlite:///{folder / 'shop.sqlite'}" if request.param == "sqlite" else \
            stack.enter_context(private_schema(request.getfixturevalue("postgres_admin")))
        engine = make_engine(url)
        stack.callback(engine.dispose)
        outcome = import_file(engine, wide_shop(folder / "shop.csv"), {}, mode="replace", skip_invalid=False,
                              dry_run=False, report_dir=folder, echo=lambda _line: None, choices=ImportChoices())
        assert outcome.written and not outcome.failed
        lines = pd.read_sql("SELECT * FROM advanced_sales_data", engine)
        lines["order_date"] = pd.to_datetime(lines["order_date"]).dt.date
        lines["net"] = net_revenue(lines)
        yield url, lines


@pytest.fixture
def shop(shop_database: tuple, point_app_at) -> pd.DataFrame:  # noqa: ANN001
    """The app pointed at the wide shop; its stored lines."""
    url, lines = shop_database
    point_app_at(url)
    return lines


def span(lines: pd.DataFrame, start: date, end: date) -> pd.DataFrame:
    return lines[(lines["order_date"] >= start) & (lines["order_date"] <= end)]


def expected_kpis(lines: pd.DataFrame) -> dict:
    counted = (lines["line_type"] == "sale") & (lines["total_amount"] != 0)
    return {"revenue": round(float(lines["net"].sum()), 2), "orders": int(lines.loc[counted, "order_id"].nunique())}


def expected_movers(now: pd.DataFrame, then: pd.DataFrame, key: str) -> tuple[list, list]:
    both = pd.concat([now.groupby(key)["net"].sum().rename("now"), then.groupby(key)["net"].sum().rename("then")],
                     axis=1).fillna(0.0)
    change = (both["now"] - both["then"]).round(2)
    rising = change[change > 0].sort_values(ascending=False).head(3)
    falling = change[change < 0].sort_values().head(3)
    return [(name, value) for name, value in rising.items()], [(name, value) for name, value in falling.items()]


def pdf_text(content: bytes) -> tuple[int, str, tuple[float, float]]:
    reader = PdfReader(io.BytesIO(content))
    box = reader.pages[0].mediabox
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages), (float(box.width),
                                                                                       float(box.height))


def test_the_summary_holds_what_pandas_and_the_api_say_and_prints_on_one_a4_page(shop: pd.DataFrame, app,  # noqa: ANN001
                                                                                   client, tmp_path: Path) -> None:
    from bi_app import service, summary

    last = shop["order_date"].max()
    start, previous = last - timedelta(days=29), (last - timedelta(days=59), last - timedelta(days=30))
    now, then = span(shop, start, last), span(shop, *previous)
    expected = expected_kpis(now)
    api = client.get("/api/v1/kpis?period=last-30-days").get_json()["data"]
    assert (api["revenue"]["value"], api["orders"]["value"]) == (pytest.approx(expected["revenue"]),
                                                                 expected["orders"])
    with app.server.test_request_context("/"):
        filters, _ = service.parse_request({"period": ["last-30-days"]}, scope=())
        made = summary.executive_summary(filters)
        html = summary.summary_html(made, summary.dashboard_link(filters, "https://bi.example.com"))
        summary.summary_pdf(html, tmp_path / "summary.pdf")
    assert made.kpis["revenue"]["value"] == pytest.approx(expected["revenue"])
    assert made.kpis["orders"]["value"] == expected["orders"]
    for kind, key in (("Regions", "region"), ("Categories", "category"), ("Products", "product")):
        rising, falling = made.movers[kind]
        want_rising, want_falling = expected_movers(now, then, key)
        assert [(m.name, m.change) for m in rising] == [(n, pytest.approx(v)) for n, v in want_rising], kind
        assert [(m.name, m.change) for m in falling] == [(n, pytest.approx(v)) for n, v in want_falling], kind
    monthly = shop.assign(month=pd.to_datetime(shop["order_date"]).dt.strftime("%Y-%m")).groupby("month")["net"].sum()
    assert list(made.trend["month"]) == [str(m) for m in pd.period_range(end=pd.Period(last, "M"), periods=12,
                                                                         freq="M")]
    assert made.trend.set_index("month")["revenue"].to_dict() == pytest.approx(
        monthly.reindex(made.trend["month"]).fillna(0.0).round(2).to_dict())

    pages, text, size = pdf_text((tmp_path / "summary.pdf").read_bytes())
    assert pages == 1 and size == pytest.approx(A4_POINTS, abs=1)
    flat = " ".join(text.split())
    assert f"${expected['revenue']:,.2f}" in flat and f"Orders {expected['orders']:,}" in flat
    assert f"{start} to {last}" in flat and "Biggest movers" in flat
    name, change = expected_movers(now, then, "region")[0][0]
    assert f"${round(change):,}" in flat and name[:20] in flat
    assert "https://bi.example.com/?period=last-30-days" in html


def test_a_region_scoped_users_summary_holds_only_their_region(shop: pd.DataFrame, app, tmp_path: Path) -> None:  # noqa: ANN001
    from bi_app import service, summary

    region = "Region 07 of the Overseas Territories"
    with app.server.test_request_context("/"):
        filters, _ = service.parse_request({"period": ["last-90-days"]}, scope=(region,))
        made = summary.executive_summary(filters)
        text = summary.summary_text(made)
    last = shop["order_date"].max()
    expected = expected_kpis(span(shop[shop["region"] == region], last - timedelta(days=89), last))
    assert made.kpis["revenue"]["value"] == pytest.approx(expected["revenue"])
    assert made.kpis["orders"]["value"] == expected["orders"]
    assert {m.name for rising, falling in [made.movers["Regions"]] for m in [*rising, *falling]} <= {region}
    assert f"regions {region}" in made.title and "United Kingdom" not in text


def test_an_empty_period_says_so_on_one_page(shop: pd.DataFrame, app, tmp_path: Path) -> None:  # noqa: ANN001
    from bi_app import service, summary

    with app.server.test_request_context("/"):
        filters, _ = service.parse_request({"start": ["2010-01-01"], "end": ["2010-01-31"]}, scope=())
        made = summary.executive_summary(filters)
        summary.summary_pdf(summary.summary_html(made), tmp_path / "empty.pdf")
    pages, text, _size = pdf_text((tmp_path / "empty.pdf").read_bytes())
    assert pages == 1 and "No orders match these filters in this period." in text


def test_the_overview_offers_the_summary_and_it_downloads_as_a_pdf(shop: pd.DataFrame, app, client) -> None:  # noqa: ANN001
    from bi_app import service
    from pages.overview import overview

    with app.server.test_request_context("/"):
        filters, _ = service.parse_request({"period": ["last-30-days"], "region": ["United Kingdom"]}, scope=())
        cards = str(overview(filters)[0])
    link = "/export/summary.pdf?period=last-30-days&region=United+Kingdom"
    assert "overview-summary-pdf" in cards and link in cards
    answer = client.get(link)
    assert answer.status_code == 200 and answer.mimetype == "application/pdf"
    pages, text, _size = pdf_text(answer.data)
    assert pages == 1 and "United Kingdom" in text
    bad = client.get("/export/summary.pdf?period=someday", headers={"Accept": "text/html"})
    assert bad.status_code == 400


def test_no_browser_is_a_clear_answer_not_a_failure(shop: pd.DataFrame, app, client, monkeypatch) -> None:  # noqa: ANN001
    from dataclasses import replace

    from bi_app.context import CONFIG_KEY

    monkeypatch.setitem(app.server.config, CONFIG_KEY, replace(app.server.config[CONFIG_KEY],
                                                               browser="/nonexistent/chromium"))
    answer = client.get("/export/summary.pdf", headers={"Accept": "text/html"})
    assert answer.status_code == 503
    assert "The summary could not be made as a PDF on this server" in answer.get_data(as_text=True)
    assert "nonexistent" not in answer.get_data(as_text=True)


def test_the_command_line_writes_the_summary(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "BI_DATA_DIR": str(tmp_path / "data"), "BI_COLUMNAR": "0",
           "BI_BASE_URL": "https://bi.example.com", "HOME": str(tmp_path)}
    done = subprocess.run([BI_APP, "summary", "--out", str(tmp_path / "s.pdf"), "--period", "previous-month",
                           "--compare", "last-year"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Wrote" in done.stdout and "Previous month" in done.stdout
    pages, text, _size = pdf_text((tmp_path / "s.pdf").read_bytes())
    assert pages == 1 and "Executive summary" in text and "same period last year" in text
    refused = subprocess.run([BI_APP, "summary", "--out", str(tmp_path / "s.txt"), "--region", "Mars"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode == 1 and "unknown region 'Mars'" in refused.stderr
    assert "Traceback" not in refused.stderr
