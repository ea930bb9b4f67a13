"""Import rate of `bi-app import` into PostgreSQL: a CSV of demo order lines, timed end to end.

Writes a CSV of N demo orders (the columns a shop export would have, under
their own names: InvoiceNo, InvoiceDate, ...), then runs the real CLI
(`--mode replace --no-train`) in a schema of its own and reports lines per
second of the whole command (start-up, reading, validation, the load's
transaction and the summary rebuild), and of its phases as the CLI prints them.

    .venv/bin/python bench/import_rate.py [--lines 1000000]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.api_latency import BI_APP  # noqa: E402
from bench.report import write_section  # noqa: E402
from data_layer.demo_data import generate_orders_frame  # noqa: E402

SCHEMA = "bench_import"
SHOP_NAMES = {"order_id": "InvoiceNo", "order_date": "InvoiceDate", "product": "Description",
              "quantity": "Quantity", "unit_price": "UnitPrice", "customer_id": "CustomerID", "region": "Country",
              "category": "Category", "total_amount": "Total"}
TARGET = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/bi-bench-import"))
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    path = args.folder / f"shop-{args.lines}.csv"
    if not path.exists():
        print(f"writing {args.lines:,} lines to {path} ...")
        frame = generate_orders_frame(args.lines, seed=7)[list(SHOP_NAMES)].rename(columns=SHOP_NAMES)
        frame.to_csv(path, index=False)
    subprocess.run(["psql", args.postgres, "-qc", f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}"],
                   check=True)
    url = f"{args.postgres}?options={quote(f'-csearch_path={SCHEMA}')}"
    started = time.perf_counter()
    done = subprocess.run([BI_APP, "import", str(path), "--mode", "replace", "--no-train",
                           "--report-dir", str(args.folder)],
                          env={"BI_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(done.stdout + done.stderr)
    printed = done.stdout
    read_seconds = float(re.search(r"^Read .* in ([\d.]+) s$", printed, re.M).group(1))
    validate_seconds = float(re.search(r"^Validation: .*; ([\d.]+) s$", printed, re.M).group(1))
    load_seconds = float(re.search(r"^Loaded .*? in ([\d.]+) s;", printed, re.M).group(1))
    summary_seconds = float(re.search(r"summary tables rebuilt in ([\d.]+) s", printed).group(1))
    rest = wall - read_seconds - validate_seconds - load_seconds - summary_seconds
    rate = args.lines / wall
    lines = [
        f"{args.lines:,} lines ({path.stat().st_size / 1e6:.0f} MB CSV, 9 columns under a shop's own names, "
        "mapped automatically), `bi-app import --mode replace --no-train` into PostgreSQL.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| whole command, wall | {wall:.1f} s |",
        f"| lines per second, whole command | {rate:,.0f} |",
        f"| reading the file | {read_seconds:.1f} s |",
        f"| mapping and validation | {validate_seconds:.1f} s |",
        f"| the load's transaction (COPY, key and indexes, quality check) | {load_seconds:.1f} s |",
        f"| summary table rebuild | {summary_seconds:.1f} s |",
        f"| the rest (interpreter start-up and imports, report, conversion for the load) | {rest:.1f} s |",
        "",
        f"Target {TARGET:,} lines/s: {'met' if rate >= TARGET else 'missed'}.",
    ]
    print("\n".join(lines))
    write_section("Importing a CSV (PostgreSQL)", f"python bench/import_rate.py --lines {args.lines}",
                  "\n".join(lines) + "\n")
    print("written to docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
