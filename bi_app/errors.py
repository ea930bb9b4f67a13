"""The one shape of a JSON error answer, for the API, the exports and the guards in front of them."""

from __future__ import annotations

from flask import Response, jsonify

from data_layer.engine import is_timeout

#: Seconds a client is told to wait before asking a slow or unreachable database again.
DATABASE_RETRY_AFTER_S = 30


def error_response(status: int, code: str, message: str, **extra: str) -> tuple[Response, int]:
    """A JSON error body: ``{"error": {"code", "message", ...}}``."""
    return jsonify(error={"code": code, "message": message, **extra}), status


def database_error_response(exc: BaseException, reference: str) -> tuple[Response, int]:
    """503 for a database error: ``database_slow`` when it took too long (a lock, an overloaded server),
    else ``database_unavailable``; with ``Retry-After`` and the log's ``reference``."""
    if is_timeout(exc):
        response, status = error_response(503, "database_slow", "the database is too slow to answer right now; "
                                          "try again in a minute", reference=reference)
    else:
        response, status = error_response(503, "database_unavailable", "the database is unavailable right now; "
                                          "try again shortly", reference=reference)
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response, status
