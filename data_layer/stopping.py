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
    if reason := stop_reason():
        raise WorkStopped(reason)


def stop_reason() -> str | None:
    """Why the work running in this context must stop now, or None (and None when nothing bounds it)."""
    test = _stop_test.get()
    return test() if test is not None else None


def seconds_left() -> float | None:
    """Seconds before the work running in this context reaches its time limit (None: it has none), for a long
    statement the database itself should stop."""
    deadline = getattr(_stop_test.get(), "deadline", None)
    return None if deadline is None else deadline - time.perf_counter()


class TimeLimit:
    """A stop test that gives a reason ("it ran past 100 seconds", then ``why``) once ``seconds`` have passed
    since ``started`` (a :func:`time.perf_counter` reading; by default, now). Its ``deadline`` lets a database stop a
    long statement in time (:func:`seconds_left`)."""

    def __init__(self, seconds: float, started: float | None = None, why: str = "") -> None:
        self.seconds, self.why = seconds, why
        self.deadline = (time.perf_counter() if started is None else started) + seconds

    def __call__(self) -> str | None:
        if time.perf_counter() <= self.deadline:
            return None
        return f"it ran past {self.seconds:g} seconds{self.why}"


def time_limit(seconds: float, started: float | None = None, why: str = "") -> TimeLimit:
    """:class:`TimeLimit` of ``seconds`` from ``started``."""
    return TimeLimit(seconds, started, why)
