"""Import rate of `bi-app import` into PostgreSQL: CSVs of demo order lines, timed end to end.

Writes two CSVs of N demo lines under a shop's own column names (InvoiceNo,
InvoiceDate, ...): one line per order, and orders of five lines each (the
shape of a real shop export, where every order id repeats). Runs the real CLI
(`--mode replace --no-train`) on each in a schema of its own and reports lines
per second of the whole command (start-up, reading, validation, the load's
transaction and the summary rebuild) and the phases as the CLI prints them.

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
from bench.report import publish  # noqa: E402
from data_layer.demo_data import generate_orders_frame  # noqa: E402

SCHEMA = "bench_import"
SHOP_NAMES = {"order_id": "InvoiceNo", "order_date": "InvoiceDate", "product": "Description",
              "quantity": "Quantity", "unit_price": "UnitPrice", "customer_id": "CustomerID", "region": "Country",
              "category": "Category", "total_amount": "Total"}
SHAPES = {"one line per order": 1, "five lines per order": 5}
TARGET = 100_000
PHASES = {  # what the CLI prints -> row of the table
    "reading the file": r"^Read .* in ([\d.]+) s$",
    "mapping and validation": r"^Validation: .*\(checked in ([\d.]+) s\)$",
    "the load's transaction (COPY, key and indexes, quality check, summary)": r"^Loaded .*? in ([\d.]+) s;",
    "summary tables built with the load, from the lines, beside the index builds (part of the row above)":
        r"summary tables built with the load in ([\d.]+) s",
    "summary tables rebuilt after the load, from the table (orders of several lines: the filter values only)":
        r"summary tables rebuilt in ([\d.]+) s",
}
#: Phases that take place inside another one (not counted again in "the rest").
INSIDE = {"summary tables built with the load, from the lines, beside the index builds (part of the row above)"}


def write_csv(path: Path, lines: int, lines_per_order: int) -> None:
    """N demo lines; with several lines per order, consecutive lines share an order's id, date and customer."""
    print(f"writing {lines:,} lines ({lines_per_order} per order) to {path} ...")
    frame = generate_orders_frame(lines, seed=7)
    if lines_per_order > 1:
        order = frame.index // lines_per_order
        frame["order_id"] = "INV-" + order.astype(str).str.zfill(8)
        for name in ("order_date", "customer_id"):
            frame[name] = frame.groupby(order)[name].transform("first")
    frame[list(SHOP_NAMES)].rename(columns=SHOP_NAMES).to_csv(path, index=False)


def time_import(path: Path, postgres: str, folder: Path) -> dict[str, float]:
    """Run `bi-app import` on ``path`` into an empty schema; the wall time and each printed phase."""
    fresh = f"SET client_min_messages = warning; DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}"
    subprocess.run(["psql", postgres, "-qc", fresh], check=True)
    url = f"{postgres}?options={quote(f'-csearch_path={SCHEMA}')}"
    started = time.perf_counter()
    done = subprocess.run([BI_APP, "import", str(path), "--mode", "replace", "--no-train", "--report-dir", str(folder)],
                          env={"BI_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(done.stdout + done.stderr)
    found = {name: re.search(pattern, done.stdout, re.M) for name, pattern in PHASES.items()}
    phases = {name: float(match.group(1)) if match else 0.0 for name, match in found.items()}  # one summary row
    rows_in = int(re.search(r"^([\d,]+) rows in = ", done.stdout, re.M).group(1).replace(",", ""))
    return {"wall": wall, "rows_in": rows_in, **phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/bi-bench-import"))
    parser.add_argument("--repeat", type=int, default=3, help="imports per file; the median run is reported")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    results, all_walls = {}, {}
    for shape, per_order in SHAPES.items():
        path = args.folder / f"shop-{args.lines}-{per_order}-per-order.csv"
        if not path.exists():
            write_csv(path, args.lines, per_order)
        runs = sorted((time_import(path, args.postgres, args.folder) for _ in range(args.repeat)),
                      key=lambda run: run["wall"])
        all_walls[shape] = [run["wall"] for run in runs]
        results[shape] = runs[len(runs) // 2]
    size = path.stat().st_size / 1e6
    rates = {shape: r["rows_in"] / r["wall"] for shape, r in results.items()}
    walls = [r["wall"] for r in results.values()]
    lines = [
        f"{args.lines:,} lines (about {size:.0f} MB of CSV, 9 columns under a shop's own names, mapped "
        "automatically), `bi-app import --mode replace --no-train` into an empty PostgreSQL schema; "
        f"the median of {args.repeat} imports of each file (walls: "
        + "; ".join(f"{shape} {', '.join(f'{w:.1f}' for w in walls)} s" for shape, walls in all_walls.items()) + ").",
        "",
        f"| measure | {' | '.join(SHAPES)} |",
        f"|---|{'---|' * len(SHAPES)}",
        f"| whole command, wall | {' | '.join(f'{wall:.1f} s' for wall in walls)} |",
        f"| lines per second, whole command | {' | '.join(f'{rate:,.0f}' for rate in rates.values())} |",
    ]
    for phase in PHASES:
        lines.append(f"| {phase} | {' | '.join(f'{r[phase]:.1f} s' for r in results.values())} |")
    rest = [r["wall"] - sum(r[p] for p in PHASES if p not in INSIDE) for r in results.values()]
    lines += [
        f"| the rest (interpreter start-up and imports, report, conversion for the load) | "
        f"{' | '.join(f'{x:.1f} s' for x in rest)} |",
        "",
        f"Target {TARGET:,} lines/s: " + "; ".join(
            f"{shape} {'met' if rate >= TARGET else 'missed'}" for shape, rate in rates.items()) + ".",
        "With several lines per order the summary table is not built (it cannot count orders of",
        "several lines; queries read the raw rows): the filter values are listed after the load, from the",
        "table, and identical lines are counted among lines",
        "sharing an order id and product. Every date, number and id column is read by the rules that",
        "decide from all the values (decimal mark, date order, ids written as floats).",
    ]
    publish("Importing a CSV (PostgreSQL)",
            f"python bench/import_rate.py --lines {args.lines} --repeat {args.repeat}", lines)


if __name__ == "__main__":
    main()
