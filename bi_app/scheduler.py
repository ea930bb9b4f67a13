"""``bi-app scheduler``: the one process per deployment that delivers subscriptions and checks alerts.

However many are started (one per app host, say), one works: it holds the database's scheduler lock
(:func:`data_layer.reports.scheduler_lock`); the others wait and take over when it stops. Each look (every
``tick`` seconds) delivers what is due (:func:`bi_app.reporting.run_due`); a look that fails is logged and the
next one runs as usual.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import UTC, datetime

from bi_app.config import Config, write_engine_for
from data_layer import reports

log = logging.getLogger(__name__)

#: Seconds between two looks for due work.
TICK_S = 30


def run_scheduler(config: Config, stop: threading.Event, tick_s: float = TICK_S) -> None:
    """Look for due work every ``tick_s`` seconds until ``stop`` is set, while this process holds the lock."""
    from bi_app.app import create_app
    from bi_app.reporting import run_due

    app = create_app(config)
    host, pid = socket.gethostname(), os.getpid()
    database = write_engine_for(config)
    with reports.scheduler_lock(database, stop, tick_s) as held:
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
