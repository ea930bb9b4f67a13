"""Security headers on every response, by Flask-Talisman (a well-kept library that sets them all
and keeps up with what browsers expect, rather than headers of our own).

The Content-Security-Policy lets the page run only its own scripts and Dash's inline ones (by
their hashes), talk only to its own server, and never be framed: nothing on a page can send data
elsewhere. Styles may be inline (Dash, Plotly and AG Grid set them on elements).
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask
from flask_talisman import Talisman

from bi_app.config import Config


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
