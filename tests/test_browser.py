"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Run against `bi-app serve` on the embedded demo database (2,000 orders, seed 42).
Expected figures come from pandas on the same generated orders. Screenshots of
every page at desktop and phone width go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

from data_layer.demo_data import generate_orders_frame
from tests.support import BI_APP, IN_CI, net_revenue, served, wide_shop

CHROMIUM = os.environ.get("BI_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
PAGES = {"overview": "/", "segments": "/segments", "regions": "/regions", "clusters": "/clusters", "data": "/data",
         "strategy": "/strategy", "reports": "/reports"}
#: What shows that a page has drawn its content.
DRAWN = {"overview": "#overview-kpis .kpi-value", "segments": "#segments-table", "regions": "#regions-table",
         "clusters": "#clusters-profile", "strategy": "#strategy-net-vip", "data": "#data-file",
         "reports": "#reports-no-scheduler"}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: Any http(s) address that is not this machine's.
OUTSIDE = re.compile(r"^(https?|wss?)://(?!(127\.0\.0\.1|localhost)[:/])")
#: What a chart's toolbar may offer: actions in the browser only.
LOCAL_CHART_ACTIONS = {"Download plot as a PNG", "Zoom", "Zoom in", "Zoom out", "Autoscale", "Reset axes"}

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def orders() -> pd.DataFrame:
    frame = generate_orders_frame(2000, seed=42)
    frame["order_date"] = pd.to_datetime(frame["order_date"])
    frame["net"] = net_revenue(frame)
    return frame


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`bi-app serve` on the embedded demo database."""
    folder = tmp_path_factory.mktemp("browser-data")
    env = {k: v for k, v in os.environ.items() if k not in ("BI_DATABASE_URL", "DATABASE_URL", "BI_CACHE_URL")}
    env["BI_DATA_DIR"] = str(folder)
    with served(env, folder / "server.log") as base:
        yield base


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing (CI=true: .ci/run installs Debian's chromium)")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Tab:
    """A page in the browser that records console errors and failed requests."""

    def __init__(self, browser, base: str, width: int = 1280) -> None:  # noqa: ANN001
        self.context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("response", lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        # Nothing on a page may talk to another host: such a request fails, and the test with it.
        self.context.route(OUTSIDE, self.refuse)

    def refuse(self, route) -> None:  # noqa: ANN001
        self.errors.append(f"request to an outside host: {route.request.url}")
        route.abort()

    def open(self, path: str) -> None:
        self.page.goto(self.base + path)
        self.settle()

    def settle(self) -> None:
        """Wait until Dash has no callback in flight."""
        self.page.wait_for_load_state("networkidle")
        self.page.wait_for_function(
            "() => !document.querySelector('[data-dash-is-loading=\"true\"]')", timeout=20_000
        )

    def choose(self, dropdown: str, option: str) -> None:
        """Pick ``option`` in the filter bar's ``dropdown`` (its search box opens a moment after the click)."""
        self.page.click(f"#{dropdown}")
        self.page.locator(".dash-dropdown-search").fill(option)
        self.page.get_by_role("option", name=option, exact=True).click()

    def text(self, selector: str) -> str:
        self.page.wait_for_selector(selector, timeout=20_000)
        return self.page.inner_text(selector).strip()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser, server: str) -> Iterator[Tab]:  # noqa: ANN001
    opened = Tab(browser, server)
    yield opened
    opened.close()


def money(value: float) -> str:
    return f"${value:,.2f}"


#: The charts whose legend or axis labels cover their title or subtitle.
COVERED_TITLES = """() => [...document.querySelectorAll('.js-plotly-plot')].filter(plot => {
    const boxes = selector => [...plot.querySelectorAll(selector)].map(e => e.getBoundingClientRect())
        .filter(r => r.width > 0 && r.height > 0);
    const titles = boxes('.gtitle, .gtitle-subtitle'), others = boxes('.legend, .ytick text, .xtick text');
    return titles.some(a => others.some(b =>
        a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1));
}).map(plot => plot.parentElement.id || plot.id)"""


def covered_titles(tab: Tab) -> list[str]:
    return tab.page.evaluate(COVERED_TITLES)


def covered_donuts(tab: Tab) -> list[str]:
    """The charts whose legend lies over their donut (a legend of two rows once covered its bottom)."""
    return tab.page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].filter(plot => {
        const pie = plot.querySelector('.pielayer .trace'), legend = plot.querySelector('.legend');
        return pie && legend && pie.getBoundingClientRect().bottom > legend.getBoundingClientRect().top + 1;
    }).map(plot => plot.parentElement.id || plot.id)""")


def accessibility_problems(tab: Tab) -> list[str]:
    """What axe-core (WCAG 2.x A and AA rules and best practices) finds moderate, serious or critical on the
    page (only minor findings are let through)."""
    from axe_playwright_python.sync_playwright import Axe

    violations = Axe().run(tab.page).response["violations"]
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes'][:3]]}"
            for v in violations if v["impact"] in ("moderate", "serious", "critical")]


@pytest.mark.parametrize("name", list(PAGES))
def test_browser_every_page_renders_without_errors_at_desktop_and_phone_width(browser, server: str, name: str) -> None:  # noqa: ANN001
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width, label in ((1280, "desktop"), (390, "phone")):
        tab = Tab(browser, server, width)
        tab.open(PAGES[name])
        tab.page.wait_for_selector(DRAWN[name], timeout=60_000)
        tab.settle()
        tab.page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # what loads on scrolling, too
        if name == "reports":  # its forms, opened, are checked too
            tab.page.eval_on_selector_all("details", "all => all.forEach(d => d.open = true)")
        if name == "overview":
            tab.page.wait_for_function(
                "() => document.querySelector(\"#overview-grid .ag-row [col-id='order_id']\")?.innerText.trim()",
                timeout=20_000)
        tab.settle()
        tab.page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
        overflow = tab.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}px"
        assert covered_titles(tab) == [], f"{name} at {width}px"
        assert covered_donuts(tab) == [], f"{name} at {width}px"
        assert accessibility_problems(tab) == [], f"{name} at {width}px"
        actions = tab.page.eval_on_selector_all(".modebar-btn", "buttons => buttons.map(b => b.dataset.title)")
        assert set(actions) <= LOCAL_CHART_ACTIONS, f"{name}: chart toolbar offers {set(actions) - LOCAL_CHART_ACTIONS}"
        assert tab.errors == [], tab.errors
        tab.close()


def test_browser_filter_change_updates_the_kpis_and_url(tab: Tab, orders: pd.DataFrame) -> None:
    tab.open("/?period=all")
    assert tab.text("#overview-kpi-revenue") == money(round(orders["net"].sum(), 2))
    tab.choose("filter-region", "West")
    tab.page.wait_for_url(re.compile(r"region=West"))
    tab.settle()
    west = orders[orders["region"] == "West"]
    tab.page.wait_for_function(
        "expected => document.querySelector('#overview-kpi-revenue')?.innerText.trim() === expected",
        arg=money(round(west["net"].sum(), 2)), timeout=20_000,
    )
    assert tab.text("#overview-kpi-customers") == f"{west['customer_id'].nunique():,}"
    assert tab.text("#overview-kpi-aov") == money(round(west["net"].sum() / len(west), 2))
    tab.page.go_back()
    tab.page.wait_for_function(
        "expected => document.querySelector('#overview-kpi-revenue')?.innerText.trim() === expected",
        arg=money(round(orders["net"].sum(), 2)), timeout=20_000,
    )
    assert "region=" not in tab.page.url
    assert tab.errors == []


def test_browser_opens_on_the_last_90_days_with_presets_and_a_comparison(tab: Tab, orders: pd.DataFrame) -> None:
    """The first question, "how are we doing against last period / last year", answered without typing dates."""
    last = orders["order_date"].max()

    def net(first: pd.Timestamp, through: pd.Timestamp) -> float:
        return float(orders.loc[orders["order_date"].between(first, through), "net"].sum())

    def change_text(now: float, then: float, against: str) -> str:
        change = now / then - 1
        return f"{'▲' if change > 0 else '▼'} {abs(change):.1%} vs {against}"

    def shows(selector: str, expected: str) -> None:
        tab.page.wait_for_function(
            "([s, e]) => document.querySelector(s)?.innerText.trim() === e", arg=[selector, expected], timeout=20_000)

    tab.open("/")
    tab.page.wait_for_url(re.compile(r"period=last-90-days"), timeout=20_000)
    day = pd.Timedelta(days=1)
    now, before = net(last - 89 * day, last), net(last - 179 * day, last - 90 * day)
    shows("#overview-kpi-revenue", money(round(now, 2)))
    shows("#overview-kpi-revenue-change", change_text(now, before, "previous period"))
    assert "Period: Last 90 days" in tab.text("#filter-chips")

    tab.page.get_by_label("Period").select_option(label="Previous month")
    tab.page.wait_for_url(re.compile(r"period=previous-month"), timeout=20_000)
    month = last.to_period("M") - 1
    now = net(month.start_time, month.end_time.normalize())
    shows("#overview-kpi-revenue", money(round(now, 2)))

    tab.page.get_by_label("Compare with").select_option(label="vs same period last year")
    tab.page.wait_for_url(re.compile(r"compare=last-year"), timeout=20_000)
    a_year_earlier = month - 12
    then = net(a_year_earlier.start_time, a_year_earlier.end_time.normalize())
    shows("#overview-kpi-revenue-change", change_text(now, then, "same period last year"))
    tab.settle()
    legend = tab.page.eval_on_selector_all("#overview-trend .legendtext", "ts => ts.map(t => t.textContent)")
    assert "Same month last year" in legend
    assert "period=previous-month" in tab.page.url and "compare=last-year" in tab.page.url

    # The date inputs hold the period's days (their calendars open on its month) ...
    assert tab.page.input_value("#filter-start") == month.start_time.date().isoformat()
    assert tab.page.input_value("#filter-end") == month.end_time.date().isoformat()
    # ... and, emptied (all time), open on the data's last month rather than today's.
    tab.page.select_option("#filter-period", "all")
    tab.page.wait_for_url(re.compile(r"period=all"), timeout=20_000)
    tab.settle()
    assert tab.page.input_value("#filter-start") == ""
    assert tab.page.get_attribute("#filter-start", "max") == last.date().isoformat()

    # Typed dates make the period "Custom dates"; an end before the start is refused in words, and the
    # bar shows the dates the figures use; Reset brings the bar back with the figures.
    tab.page.fill("#filter-start", "2024-06-20")
    tab.page.press("#filter-start", "Enter")
    tab.page.wait_for_url(re.compile(r"start=2024-06-20"), timeout=20_000)
    assert tab.page.input_value("#filter-period") == "custom"
    tab.page.fill("#filter-end", "2024-06-10")
    tab.page.press("#filter-end", "Enter")
    assert "is after end 2024-06-10" in tab.text("#filter-notice")
    tab.page.wait_for_url(re.compile(r"\?end=2024-06-10"), timeout=20_000)
    tab.settle()
    assert tab.page.input_value("#filter-start") == ""
    tab.page.click("#filter-reset")
    tab.page.wait_for_url(re.compile(r"\?period=last-90-days$"), timeout=20_000)
    tab.settle()
    assert tab.page.input_value("#filter-period") == "last-90-days"
    assert tab.page.input_value("#filter-compare") == "previous"
    assert tab.page.input_value("#filter-start") == (last - 89 * day).date().isoformat()
    assert tab.errors == [], tab.errors


def test_browser_a_shared_url_reproduces_the_view(tab: Tab, orders: pd.DataFrame) -> None:
    tab.open("/?region=East&segment=Premium&start=2024-01-01&end=2024-06-30")
    rows = orders[orders["region"].eq("East") & orders["customer_segment"].eq("Premium")
                  & orders["order_date"].between("2024-01-01", "2024-06-30")]
    tab.page.wait_for_function(
        "expected => document.querySelector('#overview-kpi-revenue')?.innerText.trim() === expected",
        arg=money(round(rows["net"].sum(), 2)), timeout=20_000,
    )
    chips = tab.page.inner_text("#filter-chips")
    for text in ("Region: East", "Segment: Premium", "From: 2024-01-01", "To: 2024-06-30"):
        assert text in chips
    assert "East" in tab.page.inner_text("#filter-region")
    assert tab.errors == []


def test_browser_a_filter_chip_removes_its_value(tab: Tab, orders: pd.DataFrame) -> None:
    """A chip is a link to the same view without its value: the URL, the bar and the figures follow; the last
    date chip leaves all time, not the default period."""
    from playwright.sync_api import expect

    tab.open("/?start=2024-01-01&end=2024-06-30&region=East&region=West")

    def shows_net(rows: pd.DataFrame) -> None:
        tab.page.wait_for_function(
            "expected => document.querySelector('#overview-kpi-revenue')?.innerText.trim() === expected",
            arg=money(round(rows["net"].sum(), 2)), timeout=20_000)

    def remove(chip: str, leaves: str) -> None:
        """Click the chip once it links to ``leaves`` (the chips of the current URL, not the last one's)."""
        link = tab.page.get_by_title(f"Remove this filter ({chip})")
        expect(link).to_have_attribute("href", f"/{leaves}", timeout=20_000)
        link.click()
        tab.page.wait_for_url(re.compile(re.escape(leaves) + "$"), timeout=20_000)

    first_half = orders["order_date"].between("2024-01-01", "2024-06-30")
    shows_net(orders[first_half & orders["region"].isin(["East", "West"])])
    remove("Region: East", "?start=2024-01-01&end=2024-06-30&region=West")
    shows_net(orders[first_half & orders["region"].eq("West")])
    expect(tab.page.locator("#filter-region")).not_to_contain_text("East", timeout=20_000)
    remove("From: 2024-01-01", "?end=2024-06-30&region=West")
    remove("To: 2024-06-30", "?period=all&region=West")
    shows_net(orders[orders["region"].eq("West")])
    assert "Region: East" not in tab.text("#filter-chips")
    assert tab.errors == []


def test_browser_bad_url_parameters_show_a_notice_and_defaults(tab: Tab, orders: pd.DataFrame) -> None:
    tab.open("/?region=Atlantis&start=2024-13-45&foo=bar")
    notice = tab.text("#filter-notice")
    assert "region" in notice and "start" in notice and "foo" in notice
    last = orders["order_date"].max()  # what is left is the default view: the last 90 days
    tab.page.wait_for_url(re.compile(r"\?period=last-90-days$"), timeout=20_000)
    tab.page.wait_for_function(
        "expected => document.querySelector('#overview-kpi-revenue')?.innerText.trim() === expected",
        arg=money(round(orders.loc[orders["order_date"] > last - pd.Timedelta(days=90), "net"].sum(), 2)),
        timeout=20_000,
    )


def test_browser_drill_down_from_a_region_bar_lands_on_the_region_page(tab: Tab, orders: pd.DataFrame) -> None:
    tab.open("/?period=all&segment=Bulk")
    largest = orders[orders["customer_segment"] == "Bulk"].groupby("region")["net"].sum().idxmax()
    bars = tab.page.locator("#overview-regions g.point path")
    bars.last.click(force=True)  # bars are drawn smallest first
    tab.page.wait_for_url(re.compile(r"/regions\?"), timeout=20_000)
    assert f"region={largest}" in tab.page.url and "segment=Bulk" in tab.page.url
    tab.settle()
    assert largest in tab.text("#regions-table")
    assert tab.errors == []


def test_browser_download_has_the_right_rows(tab: Tab, orders: pd.DataFrame) -> None:
    tab.open("/?period=all&region=South&category=Office")
    with tab.page.expect_download() as download:
        tab.page.click("#download-csv")
    content = Path(download.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(content)))
    expected = orders[orders["region"].eq("South") & orders["category"].eq("Office")]
    assert len(rows) == len(expected) > 0
    assert {r["order_id"] for r in rows} == set(expected["order_id"])


def test_browser_transactions_grid_pages_and_filters_on_the_server(tab: Tab, orders: pd.DataFrame) -> None:
    tab.open("/?period=all&product=Laptop")
    tab.page.wait_for_selector("#overview-kpis .kpi-value")
    assert tab.page.locator("#overview-grid").count() == 0  # below the fold: made when scrolled to
    tab.page.locator("#overview-grid-slot").scroll_into_view_if_needed()
    tab.page.wait_for_function(  # rows are drawn empty until their block arrives
        "() => document.querySelector(\"#overview-grid .ag-row [col-id='order_id']\")?.innerText.trim()",
        timeout=20_000)
    first_ids = tab.page.locator("#overview-grid .ag-row [col-id='order_id']").all_inner_texts()
    laptops = orders[orders["product"] == "Laptop"].sort_values("order_id")
    assert first_ids[0] == laptops["order_id"].iloc[0]
    assert set(first_ids) <= set(laptops["order_id"])
    # Money in the data's currency (the demo's: dollars, en_US), in the first row's unit price (a column in
    # view: the grid draws only those).
    price = tab.page.locator("#overview-grid .ag-row[row-index='0'] [col-id='unit_price']").inner_text().strip()
    assert price == money(laptops["unit_price"].iloc[0])


def test_browser_drill_down_on_a_product_bar_and_a_month(tab: Tab, orders: pd.DataFrame) -> None:
    tab.open("/?period=all&region=North")
    north = orders[orders["region"] == "North"]
    largest = north.groupby("product")["net"].sum().idxmax()
    tab.page.locator("#overview-products g.point path").last.click(force=True)
    tab.page.wait_for_url(re.compile(rf"product={largest}"), timeout=20_000)
    assert "region=North" in tab.page.url and tab.page.url.split("?")[0].endswith("/")
    narrowed = north[north["product"] == largest]
    tab.page.wait_for_function(  # the page has redrawn for the new filter before the next click
        "expected => document.querySelector('#overview-kpi-revenue')?.innerText.trim() === expected",
        arg=money(round(narrowed["net"].sum(), 2)), timeout=20_000,
    )
    tab.settle()
    tab.page.locator("#overview-trend g.point path").first.click(force=True)  # the first month
    tab.page.wait_for_url(re.compile(r"end="), timeout=20_000)
    first_month = narrowed["order_date"].min().to_period("M")
    assert f"start={first_month.start_time.date()}" in tab.page.url
    assert f"end={first_month.end_time.date()}" in tab.page.url
    assert f"product={largest}" in tab.page.url and "region=North" in tab.page.url
    assert tab.errors == []


def test_browser_clusters_profile_follows_the_filter(tab: Tab, orders: pd.DataFrame) -> None:
    tab.open("/clusters?period=all")
    tab.page.wait_for_selector("#clusters-profile", timeout=60_000)
    everyone = tab.text("#clusters-profile")
    assert f"{orders['customer_id'].nunique():,} matching customers" in tab.page.inner_text("#clusters-content")
    tab.choose("filter-region", "South")
    tab.page.wait_for_url(re.compile(r"/clusters\?period=all&region=South"))
    south = orders[orders["region"] == "South"]
    tab.page.wait_for_function(
        "expected => document.querySelector('#clusters-content')?.innerText.includes(expected)",
        arg=f"{south['customer_id'].nunique():,} matching customers", timeout=60_000,
    )
    tab.settle()
    profile = tab.text("#clusters-profile")
    assert profile != everyone
    spent = south.groupby("customer_id")["net"].sum()
    assert money(round(spent.sum(), 2)) not in profile  # split over the clusters, not one row
    assert tab.errors == []


def strategy_tab(tab: Tab, path: str = "/strategy?period=all") -> None:
    tab.open(path)
    tab.page.wait_for_selector("#strategy-net-vip", timeout=60_000)
    tab.settle()


def test_browser_changing_an_assumption_changes_the_projected_impact(tab: Tab, orders: pd.DataFrame) -> None:
    strategy_tab(tab)
    spent = orders.groupby("customer_id")["net"].sum().astype(float).sort_values(ascending=False)
    vips = spent.head(-(-len(spent) // 10))  # the top 10% by spend, rounded up
    last = orders["order_date"].max()
    lately = orders[(orders["order_date"] > last - pd.Timedelta(days=180)) & orders["customer_id"].isin(vips.index)]

    def expected(uplift: int) -> str:  # at most what the VIPs spent in the last 180 days
        return money(round(min(vips.sum() * uplift / 100, lately["net"].sum()) - len(vips) * 50, 2))

    assert tab.text("#strategy-net-vip") == expected(10)
    tab.page.fill("input[id*='vip_uplift_percent']", "30")
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_function(
        "expected => document.querySelector('#strategy-net-vip')?.innerText.trim() === expected",
        arg=expected(30), timeout=20_000,
    )
    tab.page.fill("input[id*='vip_uplift_percent']", "500")  # out of range: the default applies, input marked
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_selector("input[id*='vip_uplift_percent'].is-invalid", timeout=20_000)
    assert tab.text("#strategy-net-vip") == expected(10)
    feedback = tab.page.locator("input[id*='vip_uplift_percent'] ~ .invalid-feedback")
    assert feedback.is_visible() and "Use a whole number from 0 to 100. Until then the projection uses 10." \
        == feedback.inner_text().strip()
    label = tab.page.get_by_label(re.compile("Extra spend from VIPs"))  # the label names the input
    assert label.input_value() == "500"
    assert tab.errors == []


def test_browser_a_recommendations_download_has_its_target_customers(tab: Tab, orders: pd.DataFrame) -> None:
    strategy_tab(tab, "/strategy?period=all&region=West")
    with tab.page.expect_download() as download:
        tab.page.click("#strategy-download-cross_sell")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
    west = orders[orders["region"] == "West"]
    single = west.groupby("customer_id")["category"].nunique()
    assert len(rows) == int((single == 1).sum()) > 0
    assert {r["customer_id"] for r in rows} == set(single[single == 1].index)
    assert tab.errors == []


def test_browser_database_outage_shows_a_banner_and_recovers_by_itself(browser, postgres_admin, tmp_path: Path) -> None:  # noqa: ANN001
    """The app's own database role is locked out and let back in; the page follows on its own."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from data_layer.bootstrap import load_demo_data
    from data_layer.engine import make_engine
    from tests.conftest import postgres_url

    role = f"bi_outage_{os.getpid()}"
    with postgres_admin.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(text(f'CREATE SCHEMA "{role}" AUTHORIZATION "{role}"'))
    base_url = make_url(postgres_url()).set(username=role, password=None).render_as_string(hide_password=False)
    url = f"{base_url}{'&' if '?' in base_url else '?'}options=-csearch_path%3D{role}"
    loader = make_engine(url)
    load_demo_data(loader, 300, 3, replace=True)
    loader.dispose()
    expected = money(round(net_revenue(generate_orders_frame(300, seed=3)).sum(), 2))

    def kick_out() -> None:
        with postgres_admin.begin() as conn:
            conn.execute(text(f'ALTER ROLE "{role}" NOLOGIN'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"), {"r": role})

    env = {**os.environ, "BI_DATABASE_URL": url, "BI_DATA_DIR": str(tmp_path), "BI_COLUMNAR": "0",
           "BI_CONNECT_TIMEOUT_S": "2"}
    env.pop("BI_CACHE_URL", None)
    try:
        with served(env, tmp_path / "server.log") as base:
            tab = Tab(browser, base)
            tab.open("/?period=all")
            assert tab.text("#overview-kpi-revenue") == expected
            kick_out()
            tab.page.wait_for_selector("#database-banner", timeout=30_000)
            assert "cannot be reached" in tab.page.inner_text("#database-banner")
            with postgres_admin.begin() as conn:
                conn.execute(text(f'ALTER ROLE "{role}" LOGIN'))
            tab.page.wait_for_selector("#database-banner", state="detached", timeout=30_000)
            assert tab.text("#overview-kpi-revenue") == expected
            tab.close()
    finally:
        kick_out()
        with postgres_admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{role}" CASCADE'))
            conn.execute(text(f'DROP ROLE "{role}"'))


SHOP_CSV = """InvoiceNo,InvoiceDate,Description,Quantity,UnitPrice,CustomerID,Country
536365,12/1/2010 8:26,WHITE HANGING HEART T-LIGHT HOLDER,6,2.55,17850,United Kingdom
536365,12/1/2010 8:26,WHITE METAL LANTERN,6,3.39,17850,United Kingdom
536366,12/1/2010 8:28,HAND WARMER UNION JACK,6,1.85,,United Kingdom
C536379,12/1/2010 9:41,Discount,-1,27.50,14527,United Kingdom
536380,12/1/2010 9:45,JUMBO BAG RED RETROSPOT,ten,1.65,17809,France
536381,12/2/2010 9:41,"BOX OF 6 ASSORTED COLOUR TEASPOONS, GLASS",2,4.25,15311,France
"""


def test_browser_upload_page_maps_validates_and_imports(browser, tmp_path: Path, orders: pd.DataFrame) -> None:  # noqa: ANN001
    """On a server of its own (the import changes the data), started as `make run` starts it: in its
    folder, with the default relative data folder (./data)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("BI_DATABASE_URL", "DATABASE_URL", "BI_CACHE_URL", "BI_DATA_DIR")}
    shop = tmp_path / "shop.csv"
    shop.write_text(SHOP_CSV)
    with served(env, tmp_path / "server.log", cwd=tmp_path) as base:
        tab = Tab(browser, base)
        tab.open("/data")
        tab.page.set_input_files("#data-file input[type=file]", str(shop))
        # Every day is 12 or less: the page asks how the dates are written, and nothing can be imported yet.
        assert "read as well day-first as month-first" in tab.text("#data-questions")
        assert tab.page.is_disabled("#data-import")
        assert "--date-order" not in tab.page.inner_text("body")
        tab.choose("data-date-order", "month first (12/31/2024)")
        summary = tab.text("#data-validation-summary")
        assert "6 rows: 5 valid (1 adjustment, 4 sale), 1 invalid" in summary and "3 orders" in summary, summary
        assert "date order (InvoiceDate): month first (12/31/2024) (as asked)" in tab.text("#data-decisions")
        assert "not a number: quantity 'ten'" in tab.text("#data-rejects")
        assert "WHITE METAL LANTERN" in tab.text("#data-preview")

        product = tab.page.locator("#data-mapping .Select-clear, #data-mapping .dash-dropdown-clear").nth(2)
        product.click(force=True)  # unmap Description: product is required
        tab.page.wait_for_function("() => document.querySelector('#data-validation-summary')?.innerText"
                                   ".includes('no column for product')", timeout=20_000)
        tab.page.reload()  # start again with the automatic mapping
        tab.page.set_input_files("#data-file input[type=file]", str(shop))
        tab.text("#data-questions")
        tab.choose("data-date-order", "month first (12/31/2024)")
        tab.text("#data-validation-summary")

        tab.page.click("#data-import")  # one invalid row: nothing written
        assert "6 rows in = 0 written + 6 rejected" in tab.text("#data-result-summary")
        tab.page.check("#data-skip-invalid")
        tab.page.click("#data-import")
        tab.page.wait_for_function("() => document.querySelector('#data-result-summary')?.innerText"
                                   ".includes('5 written')", timeout=30_000)
        assert "6 rows in = 5 written + 1 rejected" in tab.text("#data-result-summary")
        assert "skip-invalid" not in tab.page.text_content("#data-log")
        with tab.page.expect_download() as download:
            tab.page.click("#data-report")
        report = Path(download.value.path()).read_text()
        assert "not a number: quantity 'ten'" in report and "date order: month first" in report
        with tab.page.expect_download() as download:
            tab.page.click("#data-rejected-rows")
        rejected = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
        assert len(rejected) == 1 and "ten" in rejected[0].values()
        assert tab.page.locator("#filter-bar").is_hidden() and tab.page.locator("#download-csv").count() == 0

        tab.open("/?period=all")
        # Net revenue: the four sale lines less the "Discount" adjustment of the C invoice.
        revenue = round(orders["net"].sum() + 6 * 2.55 + 6 * 3.39 + 6 * 1.85 + 2 * 4.25 - 27.50, 2)
        tab.page.wait_for_function(
            "expected => document.querySelector('#overview-kpi-revenue')?.innerText.trim() === expected",
            arg=money(revenue), timeout=20_000,
        )
        assert f"{len(orders) + 3:,} orders" in tab.text("#overview-period")
        assert tab.errors == [], tab.errors
        tab.close()


@pytest.fixture(scope="module")
def wide_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`bi-app serve` on a shop of 1,500 products, 40 regions, 60-character names and no segments."""
    folder = tmp_path_factory.mktemp("wide-shop")
    env = {k: v for k, v in os.environ.items() if k not in ("BI_DATABASE_URL", "DATABASE_URL", "BI_CACHE_URL")}
    env.update(BI_DATA_DIR=str(folder), BI_DATABASE_URL=f"sqlite:///{folder / 'shop.sqlite'}")
    imported = subprocess.run([BI_APP, "import", str(wide_shop(folder / "shop.csv"))], env=env, capture_output=True,
                              text=True)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    with served(env, folder / "server.log") as base:
        yield base


@pytest.mark.parametrize("width", [1400, 390])
def test_browser_a_wide_catalogue_is_readable(browser, wide_server: str, width: int) -> None:  # noqa: ANN001
    """Top bars with a label each, shortened names, an "Other" bar, a note for the segment donut,
    the huge orders in an overflow bar; nothing covers a title, nothing scrolls sideways."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab = Tab(browser, wide_server, width)
    for path, name in (("/?period=all", "overview"), ("/regions?period=all", "regions"),
                       ("/segments?period=all", "segments")):
        tab.open(path)
        tab.page.wait_for_selector(DRAWN[name], timeout=60_000)
        tab.settle()
        tab.page.screenshot(path=str(SCREENSHOTS / f"wide-{name}-{width}.png"), full_page=True)
        assert covered_titles(tab) == [], f"{name} at {width}px"
        assert accessibility_problems(tab) == [], f"{name} at {width}px"
        overflow = tab.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}px"
        if name == "overview":
            labels = tab.page.eval_on_selector_all("#overview-products .ytick text", "ts => ts.map(t => t.textContent)")
            assert len(labels) == 13 and labels[-1] == "Other (1,488 more)", labels
            assert all(len(label) <= 24 for label in labels)
            plot = tab.page.eval_on_selector("#overview-products .nsewdrag", "e => e.getBoundingClientRect().width")
            graph = tab.page.eval_on_selector("#overview-products", "e => e.getBoundingClientRect().width")
            assert plot >= 0.3 * graph, f"the bars get {plot:.0f} of {graph:.0f} px"
            def svg_text(selector: str) -> str:
                return tab.page.eval_on_selector(selector, "e => e.textContent")

            assert "segment: Unknown. Nothing to break" in svg_text("#overview-segments .annotation-text")
            assert "last bar: the 60 orders over" in svg_text("#overview-distribution .gtitle-subtitle")
        if name == "regions":
            labels = tab.page.eval_on_selector_all("#regions-revenue .ytick text", "ts => ts.map(t => t.textContent)")
            assert labels[0] == "United Kingdom" and len(labels) == 13, labels
    assert tab.errors == [], tab.errors
    tab.close()


#: Draws ``figure`` into a new element of ``width`` pixels: the DOM changes it took, its last x tick label
#: and how far that label reaches past the figure's right edge (px); with ``oneDraw``, with the margins
#: fixed as given (one draw: no push of a legend, title or tick label).
DRAW_COUNTING_CHANGES = """async ([figure, width, oneDraw]) => {
    const element = document.createElement('div');
    element.style.width = width + 'px';
    document.body.appendChild(element);
    if (oneDraw) figure.layout.margin = {...figure.layout.margin, autoexpand: false};
    let changes = 0;
    const observer = new MutationObserver(records => { changes += records.length; });
    observer.observe(element, {subtree: true, childList: true, attributes: true, characterData: true});
    await Plotly.newPlot(element, figure.data, figure.layout, {responsive: false});
    await new Promise(resolve => setTimeout(resolve, 0));
    observer.disconnect();
    const labels = [...element.querySelectorAll('.xtick text')].filter(label => label.textContent);
    const last = labels[labels.length - 1];
    const overhang = last ? last.getBoundingClientRect().right
        - element.querySelector('svg.main-svg').getBoundingClientRect().right : 0;
    const answer = [changes, last ? last.textContent : null, overhang];
    Plotly.purge(element);
    element.remove();
    return answer;
}"""


@pytest.mark.parametrize("width", [385, 350, 880])
def test_browser_charts_draw_without_margin_redraw_loops(tab: Tab, width: int) -> None:
    """A tick label at the end of a money axis once set plotly's margins oscillating: some ten redraws
    of the order-value histogram (a region's filter change drew in 0.47 s instead of 0.3 s). Over a sweep
    of axis ends, each histogram and bar chart draws with at most the DOM changes of two draws (a margin
    pushed once by a legend or a label's depth), counted, not timed. The trend's month labels, turned
    when they crowd, may push the right margin once more (three draws) and are never cut off."""
    import json

    import numpy as np
    import plotly.io as pio

    from bi_app import figures

    tab.open("/?period=all")
    tab.page.wait_for_selector(DRAWN["overview"], timeout=60_000)
    built = []  # (figure, most draws)
    for right in np.linspace(4000, 6000, 21):  # the axis ends where a tick sits at every distance from it
        edges = np.linspace(0, right * 20 / 21, 21)
        bins = [{"bin_start": float(a), "bin_end": float(b), "orders": int(20000 / (i + 1)), "overflow": False}
                for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
        bins.append({"bin_start": float(edges[-1]), "bin_end": float(right * 3), "orders": 500, "overflow": True})
        built.append((figures.histogram(bins, {"median": right / 17, "mean": right / 8}), 2))
        sales = pd.DataFrame({"product": [f"Product {i}" for i in range(8)],
                              "revenue": [right * 2500 / (i + 1) for i in range(8)]})
        built.append((figures.bars(sales, "product", "revenue", "Revenue by product"), 2))
    for count in (2, 6, 12, 18, 23, 26, 36):
        months = pd.period_range("2023-01", periods=count, freq="M").astype(str)
        built.append((figures.trend(pd.DataFrame({"month": months, "revenue": 4e6, "growth": 0.0,
                                                  "moving_average_3": 4e6})), 2.5))
    loops, cut = [], []
    for number, (figure, most) in enumerate(built):
        drawn = json.loads(pio.to_json(figure))
        as_built, last_label, overhang = tab.page.evaluate(DRAW_COUNTING_CHANGES, [drawn, width, False])
        one_draw, _label, _overhang = tab.page.evaluate(DRAW_COUNTING_CHANGES, [drawn, width, True])
        if as_built > most * one_draw:
            loops.append((number, drawn["layout"]["xaxis"].get("range"), as_built, one_draw))
        if overhang > 0.5:
            cut.append((number, last_label, overhang))
    assert loops == [], loops
    assert cut == [], cut
    assert tab.errors == [], tab.errors


@pytest.mark.parametrize("width", [385, 350])
def test_browser_an_other_bar_cut_at_the_axis_end_shows_its_value(tab: Tab, width: int) -> None:
    """1,500 products: "Other" holds far more than the top bar, so the axis stops past the top bar and
    the Other bar, cut there, carries its value, drawn whole inside the plot."""
    import json

    import plotly.io as pio

    from bi_app import figures

    sales = pd.DataFrame({"product": [f"Product {i:04d} with a name of some sixty characters, give or take"
                                      for i in range(1500)], "revenue": [1000.0 + (i % 7) for i in range(1500)]})
    figure = json.loads(pio.to_json(figures.bars(sales, "product", "revenue", "Revenue by product")))
    tab.open("/?period=all")
    tab.page.wait_for_selector(DRAWN["overview"], timeout=60_000)
    text, inside = tab.page.evaluate("""async ([figure, width]) => {
        const element = document.createElement('div');
        element.style.width = width + 'px';
        document.body.appendChild(element);
        await Plotly.newPlot(element, figure.data, figure.layout, {responsive: false});
        const value = element.querySelector('.annotation'), box = value.getBoundingClientRect();
        const area = element.querySelector('.nsewdrag').getBoundingClientRect();
        const answer = [value.textContent, box.width > 0 && box.left >= area.left && box.right <= area.right + 1];
        Plotly.purge(element);
        element.remove();
        return answer;
    }""", [figure, width])
    other = sales["revenue"].sort_values(ascending=False).iloc[figures.TOP_BARS:].sum()
    assert (text, inside) == (f"${other:,.0f} ▸", True)


def test_browser_an_empty_filter_says_so_where_the_kpis_go(tab: Tab) -> None:
    """No orders match: the empty state takes the KPI cards' place, with no blank room held for them."""
    tab.open("/?start=2030-01-01&end=2030-02-01")
    tab.page.wait_for_selector("#overview-kpis .empty-state", timeout=60_000)
    tab.settle()
    notice = tab.page.eval_on_selector("#overview-kpis .empty-state", "e => e.getBoundingClientRect().bottom")
    chart = tab.page.eval_on_selector("#overview-trend", "e => e.getBoundingClientRect().top")
    assert 0 <= chart - notice <= 40, f"{chart - notice:.0f}px between the notice and the first chart"
    assert tab.page.locator("#overview-kpis .kpi-value").count() == 0
    assert tab.errors == [], tab.errors


def test_browser_keyboard_focus_is_always_visible(tab: Tab) -> None:
    """Tabbing through the page: every element that takes focus shows an outline or a focus ring."""
    tab.open("/?period=all")
    tab.page.wait_for_selector(DRAWN["overview"], timeout=60_000)
    seen = []
    for _ in range(30):  # a date input takes three stops (month, day, year)
        tab.page.keyboard.press("Tab")
        seen.append(tab.page.evaluate("""() => {
            const e = document.activeElement, style = getComputedStyle(e);
            return [e.id || e.getAttribute('aria-label') || e.textContent.trim().slice(0, 30) || e.tagName,
                    (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2)
                    || style.boxShadow !== 'none'];  // Bootstrap's focus ring on form controls
        }"""))
    names = {name for name, _visible in seen}
    assert {"Overview", "filter-period", "filter-start", "filter-compare", "filter-region", "filter-reset"} <= names, sorted(names)
    assert [name for name, visible in seen if not visible] == [], seen


@pytest.mark.parametrize("secured_site", ["sqlite"], indirect=True)
def test_browser_signs_in_is_refused_the_data_page_as_a_viewer_and_signs_out(browser, secured_site) -> None:  # noqa: ANN001
    """On the signed-in server of tests/conftest.py (SQLite; tests/test_access.py covers both databases)."""
    from tests.conftest import SITE_PASSWORD

    tab = Tab(browser, secured_site.base)
    try:
        tab.page.goto(f"{tab.base}/regions?period=all")
        assert tab.page.url.startswith(f"{tab.base}/login?next=")
        assert accessibility_problems(tab) == []
        tab.page.fill("#login-name", "vera")
        tab.page.fill("#login-password", SITE_PASSWORD + "!")
        tab.page.click("#login-submit")
        assert "Wrong user name or password" in tab.text("#login-message")
        # The refused sign-in's own answer, and the console's word for it.
        tab.errors.remove(f"401 {tab.base}/login")
        tab.errors.remove("Failed to load resource: the server responded with a status of 401 (UNAUTHORIZED)")
        tab.page.fill("#login-password", SITE_PASSWORD)
        tab.page.click("#login-submit")
        tab.page.wait_for_url(f"{tab.base}/regions?period=all")
        tab.settle()
        assert tab.text("#regions-table").count("\n") >= 4  # the header and the four regions
        assert tab.text("#signed-in-user") == "vera (viewer)"
        assert tab.page.locator("a.nav-link", has_text="Data").count() == 0  # not in the menu of a viewer
        assert tab.page.locator("#download-csv").count() == 0  # nor the downloads
        tab.page.evaluate("window.history.pushState({}, '', '/data'); window.dispatchEvent(new PopStateEvent('popstate'))")
        tab.settle()
        assert "needs the analyst role" in tab.text("#not-allowed")
        assert tab.page.locator("#data-file").count() == 0
        tab.page.click("#logout-button")
        tab.page.wait_for_url(f"{tab.base}/login")
        tab.page.goto(f"{tab.base}/")
        assert tab.page.url.startswith(f"{tab.base}/login")
        assert tab.errors == []
        tab.page.screenshot(path=str(SCREENSHOTS / "login.png"))
    finally:
        tab.close()
