"""CPU a page's callback takes when its answers are cached, with and without the kept rendering, in one run.

The app in this process (Flask's test client, so no network or other process is measured) on the demo
orders in PostgreSQL (the schema of bench/api_latency.py), the result cache in Redis and warm. For the
overview, segments and regions callbacks: this process's CPU time per request, the page's kept rendering
(``service.rendered_view``) on and off, alternating, three rounds of 30 requests each; then where the time
goes without it (cProfile, the largest cumulative entries of our code and plotly's).

    .venv/bin/python bench/callback_cpu.py [--orders 1000000] [--no-write]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.api_latency import REDIS_URL, ensure_loaded, schema_url  # noqa: E402
from bench.report import cpu_check, write_section  # noqa: E402
from tests.support import callback_body  # noqa: E402

PAGES = {"overview": "overview-kpis.children", "segments": "segments-content.children",
         "regions": "regions-content.children"}
SEARCH = "?region=North&period=last-90-days"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    admin_url = os.environ.get("BI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    _schema, url = schema_url(admin_url, args.orders)
    ensure_loaded(admin_url, url, args.orders)
    os.environ.update(BI_DATABASE_URL=url, BI_CACHE_URL=REDIS_URL, BI_LOG_LEVEL="WARNING")
    os.environ.pop("BI_SECRET_KEY", None)
    from bi_app import service
    from bi_app.app import create_app

    cpu = cpu_check()
    app = create_app()
    client = app.server.test_client()
    client.get("/", headers={"Accept": "text/html"})
    dependencies = client.get("/_dash-dependencies").get_json()
    cookie = client.get_cookie("_csrf_token")
    headers = {"X-CSRFToken": cookie.value if cookie else "", "Accept-Encoding": "gzip, br"}
    kept = service.rendered_view

    def drawn_each_time(_name, _filters, render, *_depends_on):  # noqa: ANN001, ANN202
        return render()

    def cpu_ms(body: dict) -> float:
        client.post("/_dash-update-component", json=body, headers=headers)  # answers (and rendering) cached
        started = time.process_time()
        for _ in range(args.requests):
            assert client.post("/_dash-update-component", json=body, headers=headers).status_code == 200
        return (time.process_time() - started) / args.requests * 1000

    rows, profile_text = [], ""
    for page, output in PAGES.items():
        dependency = next(d for d in dependencies if output in d["output"])
        body = callback_body(dependency, {"url.search": SEARCH, "db-status.data": "ok"})
        times: dict[str, list[float]] = {"kept": [], "drawn": []}
        for _ in range(3):
            service.rendered_view = kept
            times["kept"].append(cpu_ms(body))
            service.rendered_view = drawn_each_time
            times["drawn"].append(cpu_ms(body))
        if page == "overview":
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.requests):
                client.post("/_dash-update-component", json=body, headers=headers)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(r"bi_app|pages|plotly|_callback", 12)
            profile_text = out.getvalue()
        service.rendered_view = kept
        kept_ms, drawn_ms = statistics.median(times["kept"]), statistics.median(times["drawn"])
        rows.append(f"| {page} | {drawn_ms:.1f} | {kept_ms:.1f} | {kept_ms / drawn_ms:.2f}x |")
        print(rows[-1], flush=True)
    body_text = "\n".join([
        f"{args.orders:,} demo orders in PostgreSQL, Redis cache warm, the filter `{SEARCH}`; this process's CPU per "
        f"callback request (median of 3 rounds of {args.requests}, the two variants alternating). CPU check {cpu:.2f} s.",
        "",
        "| page | drawn each time (ms CPU) | rendering kept (ms CPU) | kept / drawn |",
        "|---|---|---|---|",
        *rows,
        "",
        "Where a cached overview callback's time went when drawn each time (cProfile, cumulative):",
        "",
        "```",
        *[line.rstrip() for line in profile_text.strip().splitlines()[-16:]],
        "```",
    ]) + "\n"
    print(body_text)
    if not args.no_write:
        write_section("A cached page's CPU per callback, rendering kept or drawn", "python bench/callback_cpu.py",
                      body_text)


if __name__ == "__main__":
    main()
