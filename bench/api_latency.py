"""API latency, uncached and cached, at 1M and 10M orders in PostgreSQL; server memory; CSV export.

For each size the script loads the demo orders into a schema of their own (once;
later runs reuse them), starts the real server (`bi-app serve`, one gunicorn
worker) with a Redis cache, and times every /api/v1 endpoint for the unfiltered
view and for one region in one quarter:

- uncached: the Redis cache is flushed before each request, so the answer is computed;
- cached: the same request again, answered from Redis.

It then streams /export/orders.csv for all orders and records the worker's memory.

    .venv/bin/python bench/api_latency.py [--sizes 1000000,10000000] [--uncached 5] [--cached 30]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.report import write_section  # noqa: E402
from bi_app.service import ANALYSES  # noqa: E402

BI_APP = str(Path(sys.executable).with_name("bi-app"))
REDIS_URL = "redis://127.0.0.1:6379/14"
VIEWS = {
    "all orders": "",
    # The same orders under a filter that is not precomputed: what computing the default view costs.
    "all orders, computed": "start=2000-01-01",
    "North, Q4 2024": "region=North&start=2024-10-01&end=2024-12-31",
}
TARGETS_MS = {1_000_000: 150, 10_000_000: 500}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--uncached", type=int, default=5, help="uncached requests per endpoint and view")
    parser.add_argument("--cached", type=int, default=30, help="cached requests per endpoint and view")
    parser.add_argument("--postgres", default=os.environ.get("BI_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--skip-export", action="store_true")
    args = parser.parse_args()
    cache = redis.Redis.from_url(REDIS_URL)

    sections = []
    for size in [int(s) for s in args.sizes.split(",")]:
        _schema, url = schema_url(args.postgres, size)
        ensure_loaded(args.postgres, url, size)
        with Server(url) as server:
            rows = []
            for endpoint in ANALYSES:
                for view, query in VIEWS.items():
                    path = f"/api/v1/{endpoint}?{query}"
                    uncached = []
                    for _ in range(args.uncached):
                        cache.flushdb()
                        uncached.append(server.time(path))
                    server.time(path)
                    cached = [server.time(path) for _ in range(args.cached)]
                    rows.append((endpoint, view, uncached, cached))
                    print(f"{size:>10,} {endpoint:<13} {view:<15} uncached p50 {pct(uncached, 50):7.0f} ms "
                          f"p95 {pct(uncached, 95):7.0f} ms | cached p50 {pct(cached, 50):5.1f} ms p95 {pct(cached, 95):5.1f} ms")
            rss_after_api = server.memory()
            rss_after_api["snapshot"] = server.snapshot_seconds
            export = None if args.skip_export else server.export_csv()
            rss_after_export = server.memory()
        sections.append(report(size, rows, rss_after_api, export, rss_after_export, args))
    write_section(
        "API latency at 1M and 10M orders (PostgreSQL)",
        f"python bench/api_latency.py --sizes {args.sizes} --uncached {args.uncached} --cached {args.cached}",
        "\n".join(sections),
    )


def pct(values: list[float], q: int) -> float:
    """Percentile with linear interpolation (statistics' 'inclusive' method)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(size, rows, rss_api, export, rss_export, args) -> str:  # noqa: ANN001
    target = TARGETS_MS.get(size)
    lines = [
        f"### {size:,} orders\n",
        f"Server: `bi-app serve`, 1 gunicorn worker (8 threads), Redis cache, columnar snapshot ready; {args.uncached} uncached "
        f"(cache flushed before each) and {args.cached} cached requests per row, sequential, over loopback.",
        f"Targets on this machine: uncached p95 <= {target} ms, cached p95 <= 10 ms.",
        "The answers for *all orders* are computed when the server builds its columnar snapshot of a "
        "data version and stored in it, so an uncached request for that view reads them; *all orders, "
        "computed* asks for the same orders with a filter (`start=2000-01-01`) that is computed on "
        "each uncached request, to show what that costs.\n",
        "| endpoint | view | uncached p50 | uncached p95 | cached p50 | cached p95 |",
        "|---|---|---|---|---|---|",
    ]
    misses, cached_misses = [], []
    for endpoint, view, uncached, cached in rows:
        p95 = pct(uncached, 95)
        mark = "" if target is None or p95 <= target else " ✗"
        if mark:
            misses.append(f"{endpoint} ({view})")
        if pct(cached, 95) > 10:
            cached_misses.append(f"{endpoint} ({view})")
        lines.append(f"| {endpoint} | {view} | {pct(uncached, 50):,.0f} ms | {p95:,.0f} ms{mark} | "
                     f"{pct(cached, 50):.1f} ms | {pct(cached, 95):.1f} ms |")
    lines.append("")
    lines.append(f"Uncached p95 over the target (✗): {', '.join(misses) if misses else 'none'}.")
    lines.append(f"Cached p95 over 10 ms: {', '.join(cached_misses) if cached_misses else 'none'}.")
    lines.append(f"Worker memory after the API requests: {rss_api['rss']:,.0f} MB RSS (peak {rss_api['peak']:,.0f} MB).")
    lines.append(f"The server built its columnar snapshot of the data in {rss_api['snapshot']:.1f} s after start "
                 "(it answers from the database meanwhile); the timings above are with the snapshot ready.")
    if export:
        lines.append(
            f"`/export/orders.csv` of all {size:,} orders: {export['mb']:,.0f} MB in {export['seconds']:.1f} s "
            f"({export['mb'] / export['seconds']:,.0f} MB/s); worker peak memory after it "
            f"{rss_export['peak']:,.0f} MB (RSS {rss_export['rss']:,.0f} MB): streamed, not held."
        )
    return "\n".join(lines) + "\n"


def schema_url(admin_url: str, size: int, prefix: str = "bench_api") -> tuple[str, str]:
    """The schema for ``size`` orders (``bench_api_1m``, ``bench_api_2k``) and ``admin_url`` set to use it."""
    schema = f"{prefix}_{size // 1_000_000}m" if size >= 1_000_000 else f"{prefix}_{size // 1000}k"
    return schema, f"{admin_url}?options={quote(f'-csearch_path={schema}')}"


def ensure_loaded(admin_url: str, url: str, size: int) -> None:
    """Load ``size`` demo orders into the schema of ``url`` unless they are there with a current summary."""
    schema = url.split("search_path%3D")[-1] if "%3D" in url else url.split("search_path=")[-1]
    subprocess.run(["psql", admin_url, "-qc", f"CREATE SCHEMA IF NOT EXISTS {schema}"], check=True)
    info = subprocess.run([BI_APP, "info"], env={**os.environ, "BI_DATABASE_URL": url}, capture_output=True, text=True)
    if f"advanced_sales_data: {size:,} rows" in info.stdout and "bi_daily:" in info.stdout and "(absent)" not in info.stdout:
        return
    print(f"loading {size:,} demo orders into {schema} ...")
    subprocess.run([BI_APP, "demo-data", "--rows", str(size), "--replace", "--no-train"],
                   env={**os.environ, "BI_DATABASE_URL": url}, check=True, stdout=subprocess.DEVNULL)


#: The user a benchmark signs in as, when the server has sign-in on (its password made for this run).
BENCH_USER = "bench"
BENCH_PASSWORD = secrets.token_urlsafe(18)


class Server:
    """`bi-app serve` in a subprocess on a free port."""

    def __init__(self, url: str, *, sign_in: bool = False) -> None:
        """With ``sign_in``, sign-in is on (a secret key of this run) and :data:`BENCH_USER` may sign in."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.env = {**os.environ, "BI_DATABASE_URL": url, "BI_CACHE_URL": REDIS_URL, "BI_LOG_LEVEL": "WARNING",
                    "BI_STATEMENT_TIMEOUT_MS": "600000"}
        self.env.pop("BI_SECRET_KEY", None)
        if sign_in:
            self.env["BI_SECRET_KEY"] = secrets.token_urlsafe(40)
            subprocess.run([BI_APP, "users", "remove", BENCH_USER], env=self.env, capture_output=True)
            subprocess.run([BI_APP, "users", "add", BENCH_USER, "--role", "analyst"], env=self.env, check=True,
                           input=BENCH_PASSWORD + "\n", text=True, capture_output=True)

    def __enter__(self) -> "Server":
        self.process = subprocess.Popen([BI_APP, "serve", "--port", str(self.port), "--workers", "1"],
                                        env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5).read()
                break
            except OSError:
                time.sleep(0.2)
        # Measure the steady state: wait until the server's columnar snapshot is built and the customer
        # models it started training are saved (training takes a core for minutes at a million orders).
        started = time.perf_counter()
        while json.loads(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz").read())["columnar"] != "ready":
            time.sleep(0.5)
        self.snapshot_seconds = time.perf_counter() - started
        while subprocess.run(["pgrep", "-f", "bi_app.cli train"], capture_output=True).returncode == 0:
            time.sleep(1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

    def time(self, path: str) -> float:
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=600) as response:
            response.read()
            assert response.status == 200, path
        return (time.perf_counter() - started) * 1000

    def export_csv(self) -> dict[str, float]:
        started = time.perf_counter()
        size = 0
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/export/orders.csv", timeout=3600) as response:
            while chunk := response.read(1 << 20):
                size += len(chunk)
        return {"mb": size / 1e6, "seconds": time.perf_counter() - started}

    def memory(self) -> dict[str, float]:
        """RSS and peak RSS (MB) of the gunicorn worker."""
        workers = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout.split()
        status = Path(f"/proc/{workers[0]}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {"rss": int(fields["VmRSS"].split()[0]) / 1024, "peak": int(fields["VmHWM"].split()[0]) / 1024}


if __name__ == "__main__":
    main()
