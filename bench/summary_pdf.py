"""The executive summary at 1,000,000 orders in PostgreSQL: gathering its figures, rendering and printing the PDF.

The demo orders are loaded into a schema of their own once (later runs reuse them) and the customer models are
trained (the recommendations need them: a deployment trains after each load). Then, in one process as
`bi-app summary` runs, for the default period and for one region: the whole summary with the result cache
empty (every answer computed) and again with it filled (as a scheduler's second recipient of the same view
finds it), each split into gathering the figures, rendering the HTML and Chromium's print.

    .venv/bin/python bench/summary_pdf.py [--orders 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.api_latency import BI_APP, ensure_loaded, schema_url
from bench.report import cpu_check, write_section

VIEWS = {"default period": {}, "North, last 90 days": {"region": ["North"], "period": ["last-90-days"]}}
TARGET_S = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("BI_BENCH_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    cpu = cpu_check()
    _schema, url = schema_url(args.postgres, args.orders)
    ensure_loaded(args.postgres, url, args.orders)
    folder = Path(tempfile.mkdtemp(prefix="bench-summary-"))
    env = {"BI_DATABASE_URL": url, "BI_DATA_DIR": str(folder / "data"), "BI_LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    trained = subprocess.run([BI_APP, "train"], env={**os.environ}, capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr

    from bi_app import service, summary
    from bi_app.app import create_app
    from bi_app.config import Config
    from bi_app.context import current_cache

    app = create_app(Config.from_env())
    rows = []
    with app.server.test_request_context("/"):
        snapshot = wait_for_snapshot()
        for view, query in VIEWS.items():
            for state in ("cache empty", "cache filled"):
                runs = []
                for run in range(args.runs):
                    if state == "cache empty":
                        current_cache().clear()
                    started = time.perf_counter()
                    filters, _ = service.parse_request(query or {"period": [service.opening_period()]}, scope=())
                    made = summary.executive_summary(filters)
                    gathered = time.perf_counter()
                    page = summary.summary_html(made)
                    rendered = time.perf_counter()
                    summary.summary_pdf(page, folder / f"summary-{run}.pdf")
                    printed = time.perf_counter()
                    runs.append((gathered - started, rendered - gathered, printed - rendered, printed - started))
                    print(view, state, [f"{t:.2f}" for t in runs[-1]], flush=True)
                rows.append((view, state, runs))
    body = report(args.orders, rows, cpu, (folder / "summary-0.pdf").stat().st_size, snapshot)
    print(body)
    if not args.no_write:
        write_section("Executive summary PDF at 1M orders", "python bench/summary_pdf.py", body)


def wait_for_snapshot(limit_s: float = 900) -> float:
    """Seconds until this process's columnar snapshot of the data is ready (a server's steady state)."""
    from bi_app.context import current_engine, current_replica
    from data_layer.meta import data_version

    started = time.perf_counter()
    with current_engine().connect() as conn:
        version = data_version(conn)
    while (replica := current_replica()) is not None and replica.status(version) != "ready":
        replica.engine_for(version)  # starts the build, as a request's first query does
        assert time.perf_counter() - started < limit_s, "the columnar snapshot was not ready in time"
        time.sleep(1)
    return time.perf_counter() - started


def report(orders: int, rows: list, cpu: float, size: int, snapshot: float) -> str:
    lines = [f"{orders:,} demo orders in PostgreSQL, models trained, the columnar snapshot ready (it took "
             f"{snapshot:.0f} s after the start); one process as `bi-app summary` runs it (in-process result "
             f"cache). Median of the runs, seconds. Target: under {TARGET_S:.0f} s. PDF {size / 1024:.0f} kB. "
             f"CPU check {cpu:.2f} s.", "",
             "| view | result cache | figures | HTML | PDF (Chromium) | total | runs (total) |",
             "|---|---|---|---|---|---|---|"]
    for view, state, runs in rows:
        medians = [statistics.median(part) for part in zip(*runs, strict=True)]
        lines.append(f"| {view} | {state} | {medians[0]:.2f} | {medians[1]:.3f} | {medians[2]:.2f} | "
                     f"**{medians[3]:.2f}** | {', '.join(f'{r[3]:.2f}' for r in runs)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
