"""What an operator watches: a log line per request and ``/metrics`` in the Prometheus text format.

Every request gets an id (nginx's ``X-Request-ID`` when it sends a well-formed one, else a new one),
sent back in ``X-Request-ID`` and put on every log line written while it runs, with the user; when it
ends one ``request`` line gives its route, status, time and result-cache use. With
``BI_LOG_FORMAT=json`` every line is one JSON object (python-json-logger).

The metrics are prometheus_client's. Under gunicorn each worker is a process of its own: with
``PROMETHEUS_MULTIPROC_DIR`` set (``deploy/gunicorn.conf.py`` and ``bi-app serve`` set it before any
worker starts) each process writes its values to files there and a scrape sums them over the
workers, the ``bi-app train`` and ``snapshot`` processes included. ``/metrics`` answers a caller on
this machine (not through a proxy) or a signed-in admin.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import dash
from flask import Flask, Response, g, has_request_context, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy import event
from sqlalchemy.pool import Pool

from bi_app.auth import METRICS_PATH
from bi_app.context import (
    DEMO_USER,
    USER_KEY,
    current_cache,
    current_config,
    current_engine,
    current_replica,
    current_write_engine,
)
from bi_app.metrics import CACHE_LOOKUPS, CONNECTIONS_IN_USE, REQUEST_SECONDS, REQUESTS
from bi_app.security import CALLBACK_PATH, requested_callback
from data_layer import reports
from data_layer.meta import data_version, database_is_slow

log = logging.getLogger(__name__)
request_log = logging.getLogger("bi_app.requests")

REQUEST_ID_HEADER = "X-Request-ID"
_WELL_FORMED_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def install(app: dash.Dash) -> None:
    """Request ids, the request log, the metrics of every request and ``/metrics`` on ``app``'s server."""
    server: Flask = app.server
    server.before_request(_start)
    server.after_request(_finish)
    server.add_url_rule(METRICS_PATH, "metrics", _metrics)
    event.listen(Pool, "checkout", _checked_out)
    event.listen(Pool, "checkin", _checked_in)


def configure_logging(level: str, json_lines: bool) -> None:
    """The root logger's one handler, to standard error: plain lines, or one JSON object a line; each
    line carries the request id and user of the request it was written in."""
    handler = logging.StreamHandler()
    handler.addFilter(_RequestFields())
    if json_lines:
        handler.setFormatter(JsonFormatter("{asctime}{levelname}{name}{message}{request_id}{user}", style="{",
                                           rename_fields={"asctime": "time", "levelname": "level"}))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "bi_app", False)]:
        root.removeHandler(old)
    handler.bi_app = True  # type: ignore[attr-defined]
    if not root.handlers or all(getattr(h, "bi_app", False) for h in root.handlers):
        root.addHandler(handler)
    root.setLevel(level)


def note_cache_lookup(result: str) -> None:
    """Count a result-cache lookup (``hit``, ``miss`` or ``error``) for the metrics and this request's log line."""
    CACHE_LOOKUPS.labels(result).inc()
    if has_request_context():
        tally = g.setdefault("bi_cache_tally", {})
        tally[result] = tally.get(result, 0) + 1


def _start() -> None:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    g.bi_request_id = given if _WELL_FORMED_ID.fullmatch(given) else uuid.uuid4().hex
    g.bi_started = time.perf_counter()


def _finish(response: Response) -> Response:
    seconds = time.perf_counter() - g.get("bi_started", time.perf_counter())
    route = _route()
    REQUESTS.labels(route, request.method, str(response.status_code)).inc()
    REQUEST_SECONDS.labels(route).observe(seconds)
    tally = g.get("bi_cache_tally", {})
    request_log.info("%s %s %s %.1f ms", request.method, route, response.status_code, seconds * 1000, extra={
        "event": "request", "method": request.method, "route": route, "path": request.path,
        "status": response.status_code, "ms": round(seconds * 1000, 1), "pid": os.getpid(),
        "cache_hits": tally.get("hit", 0), "cache_misses": tally.get("miss", 0),
        "bytes": response.calculate_content_length()})
    response.headers[REQUEST_ID_HEADER] = g.get("bi_request_id", "")
    return response


def _route() -> str:
    """The route's rule, not its path (a path per filter would be a metric per filter); a callback by
    the first component it updates, when it names a registered callback."""
    if request.path == CALLBACK_PATH:
        output = requested_callback(dash.get_app().callback_map)
        return f"callback {output.strip('.').split('.')[0]}" if output else "callback (unknown)"
    rule = request.url_rule
    return rule.rule if rule is not None else "(no route)"


def _metrics() -> Response:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    registry = REGISTRY  # one process: its own values
    if directory:  # gunicorn's workers: the values every process wrote there, summed
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
    live = CollectorRegistry()
    live.register(_ServerState())
    live.register(_Reports())
    body = generate_latest(registry) + generate_latest(live)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


class _ServerState(Collector):
    """What the answering process sees now: the database's state and the columnar snapshot's."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        engine = current_engine()
        slow = GaugeMetricFamily("bi_database_slow", "1 while the database is too slow to give the data version.")
        ready = GaugeMetricFamily("bi_columnar_snapshot_ready",
                                  "1 when this server's columnar snapshot of the current data is ready.")
        try:
            with engine.connect() as conn:
                version = data_version(conn)
            replica = current_replica()
            ready.add_metric([], 1.0 if replica is not None and replica.status(version) == "ready" else 0.0)
        except Exception:  # noqa: BLE001 - a scrape never fails for the database
            ready.add_metric([], 0.0)
        slow.add_metric([], 1.0 if database_is_slow(engine) else 0.0)
        cache = GaugeMetricFamily("bi_cache_shared", "1 when the result cache is shared (Redis).")
        cache.add_metric([], 1.0 if current_cache().description.startswith("redis") else 0.0)
        yield from (slow, ready, cache)


class _Reports(Collector):
    """The deployment's report deliveries (from the database: every scheduler's), and the scheduler's last look."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        deliveries = GaugeMetricFamily("bi_report_deliveries", "Report and alert deliveries by kind and outcome.",
                                       labels=["kind", "status"])
        last_look = GaugeMetricFamily("bi_scheduler_last_look_timestamp_seconds",
                                      "When the working scheduler last looked for due reports (Unix time).")
        try:
            with current_write_engine().begin() as conn:
                counts, running = reports.delivery_counts(conn), reports.last_scheduler(conn)
        except Exception:  # noqa: BLE001 - a scrape never fails for the database
            return
        for (kind, status), count in sorted(counts.items()):
            deliveries.add_metric([kind, status], float(count))
        if running is not None:
            last_look.add_metric([], datetime.fromisoformat(running.last_look).timestamp())
        yield from (deliveries, last_look)


class _RequestFields(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = g.get("bi_request_id", "")
            user = g.get(USER_KEY)  # set by the guard once it knows who asks; none yet, or no one signed in
            record.user = user.name if user is not None else ("" if current_config().secret_key else DEMO_USER.name)
        else:
            record.request_id = record.__dict__.get("request_id", "")
            record.user = record.__dict__.get("user", "")
        return True


def _is_database_connection(dbapi_connection: Any) -> bool:
    return type(dbapi_connection).__module__.split(".")[0] in ("psycopg2", "sqlite3")


def _checked_out(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    if _is_database_connection(dbapi_connection):
        CONNECTIONS_IN_USE.inc()


def _checked_in(dbapi_connection: Any, _record: Any) -> None:
    if _is_database_connection(dbapi_connection):
        CONNECTIONS_IN_USE.dec()

