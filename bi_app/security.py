"""Security headers on every response, by Flask-Talisman (a well-kept library that sets them all
and keeps up with what browsers expect, rather than headers of our own); and malformed requests
to Dash's own routes answered 400 or 404, never a 500.

The Content-Security-Policy lets the page run only its own scripts and Dash's inline ones (by
their hashes), talk only to its own server, and never be framed: nothing on a page can send data
elsewhere. Styles may be inline (Dash, Plotly and AG Grid set them on elements).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import dash
from dash.exceptions import DependencyException
from flask import Flask, Response, request
from flask_talisman import Talisman
from werkzeug.exceptions import HTTPException

from bi_app.api import error_response
from bi_app.config import Config
from bi_app.incidents import reference_for

log = logging.getLogger(__name__)
#: Where Dash runs callbacks.
CALLBACK_PATH = "/_dash-update-component"


def content_security_policy(script_hashes: Iterable[str]) -> dict[str, str | list[str]]:
    """The policy: ``script_hashes`` are Dash's inline scripts (``dash.Dash.csp_hashes``)."""
    return {
        "default-src": "'self'",
        "script-src": ["'self'", *script_hashes],
        "style-src": ["'self'", "'unsafe-inline'"],
        # Plotly's "download as PNG" and AG Grid's icons are data and blob URLs of the page's own making.
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'", "data:"],
        "connect-src": "'self'",
        "worker-src": ["'self'", "blob:"],
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }


def add_security_headers(server: Flask, config: Config, script_hashes: Iterable[str]) -> None:
    """Security headers on every response of ``server``; HSTS and Secure cookies when users reach it
    over HTTPS (``BI_HTTPS``). TLS itself is nginx's: the app never redirects to HTTPS."""
    Talisman(
        server,
        force_https=False,
        strict_transport_security=config.https,
        session_cookie_secure=config.https,
        session_cookie_http_only=True,
        content_security_policy=content_security_policy(script_hashes),
        frame_options="DENY",
        referrer_policy="strict-origin-when-cross-origin",
    )


def answer_malformed_requests(app: dash.Dash) -> None:
    """A callback request that is not the shape Dash's renderer sends, or names no registered
    callback, gets 400; a request for a script of no registered library (or outside one) gets 404;
    anything else that fails gets a 500 with a reference only (the traceback is logged under it)."""
    server = app.server

    @server.before_request
    def _check_callback_request() -> tuple[Response, int] | None:
        if request.path != CALLBACK_PATH or request.method != "POST":
            return None
        if not is_callback_request(request.get_json(silent=True), app.callback_map):
            return error_response(400, "bad_request", "not a callback request this app knows")
        return None

    @server.errorhandler(DependencyException)
    def _unknown_script(_exc: DependencyException) -> tuple[Response, int]:
        return error_response(404, "not_found", "no such file")

    @server.errorhandler(Exception)
    def _failed(exc: Exception) -> tuple[Response, int] | HTTPException:
        if isinstance(exc, HTTPException):  # a 404, 405, ...: its own answer
            return exc
        reference = reference_for(log, f"{request.method} {request.path} failed", exc, traceback=True)
        return error_response(500, "internal_error", "this request could not be answered", reference=reference)


def is_callback_request(body: Any, callbacks: dict[str, Any]) -> bool:
    """True for the body Dash's renderer posts: a registered ``output``, ``outputs`` as an object or
    a list, ``inputs`` (and ``state``) lists of objects with an ``id`` and a ``property``, and
    ``changedPropIds`` a list of strings."""
    if not isinstance(body, dict) or not isinstance(body.get("output"), str) or body["output"] not in callbacks:
        return False
    if not isinstance(body.get("outputs"), (dict, list)) or not isinstance(body.get("changedPropIds", []), list):
        return False
    if not all(isinstance(name, str) for name in body.get("changedPropIds", [])):
        return False
    return all(_props_list(body.get(part, [])) for part in ("inputs", "state"))


def _props_list(items: Any) -> bool:
    """A list of ``{"id", "property", ...}`` objects, or of lists of them (pattern-matching inputs)."""
    if not isinstance(items, list):
        return False
    flat = [entry for item in items for entry in (item if isinstance(item, list) else [item])]
    return all(isinstance(entry, dict) and "id" in entry and isinstance(entry.get("property"), str)
               for entry in flat)
