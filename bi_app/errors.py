"""The one shape of a JSON error answer, for the API, the exports and the guards in front of them."""

from __future__ import annotations

from flask import Response, jsonify


def error_response(status: int, code: str, message: str, **extra: str) -> tuple[Response, int]:
    """A JSON error body: ``{"error": {"code", "message", ...}}``."""
    return jsonify(error={"code": code, "message": message, **extra}), status
