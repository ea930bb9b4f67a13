"""Stopping long work part-way: the caller says what ends it (a time budget spent, a client that has gone), the
work's loops call :func:`checkpoint` between pieces, and :class:`WorkStopped` raised there unwinds the work, so
an open transaction rolls back and nothing is half-written.

The caller's test rides in a context variable: each thread (each request) has its own, and code that runs
without one (the command line, background jobs) never stops at a checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: Returns why the current work must stop, or None to go on.
StopTest = Callable[[], "str | None"]

_stop_test: ContextVar[StopTest | None] = ContextVar("stop_test", default=None)


class WorkStopped(RuntimeError):  # noqa: N818 - not a fault: the caller asked for it
    """The work was stopped at a checkpoint; the message says why (for example "it ran past 100 seconds")."""


@contextmanager
def stop_when(test: StopTest) -> Iterator[None]:
    """Within the block, :func:`checkpoint` raises :class:`WorkStopped` once ``test()`` gives a reason."""
    token = _stop_test.set(test)
    try:
        yield
    finally:
        _stop_test.reset(token)


def checkpoint() -> None:
    """Raise :class:`WorkStopped` if the work running in this context must stop; else return at once."""
    test = _stop_test.get()
    if test is not None and (reason := test()):
        raise WorkStopped(reason)


def time_limit(seconds: float, started: float | None = None, why: str = "") -> StopTest:
    """A test that gives a reason ("it ran past 100 seconds" and ``why``) once ``seconds`` have passed since
    ``started`` (a :func:`time.perf_counter` reading; by default, now)."""
    since = time.perf_counter() if started is None else started

    def test() -> str | None:
        if time.perf_counter() - since <= seconds:
            return None
        return f"it ran past {seconds:g} seconds" + (f", {why}" if why else "")

    return test
