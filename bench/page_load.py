"""Overview page in headless Chromium: time to fully rendered (cold, warm) and to re-render after a filter change.

For each size the demo orders sit in a PostgreSQL schema of their own (loaded
once, as by bench/api_latency.py); the real server (`bi-app serve`, Redis cache)
is started and its columnar snapshot awaited. "Fully rendered" means the five
KPI cards and all five charts drawn and no Dash callback pending.

- cold: a new browser profile (empty HTTP cache) and the server's Redis cache flushed;
- warm: the same page reloaded in a browser that has it cached, server cache warm;
- filter change: pick a region in the filter bar (server cache flushed first) until
  the page has re-rendered with the new figures. A single region is one of the
  views the snapshot holds precomputed (no filter, each region, each segment);
- filter change, computed: the same pick on a page already filtered by a segment,
  a combination nobody precomputed, so every figure is computed on request;
- grid on scroll: the transactions grid is below the fold and made when it comes
  into view: from scrolling to it until its first rows are drawn.

The server has sign-in on (``BI_SECRET_KEY``), and each new browser profile signs in (an analyst) before
anything is timed, as a user of a deployment does (``--demo-mode`` measures without sign-in instead).

With ``--foreign SIZES`` the same is measured, in the same run, on a table loaded by
another tool: the seed's DDL and indexes, its 20 columns filled with plain ``COPY``
(the same demo orders), never touched by ``bi-app``; the app reads it as it is.

    .venv/bin/python bench/page_load.py [--sizes 2000,1000000,10000000] [--runs 5] [--foreign 1000000] [--demo-mode]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

import psycopg2
import pyarrow.csv as pa_csv
import redis
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.api_latency import (  # noqa: E402
    BENCH_PASSWORD,
    BENCH_USER,
    REDIS_URL,
    Server,
    ensure_loaded,
    pct,
    schema_url,
)
from bench.report import write_section  # noqa: E402
from data_layer.demo_data import SEGMENTS, generate_orders  # noqa: E402
from data_layer.schema import SEED_COLUMNS  # noqa: E402
from tests.test_seed_compat import SEED_DDL, SEED_INDEXES  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
GRAPHS = ["overview-trend", "overview-segments", "overview-products", "overview-regions", "overview-distribution"]
RENDERED = """() => {
    const store = window.dash_stores && window.dash_stores[0];
    if (!store) return false;
    const c = store.getState().callbacks;
    const idle = ['requested', 'prioritized', 'blocked', 'executing', 'watched', 'executed', 'stored']
        .every(k => (c[k] || []).length === 0);
    const kpis = document.querySelectorAll('#overview-kpis .kpi-value').length === 5;
    const graphs = %s.every(id => {
        const plot = document.getElementById(id)?.querySelector('.js-plotly-plot');
        // drawn: its traces, or the note that replaces a one-group breakdown
        return plot && plot._fullData && (plot._fullData.length > 0 || (plot._fullLayout.annotations || []).length > 0);
    });
    return idle && kpis && graphs;
}""" % GRAPHS
TARGETS = {1_000_000: {"cold": 2.0, "warm": 1.0, "filter": 0.5, "computed": 0.5}}
#: A table loaded by another tool should be read within this factor of the same rows loaded by us.
FOREIGN_RATIO = 1.2
REGIONS = ["North", "East", "South", "West"]
SEGMENT = next(iter(SEGMENTS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,1000000,10000000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--foreign", default="", help="sizes to measure also on a table loaded by plain COPY")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--demo-mode", action="store_true", help="measure without sign-in (no BI_SECRET_KEY)")
    parser.add_argument("--compare-demo", action="store_true",
                        help="also measure each size in demo mode, in the same run, and report signed-in / demo ratios")
    args = parser.parse_args()
    cache = redis.Redis.from_url(REDIS_URL)
    sections = []
    from_calls: list[tuple[int, bool, list[list[float]]]] = []
    demo_ratios: list[tuple[int, dict[str, float], list[list[float]]]] = []
    runs = [(int(s), False) for s in args.sizes.split(",") if s] + [(int(s), True) for s in args.foreign.split(",") if s]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for size, foreign in runs:
            schema, url = schema_url(args.postgres, size, "bench_seed" if foreign else "bench_api")
            if foreign:
                load_by_copy(args.postgres, schema, size)
            else:
                ensure_loaded(args.postgres, url, size)
            compare = args.compare_demo and not foreign and not args.demo_mode
            with Server(url, sign_in=not args.demo_mode) as server, \
                    (Server(url) if compare else contextlib.nullcontext()) as demo_server:
                base = f"http://127.0.0.1:{server.port}"
                if compare:  # run by run, in turn, so both modes see the same machine
                    signed_runs, demo_runs = [], []
                    for _ in range(args.runs):
                        signed_runs.append(measure(browser, base, cache, 1))
                        demo_runs.append(measure(browser, f"http://127.0.0.1:{demo_server.port}", cache, 1))
                    cold, warm, change, computed, grid = ([v for run in signed_runs for v in run[i]] for i in range(5))
                    weight = signed_runs[0][5]
                    calls = [[v for run in signed_runs for v in run[6][i]] for i in range(2)]
                    demo = [[v for run in demo_runs for v in run[i]] for i in range(4)]
                    ratios = {kind: statistics.median(a) / statistics.median(b) for kind, a, b in
                              zip(("cold", "warm", "filter", "computed"), (cold, warm, change, computed), demo)}
                    demo_ratios.append((size, ratios, demo))
                else:
                    cold, warm, change, computed, grid, weight, calls = measure(browser, base, cache, args.runs)
            print(f"{size:>10,}{' (COPY)' if foreign else ''}: cold p50 {pct(cold, 50):.2f}s p95 {pct(cold, 95):.2f}s | warm p50 {pct(warm, 50):.2f}s "
                  f"p95 {pct(warm, 95):.2f}s | filter p50 {pct(change, 50):.2f}s p95 {pct(change, 95):.2f}s | "
                  f"computed p50 {pct(computed, 50):.2f}s p95 {pct(computed, 95):.2f}s | "
                  f"grid on scroll p50 {pct(grid, 50):.2f}s p95 {pct(grid, 95):.2f}s | "
                  f"{weight['transferred'] / 1e6:.2f} MB transferred ({weight['decoded'] / 1e6:.2f} MB decoded)")
            sections.append((size, foreign, cold, warm, change, computed, grid, weight))
            from_calls.append((size, foreign, calls))
            if compare:
                print(f"{size:>10,} signed in / demo mode (p50): "
                      + ", ".join(f"{kind} {ratio:.2f}x" for kind, ratio in demo_ratios[-1][1].items()))
        browser.close()
    command = f"python bench/page_load.py --sizes {args.sizes} --runs {args.runs}" + (
        " --demo-mode" if args.demo_mode else "") + (" --compare-demo" if args.compare_demo else "")
    text = report(sections, args.runs, not args.demo_mode)
    if demo_ratios:
        text += ("\n\nSigned in against demo mode (no sign-in): a server of each on the same data, measured run by run "
                 "in turn. " + "; ".join(
                     f"{size:,}: demo mode p95 cold {pct(demo[0], 95):.2f} s, warm {pct(demo[1], 95):.2f} s, filter "
                     f"{pct(demo[2], 95):.2f} s, computed {pct(demo[3], 95):.2f} s; signed in / demo (p50) "
                     + ", ".join(f"{kind} {ratio:.2f}x" for kind, ratio in ratios.items())
                     for size, ratios, demo in demo_ratios) + ".")
    text += ("\n\nThe filter changes timed as before 2026-11-30, from Playwright's click call (which first waits for "
             "the option to hold still; the page's click event comes some 40-55 ms later): " + "; ".join(
                 f"{size:,}{' (COPY)' if foreign else ''}: filter p50 {pct(calls[0], 50):.2f} s, p95 "
                 f"{pct(calls[0], 95):.2f} s; computed p50 {pct(calls[1], 50):.2f} s, p95 {pct(calls[1], 95):.2f} s"
                 for size, foreign, calls in from_calls) + ".")
    write_section("Overview page in headless Chromium (PostgreSQL)",
                  command + (f" --foreign {args.foreign}" if args.foreign else ""), text)


def load_by_copy(admin_url: str, schema: str, size: int) -> None:
    """``size`` demo orders in ``schema`` as another tool would leave them: the seed's DDL and indexes, its 20
    columns filled by plain COPY, ANALYZE; no table or row of ours. Re-made on every run (the app's own
    tables from an earlier run would make it no longer foreign)."""
    print(f"loading {size:,} demo orders into {schema} by plain COPY ...")
    with psycopg2.connect(admin_url) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path = {schema}")
        cursor.execute(SEED_DDL)
        for table in generate_orders(size):
            chunk = io.BytesIO()
            pa_csv.write_csv(table.select(list(SEED_COLUMNS)), chunk, pa_csv.WriteOptions(include_header=False))
            chunk.seek(0)
            cursor.copy_expert(f"COPY advanced_sales_data ({', '.join(SEED_COLUMNS)}) FROM STDIN (FORMAT csv)", chunk)
        for statement in SEED_INDEXES:
            cursor.execute(statement)
        cursor.execute("ANALYZE advanced_sales_data")


def measure(browser, base: str, cache: redis.Redis, runs: int):  # noqa: ANN001, ANN201
    cold, warm, change, computed, grid = [], [], [], [], []
    calls: list[list[float]] = [[], []]  # filter, computed: timed from Playwright's click call
    weight: dict[str, float] = {}
    for run in range(runs):
        context, page, seconds = open_cold(browser, base, cache)
        cold.append(seconds)
        if run == 0:
            weight = page.evaluate("""() => {
                const entries = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')];
                return {transferred: entries.reduce((s, e) => s + (e.transferSize || 0), 0),
                        decoded: entries.reduce((s, e) => s + (e.decodedBodySize || 0), 0)};
            }""")
        warm.append(reload_warm(page))
        grid.append(scroll_to_grid(page))

        region = REGIONS[run % len(REGIONS)]
        from_click, from_call = pick_region(page, cache, region)
        change.append(from_click)
        calls[0].append(from_call)
        # The same pick on top of a segment filter: a view no snapshot holds, computed on request.
        page.goto(f"{base}/?segment={quote(SEGMENT)}")
        page.wait_for_function(RENDERED, timeout=120_000, polling=20)
        from_click, from_call = pick_region(page, cache, region)
        computed.append(from_click)
        calls[1].append(from_call)
        context.close()
    return cold, warm, change, computed, grid, weight, calls


def open_cold(browser, base: str, cache: redis.Redis):  # noqa: ANN001, ANN201
    """The overview in a new browser profile with the server cache flushed: (context, page, seconds to rendered)."""
    cache.flushdb()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    sign_in(context, base)
    page = context.new_page()
    started = time.perf_counter()
    page.goto(base + "/")
    page.wait_for_function(RENDERED, timeout=120_000, polling=20)
    return context, page, time.perf_counter() - started


def sign_in(context, base: str) -> None:  # noqa: ANN001
    """Sign the browser profile in (when the server asks for it), without loading any page of the app: its
    HTTP cache stays empty."""
    form = context.request.get(f"{base}/login", max_redirects=0)
    if form.status != 200:  # demo mode: /login sends to the overview
        return
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text()).group(1)
    answer = context.request.post(f"{base}/login", max_redirects=0, form={
        "csrf_token": token, "name": BENCH_USER, "password": BENCH_PASSWORD, "next": "/"})
    assert answer.status == 302, answer.text()[:200]


def reload_warm(page) -> float:  # noqa: ANN001
    """Seconds for the page, reloaded with browser and server caches warm, to render again."""
    started = time.perf_counter()
    page.reload()
    page.wait_for_function(RENDERED, timeout=120_000, polling=20)
    return time.perf_counter() - started


def scroll_to_grid(page) -> float:  # noqa: ANN001
    """Seconds from scrolling to the transactions grid (made when it comes into view) to its rows drawn."""
    started = time.perf_counter()
    page.locator("#overview-grid-slot").scroll_into_view_if_needed()
    page.wait_for_function(  # rows are drawn empty until their block arrives
        "() => document.querySelector(\"#overview-grid .ag-row [col-id='order_id']\")?.innerText.trim()",
        timeout=120_000, polling=20)
    seconds = time.perf_counter() - started
    page.evaluate("window.scrollTo(0, 0)")
    return seconds


def pick_region(page, cache: redis.Redis, region: str) -> tuple[float, float]:  # noqa: ANN001
    """Seconds from choosing ``region`` in the filter bar to the page re-rendered (server cache flushed): timed
    in the page from the click's own event, and, for comparison with runs before 2026-11-30, from Playwright's
    click call (which first waits for the option to hold still: two animation frames and more)."""
    before = page.inner_text("#overview-kpi-revenue")
    cache.flushdb()
    page.click("#filter-region")
    page.locator(".dash-dropdown-search").fill(region)  # the search box opens a moment after the click
    option = page.get_by_role("option", name=region, exact=True)
    option.wait_for()
    page.evaluate("""() => { window.benchClicked = null;
        document.addEventListener('click', event => { window.benchClicked = event.timeStamp; },
                                  {capture: true, once: true}); }""")
    started = time.perf_counter()
    option.click()
    page.wait_for_url(f"**region={region}**", timeout=120_000)
    drawn = page.wait_for_function(
        f"before => document.querySelector('#overview-kpi-revenue')?.innerText !== before && ({RENDERED})() "
        "&& performance.now()",
        arg=before, timeout=120_000, polling=20,
    )
    from_call = time.perf_counter() - started
    return (drawn.json_value() - page.evaluate("window.benchClicked")) / 1000, from_call


def report(sections, runs: int, signed_in: bool) -> str:  # noqa: ANN001
    lines = [
        f"{runs} runs per size; one gunicorn worker, Redis cache, columnar snapshot ready; "
        + ("sign-in on, each new browser profile signed in as an analyst before timing. " if signed_in else
           "demo mode (no sign-in). ") + "Timed from navigation "
        "(or from the click event of a region in the filter bar's list, in the page's clock) "
        "until the five KPI cards and five charts are drawn and no "
        "Dash callback is pending. Cold: new browser profile and server cache flushed; warm: reload with both warm; "
        "filter change: server cache flushed, a region picked in the filter bar (single regions and segments are "
        "precomputed into the snapshot); computed: the same pick on a page filtered by a segment, so nothing is "
        "precomputed or cached and every figure is computed on request. The transactions grid sits below "
        "the fold and is made when it scrolls into view; grid on scroll: from scrolling to it to its first rows "
        "drawn (after the warm reload).",
        "",
        "| orders | cold p50 | cold p95 | warm p50 | warm p95 | filter change p50 | filter change p95 "
        "| computed change p50 | computed change p95 | grid on scroll p50 | grid on scroll p95 "
        "| page weight at first paint |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts, kinds = [], ("cold", "warm", "filter", "computed")
    measured: dict[tuple[int, bool], list[list[float]]] = {}
    for size, foreign, cold, warm, change, computed, grid, weight in sections:
        measured[(size, foreign)] = [cold, warm, change, computed]
        lines.append(
            f"| {size:,}{' (plain COPY, read as it is)' if foreign else ''} | {pct(cold, 50):.2f} s | "
            f"{pct(cold, 95):.2f} s | {pct(warm, 50):.2f} s | "
            f"{pct(warm, 95):.2f} s | {pct(change, 50):.2f} s | {pct(change, 95):.2f} s | "
            f"{pct(computed, 50):.2f} s | {pct(computed, 95):.2f} s | {pct(grid, 50):.2f} s | {pct(grid, 95):.2f} s | "
            f"{weight['transferred'] / 1e6:.2f} MB sent ({weight['decoded'] / 1e6:.2f} MB unpacked) |"
        )
        for kind, values in zip(kinds, measured[(size, foreign)]):
            target = TARGETS.get(size, {}).get(kind)
            if target is not None:
                p95 = pct(values, 95)
                verdicts.append(f"{kind} at {size:,}{' (COPY)' if foreign else ''}: p95 {p95:.2f} s against "
                                f"{target:.1f} s ({'met' if p95 <= target else 'missed'})")
    ratios = []
    for (size, foreign), values in measured.items():
        if foreign and (size, False) in measured:
            ours = measured[(size, False)]
            parts = [f"{kind} {pct(values[i], 50) / pct(ours[i], 50):.2f}x" for i, kind in enumerate(kinds)]
            worst = max(pct(values[i], 50) / pct(ours[i], 50) for i in range(len(kinds)))
            ratios.append(f"at {size:,}, the table loaded by plain COPY against the same orders loaded by bi-app (p50): "
                          f"{', '.join(parts)} ({'within' if worst <= FOREIGN_RATIO else 'beyond'} the "
                          f"{FOREIGN_RATIO}x target)")
    if ratios:
        lines += ["", "Read as it is: " + "; ".join(ratios) + "."]
    lines += ["", "Targets: " + "; ".join(verdicts) + ".",
              f"Median of all runs: {statistics.median([v for s in sections for v in s[2]]):.2f} s cold."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
