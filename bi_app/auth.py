"""Sign-in, roles and the guard in front of every route.

With ``BI_SECRET_KEY`` set, every request but the sign-in page, ``/healthz`` and the stylesheets
needs a signed-in user (a session cookie) or an API token (``Authorization: Bearer ...``), and the
role its route asks for (:func:`required_role`): pages and API reads a viewer, downloads and the
Data page an analyst, replacing every stored order an admin. Without a session a page is sent to
the sign-in page and anything else gets 401; with too low a role, 403. The user's regions become
the scope of every filter parsed for the request (:func:`bi_app.service.parse_request`).

Without ``BI_SECRET_KEY`` the app is in demo mode: no sign-in, everyone is the demo admin, and it
answers this machine only (a request from elsewhere or through a proxy gets 403).

Well-kept libraries do the security work: Flask-Login keeps the session (a cookie signed with the
secret key: HttpOnly, SameSite=Lax, Secure under ``BI_HTTPS``), Flask-WTF checks the CSRF token
of every form and of every state-changing callback (Dash's renderer sends the ``_csrf_token``
cookie back as ``X-CSRFToken``), and Flask-Limiter counts failed sign-ins per user name and per
address (in Redis when ``BI_CACHE_URL`` is set, so every worker and server shares the count).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import dash
from flask import Response, current_app, g, redirect, render_template_string, request, session
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter, RateLimitExceeded
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.middleware.proxy_fix import ProxyFix

from bi_app.config import Config, write_engine_for
from bi_app.context import (
    DOWNLOAD_ROLE,
    IMPORT_ROLE,
    USER_KEY,
    current_config,
    from_this_machine,
    page_for,
    signed_in_user,
)
from bi_app.errors import error_response
from bi_app.incidents import reference_for
from bi_app.security import CALLBACK_PATH, requested_callback
from data_layer import audit, users
from data_layer.users import User

log = logging.getLogger(__name__)

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
#: Answered to anyone: the sign-in page, the load balancer's check, the stylesheets and icon it uses.
PUBLIC_PATHS = (LOGIN_PATH, "/healthz", "/_favicon.ico")
PUBLIC_PREFIXES = ("/assets/",)
#: Routes whose role is not a page's: downloads need an analyst.
METRICS_PATH = "/metrics"
ROUTE_ROLES = {"/export/": DOWNLOAD_ROLE, "/api/": "viewer", METRICS_PATH: "admin", "/upload": IMPORT_ROLE}
#: The cookie Dash's renderer sends back as the ``X-CSRFToken`` header on every callback.
CSRF_COOKIE = "_csrf_token"
#: Failed sign-ins allowed per user name, and per address (several people may share one).
FAILED_LOGINS_PER_NAME = "5 per minute; 20 per hour"
FAILED_LOGINS_PER_ADDRESS = "20 per minute; 100 per hour"


class SignedIn(UserMixin):
    """Flask-Login's view of a :class:`User` signed in by a session (its id, kept in ``bi_sessions``
    until it ends) or by an API token (the token's id)."""

    def __init__(self, user: User, *, session_id: str | None = None, token_id: str | None = None) -> None:
        self.user = user
        self.session_id = session_id
        self.token_id = token_id

    def get_id(self) -> str | None:
        return self.session_id


def install(app: dash.Dash, config: Config) -> None:
    """Put sign-in, CSRF checks, sign-in limits and the role guard in front of every route of ``app``."""
    server = app.server
    if config.trusted_proxies:
        server.wsgi_app = ProxyFix(server.wsgi_app, x_for=config.trusted_proxies,
                                   x_proto=config.trusted_proxies)
    server.secret_key = config.secret_key
    server.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.https,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=config.session_hours),
        # Checked by the guard (not for token requests, which carry no cookie to forge).
        WTF_CSRF_CHECK_DEFAULT=False,
        # A token lasts as long as the session: a dashboard left open an afternoon still works.
        WTF_CSRF_TIME_LIMIT=None,
    )
    csrf = CSRFProtect(server)
    logins = LoginManager(server)
    logins.user_loader(_session_user)
    logins.request_loader(_token_user)
    limiter = Limiter(_address, app=server, storage_uri=config.cache_url or "memory://",
                      in_memory_fallback_enabled=True, key_prefix="bi-login")
    failed: Callable[[Response], bool] = lambda _response: bool(g.get("login_failed"))  # noqa: E731
    login_view = limiter.limit(FAILED_LOGINS_PER_NAME, key_func=_typed_name, methods=["POST"], deduct_when=failed)(
        limiter.limit(FAILED_LOGINS_PER_ADDRESS, methods=["POST"], deduct_when=failed)(_login_view))
    server.add_url_rule(LOGIN_PATH, "login", login_view, methods=["GET", "POST"])
    server.add_url_rule(LOGOUT_PATH, "logout", _logout_view, methods=["GET", "POST"])
    server.before_request(lambda: _guard(app, csrf))
    server.after_request(_send_csrf_cookie)
    server.register_error_handler(CSRFError, _csrf_failed)
    server.register_error_handler(RateLimitExceeded, _too_many_failures)


def required_role(app: dash.Dash, path: str) -> str:
    """The least role that may use ``path`` (for Dash's callback route: the role of the page whose
    module defines the requested callback; a callback of no page, such as the filter bar's, a viewer's)."""
    for prefix, role in ROUTE_ROLES.items():
        if path.startswith(prefix):
            return role
    if path == CALLBACK_PATH:
        output = requested_callback(app.callback_map)
        spec = app.callback_map[output] if output is not None else None
        module = getattr(spec.get("callback"), "__module__", None) if spec else None
        page = dash.page_registry.get(module) if module else None
        return page.get("role", "viewer") if page else "viewer"
    page = page_for(path)
    return page.get("role", "viewer") if page else "viewer"


def may_open(user: User, page: dict) -> bool:
    """True when ``user``'s role is enough for ``page`` (a registered page's ``role``, default viewer)."""
    return user.may(page.get("role", "viewer"))


def record(action: str, *, rows: int | None = None, detail: str = "", user_name: str | None = None) -> None:
    """Add ``action`` by this request's user to the audit log, with the route, filters and address; a
    database that refuses the entry is logged, and the request goes on."""
    if user_name is None:
        signed_in = signed_in_user()
        user_name = signed_in.name
        token = getattr(current_user, "token_id", None) if current_config().secret_key else None
        detail = f"{detail} (API token {token})".strip() if token else detail
    filters = request.query_string.decode(errors="replace")
    entry = audit.AuditEntry(audit.now(), user_name, action, request.path, filters, rows, _address(), detail)
    try:
        with write_engine_for(current_config()).begin() as conn:
            audit.record(conn, entry)
    except SQLAlchemyError as exc:
        reference_for(log, f"Could not add {action} by {user_name} to the audit log", exc)


def _guard(app: dash.Dash, csrf: CSRFProtect) -> ResponseReturnValue | None:
    config = current_config()
    if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
        return None
    if request.path == METRICS_PATH and from_this_machine():  # the operator's own scraper; else admins only
        return None
    if not config.secret_key:
        if not from_this_machine():
            return error_response(403, "forbidden", "this server runs in demo mode, without sign-in, and answers "
                                  "the machine it runs on only; its operator must set a secret key to share it")
        return None
    if not current_user.is_authenticated:
        if request.path == LOGOUT_PATH:  # signed out already (the session ended): nothing to do
            return redirect(LOGIN_PATH)
        if "text/html" in request.headers.get("Accept", "") and request.method == "GET":
            return redirect(f"{LOGIN_PATH}?next={quote(request.full_path.rstrip('?'))}")
        if g.get("refused_token"):
            return error_response(401, "unauthorized", "this API token is not valid: revoked, of a removed user, "
                                  "or mistyped")
        return error_response(401, "unauthorized", "sign in first, or send an API token "
                              "(Authorization: Bearer ...)")
    # A method or path the routes do not take gets its 405 or 404 from routing, not a CSRF refusal.
    if request.method not in ("GET", "HEAD", "OPTIONS") and current_user.token_id is None \
            and request.routing_exception is None:
        csrf.protect()
    g.setdefault(USER_KEY, current_user.user)
    needed = required_role(app, request.path)
    if not current_user.user.may(needed):
        if "text/html" in request.headers.get("Accept", "") and request.method == "GET":
            return message_page(f"This page needs the {needed} role; you are signed in as {current_user.user.name} "
                         f"({current_user.user.role}).", title="Not allowed", status=403)
        return error_response(403, "forbidden", f"this needs the {needed} role; {current_user.user.name} is "
                              f"{current_user.user.role}")
    return None


def _session_user(session_id: str) -> SignedIn | None:
    user = _read(lambda conn: users.session_user(conn, session_id))
    return SignedIn(user, session_id=session_id) if user is not None else None


def _token_user(req: Any) -> SignedIn | None:
    scheme, _sep, secret = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    found = _read(lambda conn: users.user_for_token(conn, secret.strip()))
    if not found:
        g.refused_token = True
        return None
    return SignedIn(found[0], token_id=found[1])


def _read(query: Callable[[Any], Any]) -> Any:
    """``query`` on a connection of the primary (a replica may not have a new session yet); a database that
    cannot answer means no user."""
    try:
        with write_engine_for(current_config()).connect() as conn:
            return query(conn)
    except SQLAlchemyError as exc:
        reference_for(log, "Could not read the users", exc)
        return None


def _login_view() -> ResponseReturnValue:
    if not current_config().secret_key:
        return redirect("/")
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return redirect(target) if current_user.is_authenticated else _login_page(target)
    try:
        current_app.extensions["csrf"].protect()
    except CSRFError:
        return _login_page(target, "The form had expired. Please sign in again.", status=400)
    name = (request.form.get("name") or "").strip()[:users.ID_LIMIT]
    password = request.form.get("password") or ""
    try:
        with write_engine_for(current_config()).connect() as conn:
            user = users.authenticate(conn, name, password) if name and password else None
    except SQLAlchemyError as exc:  # not a failed sign-in: nobody could have signed in
        reference = reference_for(log, "Could not read the users to sign someone in", exc)
        return _login_page(target, f"Signing in is not possible right now (reference {reference}). Please try "
                           "again in a few minutes.", name=name, status=503)
    if user is None:
        g.login_failed = True
        record("login_failed", user_name=name or "(none)")
        return _login_page(target, "Wrong user name or password.", name=name, status=401)
    session.clear()  # a new session: nothing from before sign-in carries over
    try:
        with write_engine_for(current_config()).begin() as conn:
            session_id = users.start_session(conn, user)
    except SQLAlchemyError as exc:
        reference = reference_for(log, f"Could not start a session of {user.name}", exc)
        return _login_page(target, f"Signing in is not possible right now (reference {reference}). Please try again "
                           "in a few minutes.", name=name, status=503)
    login_user(SignedIn(user, session_id=session_id))
    session.permanent = True
    g.setdefault(USER_KEY, user)
    record("login")
    return redirect(target)


def _logout_view() -> ResponseReturnValue:
    if not current_config().secret_key:  # demo mode: no one signs in or out
        return redirect("/")
    if request.method == "GET":  # a link: ask, so no page elsewhere can sign the user out
        return message_page("Sign out of E-commerce BI?", title="Sign out", form=LOGOUT_PATH, button="Sign out")
    if current_user.session_id is None:  # an API token: nothing to sign out of (revoke it instead)
        return error_response(400, "bad_request", "an API token does not sign out; revoke it with bi-app tokens revoke")
    record("logout")
    try:
        with write_engine_for(current_config()).begin() as conn:
            users.end_session(conn, current_user.session_id)
    except SQLAlchemyError as exc:  # the browser's cookie is cleared all the same
        reference_for(log, f"Could not end a session of {current_user.user.name} in the database", exc)
    logout_user()
    session.clear()
    response = redirect(LOGIN_PATH)
    response.delete_cookie(CSRF_COOKIE)
    return response


def _send_csrf_cookie(response: Response) -> Response:
    """Give a signed-in page the CSRF token its callbacks send back (the renderer reads the cookie)."""
    if (current_config().secret_key and response.mimetype == "text/html" and request.method == "GET"
            and current_user.is_authenticated and current_user.token_id is None):
        response.set_cookie(CSRF_COOKIE, generate_csrf(), secure=current_config().https, samesite="Strict",
                            httponly=False)  # the renderer's script must read it
    return response


def _csrf_failed(exc: CSRFError) -> tuple[Response, int]:
    log.info("Refused %s %s: %s", request.method, request.path, exc.description)
    return error_response(400, "csrf_failed", "the page's security token is missing or out of date; reload the page")


def _too_many_failures(_exc: RateLimitExceeded) -> ResponseReturnValue:
    # In the server's log, not the audit table: refusals cost no check, and a flood of them must not fill a table.
    log.warning("Refused a sign-in as %r from %s: too many failed sign-ins", _typed_name()[5:], _address())
    page, status = _login_page(_safe_next(request.values.get("next")), "Too many failed sign-ins. Wait a few minutes, "
                               "then try again.", name=(request.form.get("name") or "")[:users.ID_LIMIT], status=429)
    return page, status, {"Retry-After": "60"}


def _typed_name() -> str:
    return f"name:{(request.form.get('name') or '').strip().lower()[:users.ID_LIMIT]}"


def _address() -> str:
    return request.remote_addr or ""


def _safe_next(target: str | None) -> str:
    """``target`` when it is a path of this site (``/segments?region=North``), else the overview:
    never another site (``//evil.example``, ``https://...``, ``/\\evil``)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(char) < 32 for char in target):
        return "/"
    return target


def _login_page(target: str, message: str | None = None, *, name: str = "", status: int = 200) -> tuple[str, int]:
    return render_template_string(LOGIN_TEMPLATE, target=target, message=message, name=name,
                                  csrf_token=generate_csrf()), status


def message_page(message: str, *, title: str, status: int = 200, form: str | None = None,
                 button: str | None = None, link: tuple[str, str] | None = None,
                 refresh: tuple[int, str] | None = None) -> tuple[str, int]:
    """A page of the app's look with ``message``: a form's ``button`` (posting to ``form``), or a ``link``
    (address, text) above the way back; with ``refresh`` (seconds, address), the browser goes there then."""
    return render_template_string(MESSAGE_TEMPLATE, title=title, message=message, form=form, button=button,
                                  link=link, refresh=refresh, csrf_token=generate_csrf() if form else ""), status


_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{{ title }} · E-commerce BI</title>
  {% if refresh %}<meta http-equiv="refresh" content="{{ refresh[0] }}; url={{ refresh[1] }}">{% endif %}
  <link rel="icon" href="/_favicon.ico">
  <link rel="stylesheet" href="/assets/00_bootstrap_flatly.min.css">
</head>
<body class="bg-light">
<main class="container py-5" style="max-width: 26rem">
  <h1 class="h3 mb-4">E-commerce BI</h1>
"""
_FOOT = """</main>
</body>
</html>
"""
LOGIN_TEMPLATE = _HEAD.replace("{{ title }}", "Sign in") + """
  <form method="post" action="/login" class="card card-body shadow-sm" id="login-form">
    <h2 class="h5 mb-3">Sign in</h2>
    {% if message %}<div class="alert alert-danger py-2" role="alert" id="login-message">{{ message }}</div>{% endif %}
    <input type="hidden" name="csrf_token" value="{{ csrf_token }}">
    <input type="hidden" name="next" value="{{ target }}">
    <label class="form-label" for="login-name">User name</label>
    <input class="form-control mb-3" id="login-name" name="name" value="{{ name }}" autocomplete="username"
           autocapitalize="none" required autofocus>
    <label class="form-label" for="login-password">Password</label>
    <input class="form-control mb-3" id="login-password" name="password" type="password"
           autocomplete="current-password" required>
    <button class="btn btn-primary" type="submit" id="login-submit">Sign in</button>
  </form>
""" + _FOOT
MESSAGE_TEMPLATE = _HEAD + """
  <div class="card card-body shadow-sm">
    <p id="page-message">{{ message }}</p>
    {% if form %}
    <form method="post" action="{{ form }}">
      <input type="hidden" name="csrf_token" value="{{ csrf_token }}">
      <button class="btn btn-primary" type="submit">{{ button }}</button>
      <a class="btn btn-link" href="/">Back to the dashboard</a>
    </form>
    {% else %}
    {% if link %}<p><a class="btn btn-primary" id="page-link" href="{{ link[0] }}">{{ link[1] }}</a></p>{% endif %}
    <a href="/">Back to the dashboard</a>
    {% endif %}
  </div>
""" + _FOOT
