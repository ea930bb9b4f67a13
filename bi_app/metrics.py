"""The app's Prometheus metrics (prometheus_client), in a module of their own so that the CLI's long work
(imports, training) records its durations without loading the web app. ``bi_app.observability`` serves
them at ``/metrics``; see there how several worker processes share them."""

from __future__ import annotations

import logging
import os

from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger(__name__)

if directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # each process's values are kept there
    os.makedirs(directory, mode=0o700, exist_ok=True)

_TIMES = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

REQUESTS = Counter("bi_http_requests", "Requests answered, by route, method and status.", ["route", "method", "status"])
REQUEST_SECONDS = Histogram("bi_http_request_duration_seconds", "Time to answer a request, by route.", ["route"],
                            buckets=_TIMES)
CACHE_LOOKUPS = Counter("bi_cache_lookups", "Result-cache lookups: hit, miss or error (computed without it).",
                        ["result"])
SLOW_ANALYSES = Counter("bi_slow_analyses", "Analyses computed more slowly than engine.SLOW_READ_S.", ["analysis"])
CONNECTIONS_IN_USE = Gauge("bi_database_connections_in_use", "Database connections checked out of the pools now.",
                           multiprocess_mode="livesum")
WORK_SECONDS = Histogram("bi_work_duration_seconds", "Duration of long work: imports and model training.", ["work"],
                         buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800))


def note_slow_analysis(name: str, filters: str, seconds: float) -> None:
    """Log an analysis that took longer than :data:`data_layer.engine.SLOW_READ_S`, with its filters, and count it."""
    SLOW_ANALYSES.labels(name).inc()
    log.warning("slow analysis %s took %.2f s for filters %s", name, seconds, filters or "(none)")


def record_work(work: str, seconds: float) -> None:
    """The duration of an ``import`` or a ``training``."""
    WORK_SECONDS.labels(work).observe(seconds)
