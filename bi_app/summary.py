"""The executive summary: one page for any filters and period, for people who do not open the dashboard.

What it holds (:func:`executive_summary`): the KPI cards with their change against the previous period and
the same period last year (like for like when the period is partial), the monthly net revenue of the
12 months through the period's end beside the same months a year earlier, the biggest movers (regions,
categories and products whose net revenue rose or fell most against the comparison the filters lead with,
with amounts), the top recommendations by projected net effect, and the data's freshness and currency.

Every number comes from :func:`bi_app.service.run`, the answers the dashboard's pages and the API give for the
same filters and data version. It is written as one self-contained HTML page (:func:`summary_html`: inline
style and an inline SVG chart, no script and nothing fetched), which is an email's body and what a headless
Chromium prints to a one-page A4 PDF (:func:`summary_pdf`), and as plain text (:func:`summary_text`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from bi_app import service
from bi_app.analytics.orders import span_text
from bi_app.context import current_config, current_engine
from bi_app.ml.strategy import TITLES
from bi_app.money import MoneyFormat
from data_layer.filters import COMPARISONS, PERIODS, Filters
from data_layer.meta import read_meta

#: Regions, categories and products shown rising and falling most.
MOVERS_SHOWN = 3
#: Recommendations shown: those projected to gain most (net of their cost), none projected to lose.
RECOMMENDATIONS_SHOWN = 3
#: Months of the trend, through the period's end.
TREND_MONTHS = 12
#: The KPI cards: (key in the KPI answer, label, kind).
CARDS = (("revenue", "Net revenue", "money"), ("orders", "Orders", "count"),
         ("average_order_value", "Average order value", "money"), ("customers", "Unique customers", "count"))
#: Seconds Chromium may take to print a summary.
PRINT_TIMEOUT_S = 60


class SummaryError(RuntimeError):
    """The summary could not be made (no browser to print it, or the browser failed); the message says why."""


@dataclass(frozen=True)
class Mover:
    """A region, category or product and its net revenue now and in the comparison span (data currency)."""

    name: str
    now: float
    then: float

    @property
    def change(self) -> float:
        return round(self.now - self.then, 2)


@dataclass(frozen=True)
class ExecutiveSummary:
    """What the summary shows for ``filters``; money in ``money``'s currency."""

    filters: Filters
    kpis: dict[str, Any]
    #: ``month`` (YYYY-MM), ``revenue``, ``last_year`` (the same month a year earlier), ``partial``.
    trend: pd.DataFrame
    #: "Regions", "Categories", "Products" -> (rising most, falling most).
    movers: dict[str, tuple[list[Mover], list[Mover]]]
    #: Title, finding and projected net effect of the top recommendations.
    recommendations: list[dict[str, Any]]
    last_order: date | None
    loaded_at: str | None
    money: MoneyFormat
    made_at: datetime

    @property
    def compared_with(self) -> str:
        return COMPARISONS[self.filters.compare]

    @property
    def comparison_span(self) -> dict[str, date] | None:
        return self.kpis["same_period_last_year" if self.filters.compare == "last-year" else "previous_period"]

    @property
    def title(self) -> str:
        """"Last 7 days, 2024-03-04 to 2024-03-10 · North, South" (the scope when a user has one)."""
        period = self.kpis["period"]
        name = PERIODS.get(self.filters.period or "", "")
        span = span_text(period["start"], period["end"]) if period["start"] else "all time"
        chosen = [*self.filters.regions, *self.filters.segments, *self.filters.categories, *self.filters.products]
        scope = [f"regions {', '.join(self.filters.scope)}"] if self.filters.scope and not self.filters.regions else []
        return ", ".join(filter(None, [name, span])) + (f" · {', '.join([*chosen, *scope])}" if chosen or scope else "")

    def cards(self) -> list[dict[str, Any]]:
        """Each KPI card: label, value in words, and its change against each comparison (None: nothing to compare)."""
        def written(kind: str, value: float) -> str:
            return self.money(value) if kind == "money" else f"{int(value):,}"

        return [{"label": label, "value": written(kind, self.kpis[key]["value"]),
                 "previous": self.kpis[key]["change"], "last_year": self.kpis[key]["change_last_year"]}
                for key, label, kind in CARDS]


def executive_summary(filters: Filters) -> ExecutiveSummary:
    """The summary for ``filters`` (within their scope), from the same cached answers as the pages and the API.
    Needs the app's context (configuration, database, cache)."""
    kpis = service.run("kpis", filters)
    period, compared = kpis["period"], kpis["same_period_last_year" if filters.compare == "last-year"
                                              else "previous_period"]
    movers: dict[str, tuple[list[Mover], list[Mover]]] = {}
    if compared and period["start"]:
        then = replace(filters, period=None, start=compared["start"], end=compared["end"])
        now = replace(filters, period=None, start=period["start"], end=period["through"])
        movers = {"Regions": _movers(_revenue_by(service.run("regions", now), "region"),
                                     _revenue_by(service.run("regions", then), "region"))}
        products_now, products_then = service.run("products", now), service.run("products", then)
        movers["Categories"] = _movers(_revenue_by(products_now["categories"], "category"),
                                       _revenue_by(products_then["categories"], "category"))
        movers["Products"] = _movers(_revenue_by(products_now["products"], "product"),
                                     _revenue_by(products_then["products"], "product"))
    with current_engine().connect() as conn:
        meta = read_meta(conn)
    return ExecutiveSummary(filters=filters, kpis=kpis, trend=_trend(filters, period), movers=movers,
                            recommendations=_top_recommendations(filters), last_order=service.data_dates()[1],
                            loaded_at=meta.get("loaded_at") or None, money=service.money_format(),
                            made_at=datetime.now(UTC))


def _revenue_by(frame: pd.DataFrame, key: str) -> pd.Series:
    return frame.set_index(key)["revenue"].astype(float) if len(frame) else pd.Series(dtype=float)


def _movers(now: pd.Series, then: pd.Series) -> tuple[list[Mover], list[Mover]]:
    """Those whose net revenue rose most and fell most from ``then`` to ``now`` (absent in one: 0 there)."""
    both = pd.concat([now.rename("now"), then.rename("then")], axis=1).fillna(0.0)
    both["change"] = (both["now"] - both["then"]).round(2)
    rows = [Mover(str(name), float(row.now), float(row.then)) for name, row in both.iterrows()]
    rising = sorted((m for m in rows if m.change > 0), key=lambda m: (-m.change, m.name))
    falling = sorted((m for m in rows if m.change < 0), key=lambda m: (m.change, m.name))
    return rising[:MOVERS_SHOWN], falling[:MOVERS_SHOWN]


def _trend(filters: Filters, period: dict[str, Any]) -> pd.DataFrame:
    """Monthly net revenue of the 12 months through the period's end, and a year earlier."""
    through = period["through"] or service.data_dates()[1]
    if through is None:
        return pd.DataFrame(columns=["month", "revenue", "last_year", "partial"])
    first = (pd.Period(through, freq="M") - (TREND_MONTHS - 1)).start_time.date()
    span = replace(filters, period=None, start=first, end=through)
    monthly = service.run("trend", span)["monthly"][["month", "revenue", "partial"]]
    months = pd.period_range(first, through, freq="M").strftime("%Y-%m")
    monthly = monthly.set_index("month").reindex(months).rename_axis("month").reset_index()
    monthly["revenue"] = monthly["revenue"].fillna(0.0)
    monthly["partial"] = monthly["partial"].eq(True)  # a month with no orders is none in part
    earlier = service.trend_a_year_earlier(span).set_index("month")["revenue"]
    monthly["last_year"] = monthly["month"].map(earlier)
    return monthly


def _top_recommendations(filters: Filters) -> list[dict[str, Any]]:
    answer = service.run("recommendations", filters)
    available = [entry for entry in answer.values()
                 if entry["available"] and entry["projection"] and entry["projection"]["net"] > 0]
    available.sort(key=lambda entry: -float(entry["projection"]["net"]))
    return [{"title": TITLES[entry["name"]], "finding": entry["finding"], "net": float(entry["projection"]["net"])}
            for entry in available[:RECOMMENDATIONS_SHOWN]]


_templates = Environment(loader=PackageLoader("bi_app", "templates"), autoescape=select_autoescape(["html"]),
                         trim_blocks=True, lstrip_blocks=True)


def summary_html(summary: ExecutiveSummary, link: str | None = None) -> str:
    """The summary as one self-contained HTML page (``link``: where the dashboard shows this view)."""
    return _templates.get_template("summary.html").render(s=summary, link=link, chart=trend_svg(summary),
                                                          percent=_percent, movers=summary.movers)


def summary_text(summary: ExecutiveSummary, link: str | None = None) -> str:
    """The summary as plain text (an email's text part)."""
    return _templates.get_template("summary.txt").render(s=summary, link=link, percent=_percent,
                                                         movers=summary.movers)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1%}".replace("-", "−")


def trend_svg(summary: ExecutiveSummary, width: int = 680, height: int = 170) -> str:
    """The trend as an inline SVG: a bar per month (a partial month paler), the same month a year earlier as a
    line, the months under the bars and the largest value on the axis."""
    trend = summary.trend
    if trend.empty or not (trend["revenue"].abs().sum() or trend["last_year"].fillna(0).abs().sum()):
        return ""
    top = max(float(trend["revenue"].max()), float(trend["last_year"].max() if trend["last_year"].notna().any()
                                                    else 0.0), 0.01)
    left, plot_height = 64, height - 34
    step = (width - left - 8) / len(trend)

    def y(value: float) -> float:
        return 6 + plot_height - max(value, 0.0) / top * plot_height

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="Net revenue per month, and a year earlier" style="font:10px sans-serif">',
             f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - 4}" y2="{y(0):.1f}" stroke="#999"/>',
             f'<text x="{left - 4}" y="{y(top) + 4:.1f}" text-anchor="end" fill="#555">'
             f'{_escape(summary.money(top, whole=True))}</text>',
             f'<text x="{left - 4}" y="{y(0):.1f}" text-anchor="end" fill="#555">0</text>']
    points = []
    for index, row in enumerate(trend.itertuples(index=False)):
        x = left + index * step
        revenue = float(row.revenue)
        parts.append(f'<rect x="{x + step * 0.15:.1f}" y="{y(revenue):.1f}" width="{step * 0.7:.1f}" '
                     f'height="{y(0) - y(revenue):.1f}" fill="{"#9ec5e8" if row.partial else "#1f6fb4"}">'
                     f'<title>{row.month}: {_escape(summary.money(revenue))}</title></rect>')
        parts.append(f'<text x="{x + step / 2:.1f}" y="{height - 8}" text-anchor="middle" fill="#555">'
                     f'{pd.Period(row.month, freq="M").strftime("%b %y")}</text>')
        if pd.notna(row.last_year):
            points.append(f"{x + step / 2:.1f},{y(float(row.last_year)):.1f}")
    if len(points) > 1:
        parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="#e07b00" stroke-width="2"/>')
    parts.append("</svg>")
    return "".join(parts)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def dashboard_link(filters: Filters, base: str | None) -> str | None:
    """The Overview's address for ``filters`` under ``base`` (``https://bi.example.com``); None without a base."""
    if not base:
        return None
    query = urlencode(filters.to_query())
    return f"{base.rstrip('/')}/{'?' + query if query else ''}"


def browser_path() -> str:
    """The Chromium (or Chrome) that prints summaries: ``BI_BROWSER``, else the first found on the PATH;
    :class:`SummaryError` when there is none."""
    configured = current_config().browser
    found = configured or next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome",
                                                                "google-chrome-stable"))), None)
    if not found:
        raise SummaryError("no browser to print the summary with: install Chromium, or set BI_BROWSER to it")
    return found


def summary_pdf(html: str, out: Path) -> None:
    """Print ``html`` to the PDF ``out`` with headless Chromium (A4, as the page's own style says); the file is
    written whole or not at all. :class:`SummaryError` when the browser is missing or fails."""
    browser = browser_path()
    with tempfile.TemporaryDirectory(prefix="bi-summary-") as folder:
        page, printed = Path(folder) / "summary.html", Path(folder) / "summary.pdf"
        page.write_text(html, encoding="utf-8")
        # The page is our own, holds no script and fetches nothing; Chromium's own sandbox needs user
        # namespaces that the service's sandbox (deploy/bi-app.service) does not grant.
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions",
                   "--no-first-run", "--disable-background-networking", "--disable-sync",
                   "--disable-dev-shm-usage", f"--user-data-dir={Path(folder) / 'profile'}",
                   "--no-pdf-header-footer", f"--print-to-pdf={printed}", page.as_uri()]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=PRINT_TIMEOUT_S,
                                  env={**os.environ, "HOME": folder}, check=False)
        except subprocess.TimeoutExpired:
            raise SummaryError(f"the browser did not print the summary within {PRINT_TIMEOUT_S} s") from None
        except OSError as exc:
            raise SummaryError(f"the browser {browser} could not be started: {exc.strerror or exc}") from None
        if not printed.is_file() or printed.stat().st_size == 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
            raise SummaryError(f"the browser did not print the summary ({detail[0][:200]})")
        partial = out.with_name(out.name + ".part")
        shutil.copyfile(printed, partial)
        partial.replace(out)
