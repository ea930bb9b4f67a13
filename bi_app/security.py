"""Security headers on every response, by Flask-Talisman (a well-kept library that sets them all
and keeps up with what browsers expect, rather than headers of our own); and malformed requests
to Dash's own routes answered 400 or 404, never a 500.

The Content-Security-Policy lets the page run only its own scripts and Dash's inline ones (by
their hashes), talk only to its own server, and never be framed: nothing on a page can send data
elsewhere. Styles may be inline (Dash, Plotly and AG Grid set them on elements).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import dash
from dash.exceptions import DependencyException
from flask import Flask, Response, request
from flask_talisman import Talisman
from werkzeug.exceptions import HTTPException

from bi_app.config import Config
from bi_app.context import page_for
from bi_app.errors import error_response
from bi_app.importing import MAX_UPLOAD_BYTES, UPLOAD_CHUNK_BYTES
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

    @server.after_request
    def _read_a_refused_body(response: Response) -> Response:
        """Read and drop the body of a request refused before it was read (no session, no CSRF token, a
        role too low: an upload's megabytes, a callback's): gunicorn closes a connection whose body it
        cannot skip, and nginx, still sending it, would answer 502 instead of this answer. A body past
        the largest upload is not read: that connection closes."""
        if response.status_code >= 400 and 0 < (request.content_length or 0) <= MAX_UPLOAD_BYTES:
            while request.stream.read(UPLOAD_CHUNK_BYTES):
                pass
        return response

    @server.before_request
    def _check_callback_request() -> tuple[Response, int] | None:
        if request.path != CALLBACK_PATH or request.method != "POST":
            return None
        body = json_body()
        if not is_callback_request(body, app.callback_map):
            output = body.get("output") if isinstance(body, dict) else None
            log.info("Refused a callback request not of its callback's shape (output %.200r)", output)
            return error_response(400, "bad_request", "not a callback request this app knows")
        return None

    @server.before_request
    def _no_such_page() -> tuple[Response, int] | None:
        # Dash answers its page for any path (``/<path:path>``): a path of no page is a 404, not a 200.
        rule = request.url_rule
        if request.method == "GET" and rule is not None and rule.rule == "/<path:path>" \
                and page_for(request.path) is None:
            if "text/html" in request.headers.get("Accept", ""):
                return Response(NOT_FOUND_PAGE, mimetype="text/html"), 404
            return error_response(404, "not_found", "no page here")
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


_SCALAR = (str, int, float, bool, type(None))
_TEXT = (str, type(None))
_COUNT = (int, type(None))
#: The types the renderer sends for the properties our callbacks read (anything else is a crafted request).
PROPERTY_TYPES: dict[str, tuple[type, ...]] = {
    "search": _TEXT, "pathname": _TEXT, "href": _TEXT, "hash": _TEXT, "contents": _TEXT, "filename": _TEXT,
    "start_date": _TEXT, "end_date": _TEXT, "n_clicks": _COUNT, "n_intervals": _COUNT, "n_submit": _COUNT,
    "is_open": (bool, type(None)), "getRowsRequest": (dict, type(None)), "value": (*_SCALAR, list),
}


def fits(prop: str, value: Any) -> bool:
    """True when ``value`` has a type the renderer sends for ``prop`` (a ``value`` list holds scalars only)."""
    if not isinstance(value, PROPERTY_TYPES.get(prop, (object,))):
        return False
    return not (prop == "value" and isinstance(value, list) and not all(isinstance(v, _SCALAR) for v in value))


NOT_FOUND_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Page not found · E-commerce BI</title><link rel="stylesheet" href="/assets/00_bootstrap_flatly.min.css"></head>
<body><main class="container py-5"><h1 class="h3">Page not found</h1>
<p>Nothing lives at this address. <a href="/">Back to the overview</a></p></main></body></html>
"""


def json_body() -> Any:
    """The request's JSON body; None when it is not JSON, or nests too deep to read."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None


def requested_callback(callbacks: dict[str, Any]) -> str | None:
    """The ``output`` of the registered callback this request's body names (the key of ``callbacks``, Dash's
    callback map); None for a body that names none."""
    body = json_body()
    output = body.get("output") if isinstance(body, dict) else None
    return output if isinstance(output, str) and output in callbacks else None


def is_callback_request(body: Any, callbacks: dict[str, Any]) -> bool:
    """True for the body Dash's renderer posts for a registered callback: its ``output``; its ``outputs``,
    ``inputs`` and ``state`` naming the components and properties the callback was registered with (a
    pattern-matched one by an id of its pattern), each input's value of the property's type (:func:`fits`);
    and ``changedPropIds`` a list of strings."""
    if not isinstance(body, dict) or not isinstance(body.get("output"), str) or body["output"] not in callbacks:
        return False
    spec = callbacks[body["output"]]
    several = body["output"].startswith("..")
    expected = [{"id": out.component_id_str(), "property": out.component_property} for out in spec["output"]] \
        if several else [{"id": spec["output"].component_id_str(), "property": spec["output"].component_property}]
    if not _arguments_match([body.get("outputs")] if not several else body.get("outputs"), expected, values=False):
        return False
    if not _arguments_match(body.get("inputs", []), spec.get("inputs", []), values=True):
        return False
    if not _arguments_match(body.get("state", []), spec.get("state", []), values=True):
        return False
    changed = body.get("changedPropIds", [])
    return isinstance(changed, list) and all(isinstance(name, str) for name in changed)


def _arguments_match(given: Any, expected: list[dict], *, values: bool) -> bool:
    """``given`` (a request's list of ``{"id", "property", "value"}``, a list of them for a pattern-matched
    group) are the ``expected`` components and properties, each value of its property's type."""
    if not isinstance(given, list) or len(given) != len(expected):
        return False
    for item, spec in zip(given, expected, strict=True):
        pattern = spec["id"].startswith("{")
        entries = item if pattern and isinstance(item, list) else [item]
        for entry in entries:
            # An output allowed to be set by several callbacks is named ``prop@<hash>`` on one side or both.
            if not isinstance(entry, dict) or not isinstance(entry.get("property"), str) or \
                    entry["property"].split("@")[0] != spec["property"].split("@")[0]:
                return False
            if not (_fits_pattern(entry.get("id"), spec["id"]) if pattern else entry.get("id") == spec["id"]):
                return False
            if values and not fits(spec["property"], entry.get("value")):
                return False
    return True


def _fits_pattern(component_id: Any, pattern: str) -> bool:
    """True for a dict id with the pattern's keys, equal to it where the pattern has no wildcard."""
    wanted = json.loads(pattern)
    if not isinstance(component_id, dict) or component_id.keys() != wanted.keys():
        return False
    return all(isinstance(component_id[key], (str, int, float))
               and (isinstance(value, list) or component_id[key] == value) for key, value in wanted.items())
