"""Load test: simulated users (Locust, bench/locustfile.py) against the deployment's gunicorn, on this machine.

The server is run as a deployment runs it (deploy/gunicorn.conf.py: workers from the core count, 8
threads each; sign-in on; Redis; the columnar snapshot built before measuring) on the demo orders in
PostgreSQL (loaded once into a schema of their own, as by bench/api_latency.py). The users sign in,
then walk the pages with random filters the way a person does (see bench/locustfile.py), on the same
cores as the server, over loopback. For each number of users: throughput, each request's p50/p95/p99,
whole page views' p50/p95/p99, errors, and the workers' memory. Statistics are reset once every user
has signed in (signing in costs a scrypt hash, on purpose).

    .venv/bin/python bench/load_test.py [--orders 1000000] [--users 10,50,100] [--seconds 60] [--think 5-15]
    .venv/bin/python bench/load_test.py --users 50 --think 1-1 --section "Load test: a page every second per user"
    .venv/bin/python bench/load_test.py --base HEAD~1 --users 50,100 ...   # two versions, runs alternating
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlencode

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.api_latency import REDIS_URL, ensure_loaded, schema_url  # noqa: E402
from bench.page_compare import worktree  # noqa: E402
from bench.report import cpu_check, write_section  # noqa: E402
from data_layer.demo_data import REGIONS, SEGMENTS  # noqa: E402

BI_APP = str(Path(sys.executable).with_name("bi-app"))
LOAD_USER = "loadtest"
LOAD_PASSWORD = secrets.token_urlsafe(18)  # made for each run
PAGES = ("/", "/segments", "/regions")
MARKER = {"region": "North", "segment": "Premium", "period": "last-90-days"}
WAVE_GAP_S = 0.04  # callbacks the renderer sends within this of each other go side by side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--users", default="10,50,100", help="numbers of simulated users, one run each")
    parser.add_argument("--seconds", type=int, default=60, help="measured seconds per run, after the ramp-up")
    parser.add_argument("--think", default="5-15", help="seconds a user reads a page before the next (a-b)")
    parser.add_argument("--spawn-rate", type=float, default=5.0, help="users started per second")
    parser.add_argument("--base", help="a git revision to compare the working tree with, run for run")
    parser.add_argument("--section", default="Load test: simulated users walking the pages",
                        help="the section of docs/BENCHMARKS.md to write")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()

    admin_url = os.environ.get("BI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    _schema, url = schema_url(admin_url, args.orders)
    ensure_loaded(admin_url, url, args.orders)
    cpu = cpu_check()
    results = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        versions = {"working tree": ROOT}
        if args.base:
            versions = {args.base: stack.enter_context(worktree(args.base)), **versions}
        servers = {name: stack.enter_context(Deployment(url, code=code)) for name, code in versions.items()}
        journeys = {}
        for name, server in servers.items():
            journeys[name] = folder / f"journeys-{len(journeys)}.json"
            journeys[name].write_text(json.dumps(record_journeys(server.base)))
        for users in [int(n) for n in args.users.split(",")]:
            for name, server in servers.items():
                redis.Redis.from_url(REDIS_URL).flushdb()
                results.append({**run_locust(server, users, args, journeys[name], folder), "version": name})
                print(format_row(results[-1]), flush=True)
        workers = next(iter(servers.values())).workers_count
    body = report(results, args, cpu, workers)
    print(body)
    if not args.no_write:
        command = "python bench/load_test.py " + " ".join(sys.argv[1:])
        write_section(args.section, command.strip(), body)


class Deployment:
    """gunicorn with deploy/gunicorn.conf.py and 'bi_app.wsgi:server()' on a free loopback port."""

    def __init__(self, url: str, code: Path = ROOT, **settings: str) -> None:
        """The server of the code in ``code`` (a checkout); ``settings``: more environment for it
        (``BI_WORKERS``, ``BI_DATA_DIR``, ...)."""
        self.code = code
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.folder = tempfile.TemporaryDirectory()
        self.env = {**os.environ, "BI_DATABASE_URL": url, "BI_CACHE_URL": REDIS_URL, "BI_LOG_LEVEL": "WARNING",
                    "BI_SECRET_KEY": secrets.token_urlsafe(40), "BI_BIND": f"127.0.0.1:{self.port}",
                    "PROMETHEUS_MULTIPROC_DIR": str(Path(self.folder.name) / "metrics"), "PYTHONPATH": str(code),
                    **settings}
        subprocess.run([BI_APP, "users", "remove", LOAD_USER], env=self.env, capture_output=True)
        subprocess.run([BI_APP, "users", "add", LOAD_USER, "--role", "analyst"], env=self.env, check=True,
                       input=LOAD_PASSWORD + "\n", text=True, capture_output=True)

    def __enter__(self) -> Deployment:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", str(self.code / "deploy" / "gunicorn.conf.py"),
             "bi_app.wsgi:server()"], env=self.env, cwd=self.code, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 600
        while True:
            try:
                health = json.loads(urllib.request.urlopen(f"{self.base}/healthz", timeout=5).read())
                if health.get("columnar") == "ready":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not build its snapshot within 10 minutes")
            time.sleep(1)
        self.workers_count = len(self.workers())
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.folder.cleanup()

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def rss_mb(self) -> dict[int, float]:
        sizes = {}
        for pid in self.workers():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            sizes[pid] = int(fields["VmRSS"].split()[0]) / 1024
        return sizes


def record_journeys(base: str) -> dict:
    """The callback requests a real Chromium sends to open each page (signed in, the app's scripts cached),
    grouped in the waves it sends them in, with the filter values of :data:`MARKER`."""
    from playwright.sync_api import sync_playwright

    pages: dict[str, list[list[dict]]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{base}/login")
        page.fill("input[name=name]", LOAD_USER)
        page.fill("input[name=password]", LOAD_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
        for path in PAGES:
            calls: list[tuple[float, dict]] = []

            def seen(request, calls=calls) -> None:  # noqa: ANN001
                if "/_dash-update-component" in request.url:
                    body = request.post_data or "{}"
                    output = json.loads(body).get("output", "")
                    calls.append((time.monotonic(), {"url": request.url.replace(base, ""), "body": body,
                                                     "name": output.strip(".").split(".")[0]}))

            page.on("request", seen)
            page.goto(f"{base}{path}?{urlencode(MARKER)}")
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(500)
            page.remove_listener("request", seen)
            waves: list[list[dict]] = []
            wave_started = None
            for at, call in calls:
                if wave_started is None or at - wave_started > WAVE_GAP_S:
                    waves.append([])
                    wave_started = at
                waves[-1].append(call)
            pages[path] = waves
        browser.close()
    return {"marker": MARKER, "regions": sorted(REGIONS), "segments": sorted(SEGMENTS), "pages": pages}


def run_locust(server: Deployment, users: int, args: argparse.Namespace, journeys: Path, folder: Path) -> dict:
    prefix = folder / f"users-{users}"
    views = folder / f"views-{users}.json"
    ramp = users / args.spawn_rate
    env = {**os.environ, "BI_LOAD_JOURNEYS": str(journeys), "BI_LOAD_USER": LOAD_USER,
           "BI_LOAD_PASSWORD": LOAD_PASSWORD, "BI_LOAD_THINK_S": args.think, "BI_LOAD_PAGE_VIEWS": str(views)}
    memory: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            for pid, size in server.rss_mb().items():
                memory[pid] = max(memory.get(pid, 0.0), size)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    subprocess.run([sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
                    "--users", str(users), "--spawn-rate", str(args.spawn_rate),
                    "--run-time", f"{int(ramp + args.seconds)}s", "--host", server.base, "--csv", str(prefix),
                    "--reset-stats", "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "30"],
                   env=env, cwd=ROOT, check=False, stdout=subprocess.DEVNULL)
    done.set()
    sampler.join()
    with open(f"{prefix}_stats.csv") as stats_file:
        rows = {row["Name"]: row for row in csv.DictReader(stats_file)}
    with open(f"{prefix}_failures.csv") as failures_file:
        failures = [f"{row['Name']}: {row['Error']} (x{row['Occurrences']})" for row in csv.DictReader(failures_file)]
    total = rows.pop("Aggregated")
    page_views = json.loads(views.read_text()) if views.exists() else []
    return {
        "users": users, "requests": int(total["Request Count"]), "failures": int(total["Failure Count"]),
        "rps": float(total["Requests/s"]), "p50": float(total["50%"]), "p95": float(total["95%"]),
        "p99": float(total["99%"]), "views": len(page_views),
        "view_p50": percentile(page_views, 50), "view_p95": percentile(page_views, 95),
        "view_p99": percentile(page_views, 99),
        "slowest": sorted(((float(row["95%"]), name) for name, row in rows.items() if int(row["Request Count"])),
                          reverse=True)[:3],
        "memory": memory, "failure_kinds": failures, "by_name": rows,
    }


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def format_row(result: dict) -> str:
    memory = result["memory"]
    version = f"{result['version']} | " if "version" in result else ""
    return (f"| {version}{result['users']} | {result['rps']:.1f} | {result['p50']:.0f} / {result['p95']:.0f} / "
            f"{result['p99']:.0f} | {result['view_p50']:.0f} / {result['view_p95']:.0f} / {result['view_p99']:.0f} "
            f"({result['views']:,}) | {result['failures']} of {result['requests']:,} | "
            f"{max(memory.values(), default=0):.0f} ({len(memory)}) |")


def report(results: list[dict], args: argparse.Namespace, cpu: float, workers: int) -> str:
    lines = [
        f"Server: gunicorn with `deploy/gunicorn.conf.py` ({workers} workers x 8 threads), sign-in on, Redis "
        f"(emptied before each run), columnar snapshot ready; {args.orders:,} demo orders in PostgreSQL. "
        f"Load: Locust on the same 2 cores over loopback; each user signs in, then opens the overview, "
        f"segments or regions page with a random region, segment and period (a page view: the page, Dash's "
        f"layout and dependencies, then the callbacks a real Chromium sends, in its waves), now and then "
        f"the API or a month's orders CSV, reading {args.think} s between. {args.seconds} s measured per run, "
        f"after every user has signed in. CPU check {cpu:.2f} s.",
        "",
        ("| version " if args.base else "") + "| users | requests/s | request p50 / p95 / p99 (ms) | "
        "page view p50 / p95 / p99 (ms) (views) | errors | worker peak RSS MB (workers) |",
        ("|---" if args.base else "") + "|---|---|---|---|---|---|",
        *(format_row(result) for result in results),
        "",
        *ratios(results, args.base),
        "Errors: " + ("; ".join(f"{result['users']} users: {', '.join(result['failure_kinds'])}"
                                for result in results if result["failure_kinds"]) or "none") + ".",
        "",
        "Slowest requests by p95 (ms): " + "; ".join(
            f"{result['users']} users: " + ", ".join(f"{name} {p95:.0f}" for p95, name in result["slowest"])
            for result in results) + ".",
    ]
    return "\n".join(lines) + "\n"


def ratios(results: list[dict], base: str | None) -> list[str]:
    """With a base version: the working tree's figures over the base's, per number of users (same run)."""
    if not base:
        return []
    lines = []
    for users in sorted({result["users"] for result in results}):
        pair = {result["version"]: result for result in results if result["users"] == users}
        new, old = pair["working tree"], pair[base]
        lines.append(f"{users} users, working tree over {base}: requests/s {new['rps'] / old['rps']:.2f}x, "
                     f"request p95 {new['p95'] / old['p95']:.2f}x, page view p50 {new['view_p50'] / old['view_p50']:.2f}x, "
                     f"page view p95 {new['view_p95'] / old['view_p95']:.2f}x.")
    return [*lines, ""]


if __name__ == "__main__":
    main()
