"""Hostile requests against a real server with sign-in on, signed out and signed in as an admin: SQL
injection, path traversal, malformed and oversize JSON, callback payloads of odd types, header tricks.
None may answer 5xx, and no answer may carry a traceback or an internal detail."""

from __future__ import annotations

import re
import uuid

import pytest
import requests

from tests.conftest import SecuredSite
from tests.support import USER_PASSWORD
from tests.test_access import callback_body, sign_in

pytestmark = pytest.mark.slow

INJECTIONS = ["' OR '1'='1", "North'; DROP TABLE advanced_sales_data; --", "1 UNION SELECT password_hash FROM bi_users",
              "%00", "\x00", "😀" * 50, "a" * 3000, "${jndi:ldap://x}", "<script>alert(1)</script>", "../../etc/passwd"]
QUERY_TARGETS = ["/api/v1/kpis", "/api/v1/distribution", "/api/v1/lifecycle", "/export/regions.csv", "/regions"]
PARAMETERS = ["region", "start", "end", "period", "compare", "bins", "churn_days", "months"]
TRAVERSALS = [
    "/assets/../bi_app/config.py", "/assets/%2e%2e/%2e%2e/etc/passwd", "/assets/..%2f..%2fpyproject.toml",
    "/_dash-component-suites/dash/../../../etc/passwd", "/_dash-component-suites/../../etc/passwd",
    "/_dash-component-suites/dash/%2e%2e/%2e%2e/bi_app/config.py", "/static/../../etc/passwd",
    "/export/imports/../../etc/passwd/report.csv", f"/export/imports/{uuid.uuid4().hex}/..%2f..%2fx.csv",
    "/export/targets/..%2F..%2Fetc.csv", "//etc/passwd", "/api/v1/..%2f..%2fetc", "/%2e%2e/%2e%2e/etc/passwd",
    "/export/..;/api/v1/kpis", "/_dash-component-suites/dash_bootstrap_components/_components/%00.js",
]
MALFORMED_BODIES = [b"{", b"[]", b"null", b"1", b'"text"', b'{"output": 1}', b'{"output": "x", "inputs": 5}',
                    b"\xff\xfe\xfd", b"[" * 5000 + b"]" * 5000, b'{"output": "page-content.children", "outputs": '
                    b'{"id": "page-content", "property": "children"}, "inputs": [{"id": "url"}]}']
ODD_VALUES = [{"a": 1}, [[1, 2]], 1e308, -1, "x" * 20000, True, [{"id": 1}], ["a"] * 50000]
#: What must never reach a browser: Python's tracebacks and exception names, the server's paths, the database's words.
LEAKS = re.compile(r"Traceback|File \"|site-packages|/work/|sqlalchemy|psycopg|sqlite3\.|duckdb\.|"
                   r"\b(Key|Type|Value|Attribute|Index|Operational|Programming)Error\b|advanced_sales_data|bi_users")


def check(answer: requests.Response, what: str) -> None:
    assert answer.status_code < 500, (what, answer.status_code, answer.text[:300])
    if answer.headers.get("Content-Type", "").split(";")[0] in ("application/json", "text/html", "text/plain"):
        body = answer.text
        # Dash's index page carries its own scripts' names; look at what the server wrote.
        assert not LEAKS.search(re.sub(r"<script.*?</script>", "", body, flags=re.S)), (what, body[:500])


@pytest.fixture(scope="module")
def hostile_sessions(secured_site: SecuredSite) -> dict[str, requests.Session]:
    return {"signed out": requests.Session(), "admin": sign_in(secured_site, "adam")}


def send(session: requests.Session, method: str, url: str, **kwargs) -> requests.Response:
    """One request with ``session``'s cookies, on a connection of its own (a server may close a connection
    after refusing a large body it did not read, as it should)."""
    headers = {"X-CSRFToken": session.cookies.get("_csrf_token", ""), "Connection": "close",
               **kwargs.pop("headers", {})}
    return requests.request(method, url, headers=headers, cookies=session.cookies, timeout=120,
                            allow_redirects=False, **kwargs)


def test_hostile_requests_get_no_5xx_and_no_internal_detail(secured_site: SecuredSite, hostile_sessions) -> None:
    base, sent = secured_site.base, 0
    dependencies = hostile_sessions["admin"].get(f"{base}/_dash-dependencies", timeout=30).json()
    dependencies = [d for d in dependencies if d.get("clientside_function") is None]
    for who, session in hostile_sessions.items():
        for target in QUERY_TARGETS:
            for parameter in PARAMETERS:
                for value in INJECTIONS[:5] if parameter != "region" else INJECTIONS:
                    check(send(session, "GET", f"{base}{target}", params={parameter: value}), f"{who} {target} {value}")
                    sent += 1
        for path in TRAVERSALS:
            check(send(session, "GET", f"{base}{path}"), f"{who} {path}")
            sent += 1
        for body in MALFORMED_BODIES:
            check(send(session, "POST", f"{base}/_dash-update-component", data=body,
                       headers={"Content-Type": "application/json"}), f"{who} body {body[:40]!r}")
            sent += 1
        check(send(session, "POST", f"{base}/_dash-update-component", data=b'{"a": "' + b"x" * 5_000_000 + b'"}',
                   headers={"Content-Type": "application/json"}), f"{who} oversize body")
        for dependency in dependencies:
            names = [f"{i['id']}.{i['property']}" for i in dependency["inputs"] + dependency["state"]]
            for value in ODD_VALUES:
                body = callback_body(dependency, dict.fromkeys(names, value))
                check(send(session, "POST", f"{base}/_dash-update-component", json=body),
                      f"{who} {dependency['output'][:60]} {str(value)[:30]}")
                sent += 1
        for headers in ({"Host": "evil.example"}, {"X-Forwarded-For": "127.0.0.1"}, {"X-Forwarded-Host": "evil"},
                        {"Authorization": "Bearer bi_x_y"}, {"Authorization": "Bearer " + "a" * 5000},
                        {"Authorization": "Basic YWRtaW46YWRtaW4="}, {"Cookie": "session=forged.cookie.value"},
                        {"X-CSRFToken": "x" * 4000}, {"Accept": "text/html;q=abc"}, {"Range": "bytes=999999-"},
                        {"Content-Type": "application/json; charset=utf-7"}):
            for path in ("/", "/api/v1/kpis", "/export/orders.csv", "/healthz", "/login"):
                check(send(session, "GET", f"{base}{path}", headers=headers), f"{who} {path} {headers}")
                sent += 1
        for method in ("PUT", "DELETE", "PATCH", "TRACE"):
            for path in ("/", "/api/v1/kpis", "/_dash-update-component", "/login", "/export/orders.csv"):
                check(send(session, method, f"{base}{path}"), f"{who} {method} {path}")
                sent += 1
    sent += hostile_sign_ins(base)
    assert sent >= 300, sent


def hostile_sign_ins(base: str) -> int:
    """Sign-in forms with odd fields, and ``next`` addresses that lead elsewhere (never followed); a few
    failures only, so the address's limit of failed sign-ins is not reached for the other tests."""
    session = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', session.get(f"{base}/login").text).group(1)
    wrong = USER_PASSWORD + "!"  # made for this run, like every password the tests use
    forms = [{"name": "' OR 1=1 --", "password": wrong}, {"name": "a" * 10000, "password": wrong * 5000},
             {"name": ["a", "b"], "password": wrong}, {"name": "adam"}, {}]
    for form in forms:
        check(session.post(f"{base}/login", data={"csrf_token": token, **form}, allow_redirects=False), str(form)[:80])
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "/%0d%0aX: y"):
        answer = session.get(f"{base}/login", params={"next": target}, allow_redirects=False)
        check(answer, target)
        assert "evil.example" not in answer.headers.get("Location", "")
    return len(forms) + 5
