"""Customer-level analyses under a filter at 1M orders (PostgreSQL): latency when computed, and worker memory.

The demo orders sit in a schema of their own (as for bench/api_latency.py); the real
server (`bi-app serve`, one gunicorn worker, Redis cache) is started, its columnar
snapshot and its customer models awaited. Every request then asks for a filter no
request asked before (a region from a month on), with the cache flushed, so the
answer is computed: the matching customers' features on the snapshot, labelled by
the trained models, summarised. The worker's peak memory is read after all of them.

    .venv/bin/python bench/customer_latency.py [--size 1000000] [--requests 8]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.api_latency import REDIS_URL, Server, ensure_loaded, pct, schema_url  # noqa: E402
from bench.report import publish  # noqa: E402

ANALYSES = ["clusters", "churn", "rfm", "recommendations"]
TARGET_S = 1.0
MEMORY_TARGET_MB = 600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=8, help="requests per analysis, each with a new filter")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    _schema, url = schema_url(args.postgres, args.size)
    ensure_loaded(args.postgres, url, args.size)
    cache = redis.Redis.from_url(REDIS_URL)
    unseen = (f"region={region}&start={year}-{month:02d}-01" for year, month, region in itertools.product(
        (2023, 2022), range(1, 13), ("North", "South", "East", "West")))
    timings: dict[str, list[float]] = {}
    with Server(url) as server:
        server.time("/api/v1/clusters?region=North&region=South")  # the models, read once per worker
        for name in ANALYSES:
            for _ in range(args.requests):
                cache.flushdb()
                timings.setdefault(name, []).append(server.time(f"/api/v1/{name}?{next(unseen)}") / 1000)
        memory = server.memory()
    lines = [
        f"{args.size:,} demo orders; one gunicorn worker (8 threads), Redis cache, columnar snapshot and customer "
        f"models ready. {args.requests} requests per analysis, sequential, each for a region from a month on that no "
        "request asked before (cache flushed), so every answer is computed.",
        "",
        "| analysis | p50 | p95 | max |",
        "|---|---|---|---|",
        *[f"| {name} | {pct(values, 50):.2f} s | {pct(values, 95):.2f} s | {max(values):.2f} s |"
          for name, values in timings.items()],
        "",
        f"Target: p95 within {TARGET_S:.0f} s: "
        + "; ".join(f"{name} {'met' if pct(values, 95) <= TARGET_S else 'missed'}" for name, values in timings.items())
        + ".",
        f"Worker memory after them: {memory['rss']:,.0f} MB RSS, peak {memory['peak']:,.0f} MB "
        f"(target under {MEMORY_TARGET_MB} MB: {'met' if memory['peak'] < MEMORY_TARGET_MB else 'missed'}).",
    ]
    publish("Customer-level analyses under a filter (PostgreSQL)",
            f"python bench/customer_latency.py --size {args.size} --requests {args.requests}", lines)


if __name__ == "__main__":
    main()
