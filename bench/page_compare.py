"""Two versions of the app side by side: the overview's cold and warm times as a ratio, in one run.

The machine is shared and noisy, so a change to the page is judged against the
code before it in the same run: BASE (a git revision, checked out into a
temporary worktree) and the working tree each serve the same PostgreSQL
schema (as loaded by bench/page_load.py) with their own `bi-app serve`, and
the runs alternate between them in one headless Chromium.

    .venv/bin/python bench/page_compare.py --base HEAD~1 [--size 1000000] [--runs 6]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import redis
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.api_latency import BI_APP, REDIS_URL, ensure_loaded, schema_url  # noqa: E402
from bench.page_load import CHROMIUM_ARGS, open_cold, reload_warm  # noqa: E402
from bench.report import publish  # noqa: E402


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """``revision`` checked out in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bi-compare-") as folder:
        path = Path(folder) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), revision], check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)


@contextmanager
def serving(code: Path, database_url: str) -> Iterator[str]:
    """`bi-app serve` running the code in ``code`` (first on the import path); its base URL once its snapshot is ready."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "BI_DATABASE_URL": database_url, "BI_CACHE_URL": REDIS_URL, "BI_LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(code)}
    process = subprocess.Popen([BI_APP, "serve", "--port", str(port), "--workers", "1"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            try:
                if json.loads(urllib.request.urlopen(f"{base}/healthz", timeout=5).read())["columnar"] == "ready":
                    break
            except OSError:
                pass
            time.sleep(0.25)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare the working tree with")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    _schema, database_url = schema_url(args.postgres, args.size)
    ensure_loaded(args.postgres, database_url, args.size)
    cache = redis.Redis.from_url(REDIS_URL)
    names = (args.base, "working tree")
    times: dict[str, dict[str, list[float]]] = {name: {"cold": [], "warm": []} for name in names}
    with ExitStack() as stack, sync_playwright() as playwright:
        base_code = stack.enter_context(worktree(args.base))
        servers = {args.base: stack.enter_context(serving(base_code, database_url)),
                   "working tree": stack.enter_context(serving(ROOT, database_url))}
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for base in servers.values():  # the browser's own first start is not either version's
            context = browser.new_context()
            context.new_page().goto(base + "/")
            context.close()
        for _ in range(args.runs):
            for name, base in servers.items():
                context, page, seconds = open_cold(browser, base, cache)
                times[name]["cold"].append(seconds)
                times[name]["warm"] += [reload_warm(page) for _ in range(2)]
                context.close()
        browser.close()
    median = {name: {kind: statistics.median(values) for kind, values in kinds.items()} for name, kinds in times.items()}
    lines = [
        f"Overview at {args.size:,} orders, {args.runs} cold loads and {2 * args.runs} warm reloads per version, "
        "alternating in one headless Chromium (timed as in the page benchmark).",
        "",
        "| version | cold median | warm median |",
        "|---|---|---|",
        *(f"| {name} | {median[name]['cold']:.2f} s | {median[name]['warm']:.2f} s |" for name in names),
        "",
        f"Working tree against {args.base}: cold {median['working tree']['cold'] / median[args.base]['cold']:.2f}x, "
        f"warm {median['working tree']['warm'] / median[args.base]['warm']:.2f}x.",
    ]
    publish("Overview, two versions compared",
            f"python bench/page_compare.py --base {args.base} --size {args.size} --runs {args.runs}", lines)


if __name__ == "__main__":
    main()
