"""Security headers on every response, a policy that lets only the page's own scripts run, and a
/healthz that tells visitors only whether the app is up. (The browser tests run every page under
this policy and fail on any console error, a blocked script included.)"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import replace

import pytest
from flask import Flask

from bi_app.config import Config
from bi_app.security import add_security_headers
from tests.support import URL_PASSWORD

PATHS = ["/", "/segments", "/_dash-layout", "/api/v1/kpis", "/api/v1/openapi.json", "/export/regions.csv", "/healthz",
         "/assets/style.css", "/nothing-here"]


@pytest.mark.parametrize("path", PATHS)
def test_every_response_carries_the_security_headers(client, path: str) -> None:  # noqa: ANN001
    response = client.get(path)
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
    assert "connect-src 'self'" in policy and "object-src 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "Strict-Transport-Security" not in response.headers  # BI_HTTPS is off in the tests


def test_every_inline_script_of_the_page_is_allowed_by_its_hash_and_no_other_is(client) -> None:  # noqa: ANN001
    response = client.get("/")
    policy = response.headers["Content-Security-Policy"]
    script_sources = re.search(r"script-src ([^;]+)", policy).group(1).split()
    assert "'unsafe-inline'" not in script_sources and "'unsafe-eval'" not in script_sources
    page = response.get_data(as_text=True)
    page = re.sub(r"<!--.*?-->", "", page, flags=re.S)  # conditional comments never run
    inline = [body for attributes, body in re.findall(r"<script(?![^>]*\ssrc=)([^>]*)>(.*?)</script>", page, re.S)
              if "application/json" not in attributes]
    assert inline, "Dash's renderer starts from an inline script"
    for body in inline:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in script_sources


def test_hsts_and_secure_cookies_behind_https() -> None:
    server = Flask("hsts")
    server.get("/")(lambda: "ok")
    add_security_headers(server, replace(Config.from_env({}), https=True), [])
    response = server.test_client().get("/", headers={"X-Forwarded-Proto": "https"})
    assert "max-age=" in response.headers["Strict-Transport-Security"]
    assert server.config["SESSION_COOKIE_SECURE"] is True and server.config["SESSION_COOKIE_HTTPONLY"] is True


def test_healthz_tells_a_visitor_only_whether_the_app_is_up(client) -> None:  # noqa: ANN001
    local = client.get("/healthz").get_json()
    assert local["status"] == "ok" and "database" in local and "data_version" in local
    for visitor in ({"environ_base": {"REMOTE_ADDR": "203.0.113.9"}},
                    {"headers": {"X-Forwarded-For": "203.0.113.9"}},  # through nginx on this machine
                    {"headers": {"Forwarded": "for=203.0.113.9"}}):
        response = client.get("/healthz", **visitor)
        assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_healthz_keeps_the_reason_of_an_outage_for_the_operator(app, client, monkeypatch) -> None:  # noqa: ANN001
    from bi_app.context import CONFIG_KEY

    down = replace(app.server.config[CONFIG_KEY], database_url=f"postgresql://bi:{URL_PASSWORD}@127.0.0.1:1/shop",
                   embedded=False, connect_timeout_s=2)
    monkeypatch.setitem(app.server.config, CONFIG_KEY, down)
    visitor = client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
    assert visitor.status_code == 503 and visitor.get_json() == {"status": "unavailable"}
    operator = client.get("/healthz")
    assert operator.status_code == 503 and "127.0.0.1:1" in operator.get_json()["database"]
    assert URL_PASSWORD not in operator.get_data(as_text=True)


CALLBACK = {"output": "page-content.children", "outputs": {"id": "page-content", "property": "children"},
            "inputs": [{"id": "url", "property": "pathname", "value": "/"}], "changedPropIds": ["url.pathname"]}


def test_a_real_callback_request_is_answered(client) -> None:  # noqa: ANN001
    assert client.post("/_dash-update-component", json=CALLBACK).status_code == 200


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b"5", b'{"output": 5}', b'{"output": "nope.children", "outputs": {}, "inputs": []}',
    {**CALLBACK, "inputs": [5]}, {**CALLBACK, "inputs": "url"}, {**CALLBACK, "changedPropIds": [7]},
    {**CALLBACK, "outputs": "page-content"}, {**CALLBACK, "state": [{"id": "x"}]},
], ids=repr)
def test_a_malformed_callback_request_is_a_400_without_internals(client, body) -> None:  # noqa: ANN001
    if isinstance(body, bytes):
        response = client.post("/_dash-update-component", data=body, content_type="application/json")
    else:
        response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 400
    assert response.get_json() == {"error": {"code": "bad_request", "message": "not a callback request this app knows"}}


@pytest.mark.parametrize("path", ["/_dash-component-suites/nope/x.js", "/_dash-component-suites/dash/../../etc/passwd",
                                  "/_dash-component-suites/dash/nothing.js"])
def test_a_script_of_no_library_is_a_404(client, path: str) -> None:  # noqa: ANN001
    response = client.get(path)
    assert response.status_code == 404 and "Traceback" not in response.get_data(as_text=True)


def test_a_failure_in_a_callback_answers_a_reference_and_logs_the_traceback(client, monkeypatch, caplog) -> None:  # noqa: ANN001
    from bi_app import shell

    def broken(_pathname: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(shell, "page_for", broken)
    response = client.post("/_dash-update-component", json=CALLBACK)
    body = response.get_data(as_text=True)
    assert response.status_code == 500 and "secret internals" not in body and "RuntimeError" not in body
    reference = response.get_json()["error"]["reference"]
    assert any(reference in record.getMessage() and record.exc_info for record in caplog.records)


@pytest.mark.parametrize("headers, address", [({"X-Forwarded-For": "203.0.113.9"}, "127.0.0.1"),
                                              ({"Forwarded": "for=203.0.113.9"}, "127.0.0.1"), ({}, "192.0.2.7")])
def test_demo_mode_answers_this_machine_only(client, headers: dict, address: str) -> None:  # noqa: ANN001
    for path in ("/", "/api/v1/kpis", "/_dash-layout", "/export/orders.csv"):
        refused = client.get(path, headers=headers, environ_base={"REMOTE_ADDR": address})
        assert refused.status_code == 403 and "demo mode" in refused.get_json()["error"]["message"], path
    assert client.get("/healthz", headers=headers, environ_base={"REMOTE_ADDR": address}).status_code == 200


def test_demo_mode_says_so_in_the_menu(client) -> None:  # noqa: ANN001
    layout = client.get("/_dash-layout").get_data(as_text=True)
    assert '"id":"demo-badge"' in layout and "Demo mode: no sign-in" in layout and "logout-form" not in layout


def test_demo_mode_has_no_sign_in_to_visit(client) -> None:  # noqa: ANN001
    for path in ("/login", "/logout"):
        answer = client.get(path)
        assert answer.status_code == 302 and answer.headers["Location"] == "/", path


def test_a_path_of_no_page_is_a_404(client) -> None:  # noqa: ANN001
    page = client.get("/no-such-page", headers={"Accept": "text/html"})
    assert page.status_code == 404 and "Page not found" in page.get_data(as_text=True)
    assert client.get("/segments/nested/deeper").status_code == 404
    assert client.get("/no-such-page").get_json()["error"]["code"] == "not_found"
    for path in ("/", "/segments", "/regions/", "/data"):
        assert client.get(path).status_code == 200, path
