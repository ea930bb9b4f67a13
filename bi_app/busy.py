"""Bounds on heavy work in a server process.

- A limit on how much runs at once: customer scoring, workbooks and imports take a slot each
  (``BI_HEAVY_WORK_LIMIT``); when all are taken the request is told the server is busy at once, rather than
  queueing work that would pile up behind the others (and past the proxy's timeout).
- A budget for each request: its work stops at the data layer's next checkpoint (:mod:`data_layer.stopping`)
  once it has run ``BI_WORK_TIME_LIMIT_S`` or its client has gone, with nothing written.
"""

from __future__ import annotations

import ctypes
import logging
import select
import socket
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import pyarrow as pa
from flask import g, has_request_context, request

from bi_app.context import current_config
from data_layer.stopping import WorkStopped, stop_when, time_limit

__all__ = ["RETRY_AFTER_S", "BusyError", "WorkStopped", "client_gone", "give_back_memory", "heavy_work",
           "within_budget", "work_slot"]

log = logging.getLogger(__name__)

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")  # glibc (malloc_trim); not on other C libraries
except OSError:
    _LIBC = None

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
    """Run the block in a slot for heavy work (:class:`BusyError`, naming ``what``, when none is free) and
    within the request's budget (:func:`within_budget`); then give the memory it freed back to the system."""
    try:
        with work_slot(what), within_budget():
            yield
    finally:
        give_back_memory()


def give_back_memory() -> None:
    """Return freed memory to the system now: Arrow's pool keeps what it freed, and glibc's heap keeps freed
    blocks below its top; after a large file's read or check a worker held hundreds of MB it no longer used."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


@contextmanager
def work_slot(what: str) -> Iterator[None]:
    """Hold a slot for heavy work while the block runs; :class:`BusyError` (naming ``what``) when none is free."""
    semaphore = _semaphore(current_config().heavy_work_limit)
    if not semaphore.acquire(blocking=False):
        raise BusyError(what)
    try:
        yield
    finally:
        semaphore.release()


def within_budget() -> AbstractContextManager[None]:
    """In a request: checkpoints in the block raise :class:`WorkStopped` once the request has run
    ``BI_WORK_TIME_LIMIT_S`` or its client has gone. Outside one (commands, background jobs): no bound."""
    if not has_request_context():
        return nullcontext()
    return _logged(stop_when(_RequestBudget(current_config().work_time_limit_s)))


@contextmanager
def _logged(bounded: AbstractContextManager[None]) -> Iterator[None]:
    try:
        with bounded:
            yield
    except WorkStopped as exc:
        log.warning("Work stopped, nothing written: %s", exc)  # the request's line names the route and user
        raise


class _RequestBudget:
    """Why the current request's work must stop: its client has gone, or its time is spent (from when it came,
    as bi_app.observability noted it)."""

    def __init__(self, limit_s: float) -> None:
        self.spent = time_limit(limit_s, g.get("bi_started"), ", the most this server gives one task")
        self.deadline = self.spent.deadline
        self.client = request.environ.get("gunicorn.socket")  # None under a test client or another server

    def __call__(self) -> str | None:
        if self.client is not None and client_gone(self.client):
            return "the browser or program that asked for it has gone"
        return self.spent()


def client_gone(connection: socket.socket) -> bool:
    """True once the other end of ``connection`` has closed it (or its sending side), without waiting and
    without taking anything from it: a request's body is read by then, so a readable socket that holds no
    data has been closed (a pipelined next request shows as data: the client is still there)."""
    try:
        poller = select.poll()
        poller.register(connection, select.POLLIN | select.POLLRDHUP)
        events = poller.poll(0)
        if not events:
            return False
        if events[0][1] & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            return True
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


def _semaphore(limit: int) -> threading.BoundedSemaphore:
    with _lock:
        return _semaphores.setdefault(limit, threading.BoundedSemaphore(limit))
