"""A limit on heavy work per server process: customer scoring, workbooks and imports take a slot each
(``BI_HEAVY_WORK_LIMIT``); when all are taken the request is told the server is busy at once, rather than
queueing work that would pile up behind the others (and past the proxy's timeout)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from bi_app.context import current_config

#: Seconds a refused request is told to wait (``Retry-After``).
RETRY_AFTER_S = 30

_semaphores: dict[int, threading.BoundedSemaphore] = {}
_lock = threading.Lock()


class BusyError(RuntimeError):
    """Every slot for heavy work of this process is taken."""

    def __init__(self, what: str) -> None:
        super().__init__(f"the server is busy with other large {what}; try again in a minute")


@contextmanager
def heavy_work(what: str) -> Iterator[None]:
    """Hold a slot for heavy work while the block runs; :class:`BusyError` (naming ``what``) when none is free."""
    semaphore = _semaphore(current_config().heavy_work_limit)
    if not semaphore.acquire(blocking=False):
        raise BusyError(what)
    try:
        yield
    finally:
        semaphore.release()


def _semaphore(limit: int) -> threading.BoundedSemaphore:
    with _lock:
        return _semaphores.setdefault(limit, threading.BoundedSemaphore(limit))
