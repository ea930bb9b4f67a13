"""A failure a browser is told about by a reference only; what went wrong goes to the log under it,
so no exception class, message, host or query ever reaches a page or an API answer."""

from __future__ import annotations

import logging
import uuid

from data_layer.engine import describe_error


def reference_for(log: logging.Logger, what: str, exc: BaseException, *, traceback: bool = False) -> str:
    """Log ``what`` happened with ``exc`` (its one-line description, or with ``traceback`` the whole
    traceback at ERROR) under a new short reference, and return the reference to show instead."""
    reference = uuid.uuid4().hex[:8]
    if traceback:
        log.error("[%s] %s", reference, what, exc_info=exc)
    else:
        log.warning("[%s] %s: %s", reference, what, describe_error(exc))
    return reference
