"""``bi-app scheduler``: the one process per deployment that delivers subscriptions and checks alerts.

However many are started (one per app host, say), one works: it holds a lock of the database (PostgreSQL: a
session advisory lock, held by a connection of its own for the process's life and freed by the server when the
process or its connection ends; SQLite: an exclusive lock on a file beside the database, which is on this
machine). The others wait and take over when it stops. Each look (every ``tick`` seconds) delivers what is due
(:func:`bi_app.reporting.run_due`); a look that fails is logged and the next one runs as usual.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from bi_app.config import Config, write_engine_for
from data_layer import reports
from data_layer.engine import is_postgres

log = logging.getLogger(__name__)

#: Seconds between two looks for due work.
TICK_S = 30


@contextmanager
def scheduler_lock(config: Config, stop: threading.Event, wait_s: float) -> Iterator[bool]:
    """Hold the deployment's scheduler lock while the block runs, waiting for it (trying every ``wait_s``
    seconds) while another process holds it; yields False when ``stop`` was set before it was had."""
    engine = write_engine_for(config)
    if is_postgres(engine):
        with _advisory_lock(engine, stop, wait_s) as held:
            yield held
    else:
        with _file_lock(Path(make_url(config.write_database_url or config.database_url).database or "bi.sqlite"),
                        stop, wait_s) as held:
            yield held


@contextmanager
def _advisory_lock(engine: Engine, stop: threading.Event, wait_s: float) -> Iterator[bool]:
    with engine.connect() as conn:
        # One lock per schema: deployments (and tests) sharing a server each have their own scheduler.
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        key = zlib.crc32(f"bi-app scheduler {schema}".encode())

        def take() -> bool:
            taken = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar_one())
            conn.commit()  # a session lock: no transaction (and no snapshot) stays open while it is held
            return taken

        held = _taken(take, stop, wait_s)
        try:
            yield held
        finally:
            if held:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()


@contextmanager
def _file_lock(database: Path, stop: threading.Event, wait_s: float) -> Iterator[bool]:
    path = database.with_name(database.name + ".scheduler-lock")
    with open(path, "a") as handle:

        def take() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        held = _taken(take, stop, wait_s)
        try:
            yield held
        finally:
            if held:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _taken(take: Callable[[], bool], stop: threading.Event, wait_s: float) -> bool:
    """Try ``take()`` every ``wait_s`` seconds until it succeeds (True) or ``stop`` is set (False)."""
    waited = False
    while not take():
        if not waited:
            log.info("Another scheduler runs for this database; waiting to take over")
            waited = True
        if stop.wait(wait_s):
            return False
    return True


def run_scheduler(config: Config, stop: threading.Event, tick_s: float = TICK_S) -> None:
    """Look for due work every ``tick_s`` seconds until ``stop`` is set, while this process holds the lock."""
    from bi_app.app import create_app
    from bi_app.reporting import run_due

    app = create_app(config)
    host, pid = socket.gethostname(), os.getpid()
    with scheduler_lock(config, stop, tick_s) as held:
        if not held:
            return
        started = datetime.now(UTC).replace(microsecond=0)
        log.info("Scheduler running on %s (pid %d), looking every %g s", host, pid, tick_s)
        while not stop.is_set():
            now = datetime.now(UTC).replace(microsecond=0)
            try:
                with app.server.test_request_context("/"):
                    done = run_due(now)
                if done.sent or done.failed:
                    log.info("Look at %s: sent %s; failed %s; alerts checked %d", now.isoformat(),
                             ", ".join(done.sent) or "none", ", ".join(done.failed) or "none", len(done.checked))
                with write_engine_for(config).begin() as conn:
                    reports.note_look(conn, host, pid, started, now)
            except Exception:  # a database that is down now, say: the next look tries again
                log.exception("Look for due reports failed; trying again in %g s", tick_s)
            stop.wait(tick_s)
    log.info("Scheduler stopped")
