"""Access control on a real server over HTTP (SQLite, and PostgreSQL read through a SELECT-only role):
sign-in, roles on every route and callback, region scopes, API tokens and the audit log."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import uuid
from urllib.parse import quote, urlsplit

import pandas as pd
import pytest
import requests

from tests.conftest import SITE_PASSWORD, SITE_USERS, SecuredSite
from tests.support import BI_APP, NEW_PASSWORD, callback_body

pytestmark = pytest.mark.slow


def sign_in(site: SecuredSite, name: str, password: str = SITE_PASSWORD) -> requests.Session:
    """A browser-like session signed in as ``name``, holding the CSRF cookie a page gives."""
    session = requests.Session()
    form = session.get(f"{site.base}/login", timeout=30).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    answer = session.post(f"{site.base}/login", data={"csrf_token": token, "name": name, "password": password,
                                                      "next": "/"}, allow_redirects=False, timeout=30)
    assert answer.status_code == 302 and answer.headers["Location"] == "/", answer.text[:300]
    page = session.get(f"{site.base}/", headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 200 and "_csrf_token" in session.cookies
    return session


def callback(session: requests.Session, site: SecuredSite, body: dict, *, csrf: bool = True) -> requests.Response:
    headers = {"X-CSRFToken": session.cookies.get("_csrf_token", "")} if csrf else {}
    return session.post(f"{site.base}/_dash-update-component", json=body, headers=headers, timeout=120)


@pytest.fixture(scope="module")
def dependencies(secured_site: SecuredSite) -> list[dict]:
    """Every registered server-side callback, as the renderer learns them."""
    answer = sign_in(secured_site, "adam").get(f"{secured_site.base}/_dash-dependencies", timeout=30)
    return [d for d in answer.json() if d.get("clientside_function") is None]


def by_output(dependencies: list[dict], output_part: str) -> dict:
    return next(d for d in dependencies if output_part in d["output"])


# Every route the server has, with sample values for its parameters (the list is checked against the app's own).
ROUTES = [
    "/", "/segments", "/regions", "/clusters", "/strategy", "/data", "/reports", "/no-such-page", "/_dash-layout",
    "/_dash-dependencies", "/_reload-hash", "/_dash-component-suites/dash/dash-renderer/build/dash_renderer.min.js",
    "/_dash-component-suites/plotly/package_data/plotly.min.js", "/static/x.js", "/api/v1/", "/api/v1/kpis",
    "/api/v1/openapi.json", "/export/orders.csv", "/export/customers.csv", "/export/customers.xlsx",
    "/export/targets/vip.csv", f"/export/imports/{uuid.uuid4().hex}/report.csv", "/export/regions.csv",
    "/export/orders.xlsx", "/export/report.xlsx", "/export/summary.pdf",
]
PUBLIC = ["/login", "/healthz", "/assets/style.css", "/_favicon.ico"]
#: Answered without a session to a caller on the server itself only (the operator's scraper).
ON_THE_SERVER = ["/metrics"]


def test_the_route_list_covers_every_route_of_the_app(app) -> None:
    """Each rule of the app is matched by one of :data:`ROUTES` or :data:`PUBLIC` (a new route must be added)."""
    adapter = app.server.url_map.bind("localhost")
    reached = {adapter.match(path, method="GET")[0] for path in ROUTES + PUBLIC + ON_THE_SERVER}
    reached |= {adapter.match(path, method="POST")[0] for path in ("/logout", "/_dash-update-component", "/upload")}
    assert {rule.endpoint for rule in app.server.url_map.iter_rules()} - reached == set()


@pytest.mark.parametrize("path", ROUTES)
def test_without_a_session_every_route_refuses(secured_site: SecuredSite, path: str) -> None:
    as_api = requests.get(f"{secured_site.base}{path}", timeout=30, allow_redirects=False)
    assert as_api.status_code == 401 and as_api.json()["error"]["code"] == "unauthorized"
    as_page = requests.get(f"{secured_site.base}{path}", headers={"Accept": "text/html"}, timeout=30,
                           allow_redirects=False)
    assert as_page.status_code == 302
    location = urlsplit(as_page.headers["Location"])
    assert location.path == "/login" and not location.netloc


@pytest.mark.parametrize("path", PUBLIC)
def test_the_sign_in_page_health_check_and_stylesheets_answer_anyone(secured_site: SecuredSite, path: str) -> None:
    answer = requests.get(f"{secured_site.base}{path}", timeout=30)
    assert answer.status_code in (200, 204)
    if path == "/healthz":  # a visitor through a proxy gets the status alone
        assert requests.get(f"{secured_site.base}{path}", headers={"X-Forwarded-For": "203.0.113.9"},
                            timeout=30).json() == {"status": "ok"}


@pytest.mark.parametrize("path", ON_THE_SERVER)
def test_the_metrics_answer_the_server_itself_and_no_one_through_a_proxy(secured_site: SecuredSite,
                                                                         path: str) -> None:
    assert requests.get(f"{secured_site.base}{path}", timeout=30).status_code == 200
    proxied = requests.get(f"{secured_site.base}{path}", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=30)
    assert proxied.status_code == 401 and "bi_http_requests" not in proxied.text
    viewer = sign_in(secured_site, "nora")
    refused = viewer.get(f"{secured_site.base}{path}", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=30)
    assert refused.status_code == 403
    admin = sign_in(secured_site, "adam")
    assert admin.get(f"{secured_site.base}{path}", headers={"X-Forwarded-For": "203.0.113.9"},
                     timeout=30).status_code == 200


def test_every_callback_refuses_a_request_without_a_session(secured_site: SecuredSite, dependencies) -> None:
    assert len(dependencies) >= 15
    for dependency in dependencies:
        answer = requests.post(f"{secured_site.base}/_dash-update-component", json=callback_body(dependency),
                               timeout=30)
        assert answer.status_code == 401, dependency["output"]
        assert "response" not in answer.text


def test_a_callback_without_the_csrf_token_is_refused(secured_site: SecuredSite, dependencies) -> None:
    session = sign_in(secured_site, "adam")
    body = callback_body(by_output(dependencies, "regions-content"), {"url.search": ""})
    refused = callback(session, secured_site, body, csrf=False)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "csrf_failed"
    forged = session.post(f"{secured_site.base}/_dash-update-component", json=body, timeout=30,
                          headers={"X-CSRFToken": "forged"})
    assert forged.status_code == 400
    assert callback(session, secured_site, body).status_code == 200


def test_a_wrong_password_or_unknown_name_is_refused_and_a_form_without_its_token_too(secured_site) -> None:
    session = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', session.get(f"{secured_site.base}/login").text).group(1)
    for name, password in (("vera", SITE_PASSWORD + "!"), ("nobody", SITE_PASSWORD)):
        answer = session.post(f"{secured_site.base}/login", data={"csrf_token": token, "name": name,
                                                                  "password": password}, allow_redirects=False)
        assert answer.status_code == 401 and "Wrong user name or password" in answer.text
    no_token = requests.post(f"{secured_site.base}/login", data={"name": "vera", "password": SITE_PASSWORD},
                             allow_redirects=False)
    assert no_token.status_code == 400 and "expired" in no_token.text


# What each role may reach: (method, path or callback output, least role).
ROLE_ROUTES = [
    ("GET", "/", "viewer"), ("GET", "/regions", "viewer"), ("GET", "/api/v1/regions", "viewer"),
    ("GET", "/_dash-layout", "viewer"), ("CALLBACK", "regions-content", "viewer"),
    ("GET", "/data", "analyst"), ("CALLBACK", "data-statuses", "analyst"), ("GET", "/export/regions.csv", "analyst"),
    ("GET", "/export/orders.csv", "analyst"), ("GET", "/export/report.xlsx", "analyst"),
    ("GET", "/reports", "analyst"), ("CALLBACK", "reports-history", "analyst"),
]
ROLES = ("viewer", "analyst", "admin")


@pytest.mark.parametrize("user", ["vera", "anna", "adam"])
def test_each_role_reaches_exactly_its_routes(secured_site: SecuredSite, dependencies, user: str) -> None:
    session = sign_in(secured_site, user)
    role = SITE_USERS[user][0]
    for method, target, least in ROLE_ROUTES:
        if method == "CALLBACK":
            answer = callback(session, secured_site, callback_body(by_output(dependencies, target)))
        else:
            answer = session.get(f"{secured_site.base}{target}", timeout=120, headers={"Accept": "text/html"})
        allowed = ROLES.index(role) >= ROLES.index(least)
        assert answer.status_code == (200 if allowed else 403), (user, target, answer.status_code, answer.text[:200])
        if not allowed:
            assert f"needs the {least} role" in answer.text
    layout = session.get(f"{secured_site.base}/_dash-layout", timeout=30).json()
    links = {node["props"]["href"] for node in components(layout) if node.get("type") == "NavLink"}
    assert ("/data" in links) == (role != "viewer")  # the menu lists the Data page to those who may open it
    assert ("/reports" in links) == (role != "viewer")
    assert {"/", "/segments", "/regions"} <= links
    shown = [node["props"].get("children") for node in components(layout)]
    assert "Sign out" in shown and f"{user} ({role})" in shown


def test_a_viewer_who_opens_the_data_page_in_the_app_is_told_so(secured_site: SecuredSite, dependencies) -> None:
    session = sign_in(secured_site, "vera")
    answer = callback(session, secured_site, callback_body(by_output(dependencies, "page-content"),
                                                           {"url.pathname": "/data"}))
    assert answer.status_code == 200
    assert "not-allowed" in answer.text and "data-file" not in answer.text


def send_file(session: requests.Session, site: SecuredSite, content: bytes, name: str = "one.csv",
              *, csrf: bool = True) -> requests.Response:
    """What assets/upload.js sends: the file as the body of POST /upload."""
    headers = {"X-File-Name": quote(name), "Content-Type": "application/octet-stream"}
    if csrf:
        headers["X-CSRFToken"] = session.cookies.get("_csrf_token", "")
    return session.post(f"{site.base}/upload", data=content, headers=headers, timeout=60)


def upload_file(session: requests.Session, site: SecuredSite, dependencies, csv_text: str,
                name: str = "one.csv") -> requests.Response:
    """A file sent to POST /upload, then the page told of it (as upload.js does): the page's answer."""
    sent = send_file(session, site, csv_text.encode(), name)
    assert sent.status_code == 200, sent.text[:300]
    answer = callback(session, site, callback_body(by_output(dependencies, "data-upload.data"),
                                                   {"data-uploaded.data": sent.json()}))
    assert answer.status_code == 200, answer.text[:300]
    return answer


def uploaded(session: requests.Session, site: SecuredSite, dependencies, csv_text: str) -> dict:
    return upload_file(session, site, dependencies, csv_text).json()["response"]["data-upload"]["data"]


def import_request(dependencies, upload: dict, mode: str) -> dict:
    """The Import button's request, with the mapping the page proposed for ``upload``."""
    mapping = [{"id": {"type": "data-map", "field": field}, "property": "value", "value": column}
               for field, column in upload["auto"].items()]
    importing = next(d for d in dependencies if any(item["id"] == "data-import" for item in d["inputs"]))
    return callback_body(importing, {
        "data-import.n_clicks": 1, "data-upload.data": upload, "data-mode.value": mode,
        "data-skip-invalid.value": False, "data-map.value": mapping,
        "data-map.id": [{**item, "property": "id", "value": item["id"]} for item in mapping]})


ONE_ORDER = "order_id,order_date,product,total_amount\nX-1,2024-05-01,Widget,10.00\n"


def test_replacing_every_order_is_refused_to_an_analyst_and_to_anyone_signed_out(secured_site: SecuredSite,
                                                                                  dependencies) -> None:
    before = len(secured_site.orders())
    analyst = sign_in(secured_site, "anna")
    upload = uploaded(analyst, secured_site, dependencies, ONE_ORDER)
    refused = callback(analyst, secured_site, import_request(dependencies, upload, "replace"))
    assert refused.status_code == 200 and "needs the admin role" in refused.text
    anonymous = requests.post(f"{secured_site.base}/_dash-update-component",
                              json=import_request(dependencies, upload, "replace"), timeout=30)
    assert anonymous.status_code == 401
    viewer = sign_in(secured_site, "vera")
    assert callback(viewer, secured_site, import_request(dependencies, upload, "replace")).status_code == 403
    assert len(secured_site.orders()) == before
    assert "import_refused" in audit_log(secured_site)


def test_an_analyst_imports_in_append_mode_through_the_write_url(secured_site: SecuredSite, dependencies) -> None:
    """On PostgreSQL the server reads as a SELECT-only role: the import goes through BI_DATABASE_WRITE_URL."""
    before = secured_site.orders()
    analyst = sign_in(secured_site, "anna")
    order_id = f"A-{uuid.uuid4().hex[:8]}"
    upload = uploaded(analyst, secured_site, dependencies, ONE_ORDER.replace("X-1", order_id))
    done = callback(analyst, secured_site, import_request(dependencies, upload, "append"))
    assert done.status_code == 200 and "data-result-summary" in done.text, done.text[:500]
    after = secured_site.orders()
    assert len(after) == len(before) + 1 and order_id in set(after["order_id"])
    assert re.search(rf"anna\s+import\s+.*rows=1\b.*{upload['file']}", audit_log(secured_site))


# A scoped user: nora sees North only (a viewer), sam South only (an analyst, who may download).
def test_a_scoped_user_gets_only_their_regions_figures_from_the_api(secured_site: SecuredSite) -> None:
    orders = secured_site.orders()
    nora = sign_in(secured_site, "nora")
    refused = nora.get(f"{secured_site.base}/api/v1/regions?region=South", timeout=60)
    assert refused.status_code == 403 and refused.json()["error"]["parameter"] == "region"
    mixed = nora.get(f"{secured_site.base}/api/v1/kpis?region=North&region=East", timeout=60)
    assert mixed.status_code == 403
    regions = nora.get(f"{secured_site.base}/api/v1/regions", timeout=60).json()["data"]
    north = orders[orders["region"] == "North"]
    assert [row["region"] for row in regions] == ["North"]
    assert regions[0]["revenue"] == pytest.approx(round(north["net"].sum(), 2), abs=0.005)
    kpis = nora.get(f"{secured_site.base}/api/v1/kpis?period=all", timeout=60).json()["data"]
    assert kpis["revenue"]["value"] == pytest.approx(round(north["net"].sum(), 2), abs=0.005)
    segments = nora.get(f"{secured_site.base}/api/v1/segments", timeout=60).json()["data"]
    expected = north.groupby("customer_segment")["net"].sum().round(2).to_dict()
    assert {row["segment"]: row["revenue"] for row in segments} == pytest.approx(expected, abs=0.005)


EXPORTS = ["/export/orders.csv", "/export/customers.csv", "/export/customers.xlsx", "/export/targets/vip.csv",
           "/export/regions.csv", "/export/segments.csv", "/export/products.csv", "/export/categories.csv",
           "/export/trend.csv", "/export/correlations.csv", "/export/cohorts.csv", "/export/clusters.csv",
           "/export/rfm.csv", "/export/orders.xlsx", "/export/report.xlsx"]


@pytest.mark.parametrize("path", EXPORTS)
def test_every_export_refuses_another_region_to_a_scoped_user(secured_site: SecuredSite, path: str) -> None:
    sam = sign_in(secured_site, "sam")
    answer = sam.get(f"{secured_site.base}{path}?region=North", timeout=120)
    assert answer.status_code == 403 and answer.json()["error"]["parameter"] == "region"


def test_a_scoped_users_exports_hold_only_their_region(secured_site: SecuredSite) -> None:
    orders = secured_site.orders()
    south = orders[orders["region"] == "South"]
    sam = sign_in(secured_site, "sam")
    lines = pd.read_csv(io.BytesIO(sam.get(f"{secured_site.base}/export/orders.csv", timeout=120).content))
    assert set(lines["region"]) == {"South"} and len(lines) == len(south)
    assert lines["total_amount"].sum() == pytest.approx(south["total_amount"].sum(), abs=0.01)
    regions = pd.read_csv(io.BytesIO(sam.get(f"{secured_site.base}/export/regions.csv", timeout=120).content))
    assert list(regions["region"]) == ["South"]
    customers = pd.read_csv(io.BytesIO(sam.get(f"{secured_site.base}/export/customers.csv", timeout=300).content))
    assert set(customers["customer_id"]) <= set(south["customer_id"].dropna())
    report = pd.read_excel(io.BytesIO(sam.get(f"{secured_site.base}/export/report.xlsx", timeout=300).content),
                           sheet_name=None)
    assert not any("North" in frame.to_string() for frame in report.values())


def test_a_crafted_callback_gives_a_scoped_user_only_their_region(secured_site: SecuredSite, dependencies) -> None:
    orders = secured_site.orders()
    nora = sign_in(secured_site, "nora")
    answer = callback(nora, secured_site, callback_body(by_output(dependencies, "regions-content"),
                                                        {"url.search": "?region=South&region=East&period=all"}))
    assert answer.status_code == 200
    texts = {node["props"]["children"] for node in components(answer.json())
             if isinstance(node["props"].get("children"), str)}
    assert texts & {"South", "East", "West"} == set() and "North" in texts
    north = orders[orders["region"] == "North"]
    assert f"${north['net'].sum():,.2f}" in texts  # the table's revenue cell
    # The filter bar lists only nora's regions.
    bar = callback(nora, secured_site, callback_body(by_output(dependencies, "filter-period.value"),
                                                     {"url.search": "?period=all"}))
    options = bar.json()["response"]["filter-region"]["options"]
    assert [option["value"] for option in options] == ["North"]


def components(node: object) -> list[dict]:
    """Every component in a layout (``{"type", "props"}`` objects), depth first."""
    found = []
    if isinstance(node, dict):
        if "type" in node and isinstance(node.get("props"), dict):
            found.append(node)
        for value in node.values():
            found.extend(components(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(components(value))
    return found


def bi_app(site: SecuredSite, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**site.env, "BI_DATABASE_URL": site.write_url}
    return subprocess.run([BI_APP, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120)


def audit_log(site: SecuredSite) -> str:
    shown = bi_app(site, "audit")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_a_token_works_with_its_users_role_and_scope_until_revoked(secured_site: SecuredSite) -> None:
    made = bi_app(secured_site, "tokens", "create", "--user", "Nora")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    token_id = token.split("_")[1]
    headers = {"Authorization": f"Bearer {token}"}
    regions = requests.get(f"{secured_site.base}/api/v1/regions", headers=headers, timeout=60)
    assert regions.status_code == 200 and [r["region"] for r in regions.json()["data"]] == ["North"]
    assert requests.get(f"{secured_site.base}/export/orders.csv", headers=headers, timeout=60).status_code == 403
    listed = bi_app(secured_site, "tokens", "list").stdout
    assert token_id in listed and token not in listed and "active" in listed
    assert bi_app(secured_site, "tokens", "revoke", token_id).returncode == 0
    revoked = requests.get(f"{secured_site.base}/api/v1/regions", headers=headers, timeout=60)
    assert revoked.status_code == 401 and "token is not valid" in revoked.json()["error"]["message"]
    assert requests.get(f"{secured_site.base}/api/v1/regions", timeout=60,
                        headers={"Authorization": f"Bearer {token[:-2]}xx"}).status_code == 401
    log = audit_log(secured_site)
    assert f"token {token_id} of nora" in log and "token_revoked" in log


def test_the_audit_log_records_sign_ins_failures_and_downloads_with_their_rows(secured_site: SecuredSite) -> None:
    orders = secured_site.orders()
    south = orders[orders["region"] == "South"]
    failed = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', failed.get(f"{secured_site.base}/login").text).group(1)
    failed.post(f"{secured_site.base}/login", data={"csrf_token": token, "name": "ghost", "password": NEW_PASSWORD + "!"})
    sam = sign_in(secured_site, "sam")
    assert sam.get(f"{secured_site.base}/export/orders.csv?category=Office", timeout=120).status_code == 200
    expected_rows = int(((orders["region"] == "South") & (orders["category"] == "Office")).sum())
    log = audit_log(secured_site)
    assert re.search(r"ghost\s+login_failed\s+/login", log)
    assert re.search(r"sam\s+login\s+/login", log)
    assert re.search(rf"sam\s+download\s+/export/orders.csv category=Office rows={expected_rows:,}\b", log), log
    for path in ("/export/orders.xlsx", "/export/report.xlsx", "/export/customers.xlsx"):
        assert sam.get(f"{secured_site.base}{path}?end=2099-12-31", timeout=300).status_code == 200, path
    log = audit_log(secured_site)
    assert re.search(rf"sam\s+download\s+/export/orders.xlsx end=2099-12-31 rows={len(south):,}\b", log), log
    assert re.search(r"sam\s+download\s+/export/report.xlsx end=2099-12-31 from", log)
    customers = south["customer_id"].dropna().nunique()
    assert re.search(rf"sam\s+download\s+/export/customers.xlsx end=2099-12-31 rows={customers:,}\b", log)


def test_signing_out_ends_the_session_even_for_a_copy_of_its_cookie(secured_site: SecuredSite) -> None:
    session = sign_in(secured_site, "vera")
    copied = requests.Session()
    copied.cookies.update(session.cookies)
    assert copied.get(f"{secured_site.base}/api/v1/kpis", timeout=60).status_code == 200
    page = session.get(f"{secured_site.base}/logout", timeout=30).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    out = session.post(f"{secured_site.base}/logout", data={"csrf_token": token}, allow_redirects=False)
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    assert session.get(f"{secured_site.base}/api/v1/kpis", timeout=30).status_code == 401
    assert copied.get(f"{secured_site.base}/api/v1/kpis", timeout=30).status_code == 401
    assert re.search(r"vera\s+logout", audit_log(secured_site))


def test_a_new_password_ends_the_users_other_sessions(secured_site: SecuredSite) -> None:
    name = f"pat{uuid.uuid4().hex[:6]}"
    assert bi_app(secured_site, "users", "add", name, "--role", "viewer", stdin=SITE_PASSWORD + "\n").returncode == 0
    session = sign_in(secured_site, name)
    assert session.get(f"{secured_site.base}/api/v1/kpis", timeout=60).status_code == 200
    assert bi_app(secured_site, "users", "set-password", name, stdin=NEW_PASSWORD + "\n").returncode == 0
    assert session.get(f"{secured_site.base}/api/v1/kpis", timeout=60).status_code == 401
    sign_in(secured_site, name, NEW_PASSWORD)


def test_failed_sign_ins_are_limited_per_user_name(secured_site: SecuredSite) -> None:
    name = f"lim{uuid.uuid4().hex[:6]}"
    assert bi_app(secured_site, "users", "add", name, "--role", "viewer", stdin=SITE_PASSWORD + "\n").returncode == 0
    session = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', session.get(f"{secured_site.base}/login").text).group(1)

    def attempt(password: str) -> int:
        return session.post(f"{secured_site.base}/login", data={"csrf_token": token, "name": name.upper(),
                                                                "password": password}, allow_redirects=False).status_code

    assert [attempt(SITE_PASSWORD + "!") for _ in range(5)] == [401] * 5
    assert attempt(SITE_PASSWORD) == 429  # even the right password, until the minute is over
    assert sign_in(secured_site, "anna")  # another user from the same address still signs in


def test_signing_out_without_a_session_goes_to_the_sign_in_page(secured_site: SecuredSite) -> None:
    for method in ("GET", "POST"):
        answer = requests.request(method, f"{secured_site.base}/logout", allow_redirects=False, timeout=30)
        assert answer.status_code == 302 and answer.headers["Location"] == "/login"


def test_a_viewer_is_offered_no_download_link(secured_site: SecuredSite, dependencies) -> None:
    for user, offered in (("vera", False), ("anna", True)):
        session = sign_in(secured_site, user)
        overview = callback(session, secured_site, callback_body(by_output(dependencies, "overview-kpis"),
                                                                 {"url.search": "?period=all"}))
        chips = callback(session, secured_site, callback_body(by_output(dependencies, "filter-chips"),
                                                              {"url.search": "?period=all", "url.pathname": "/"}))
        assert overview.status_code == chips.status_code == 200
        assert ("/export/" in json.dumps([overview.json(), chips.json()])) == offered, user


def test_an_api_token_cannot_sign_out(secured_site: SecuredSite) -> None:
    made = bi_app(secured_site, "tokens", "create", "--user", "vera")
    headers = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}
    answer = requests.post(f"{secured_site.base}/logout", headers=headers, allow_redirects=False, timeout=30)
    assert answer.status_code == 400 and "revoke it" in answer.json()["error"]["message"]
    assert requests.get(f"{secured_site.base}/api/v1/kpis", headers=headers, timeout=60).status_code == 200


def test_the_data_page_refuses_a_file_past_the_read_limits_in_words(secured_site: SecuredSite, dependencies) -> None:
    analyst = sign_in(secured_site, "anna")
    wide = ",".join(f"c{i}" for i in range(10_000)) + "\n" + ",".join("1" * 10_000) + "\n"
    answer = upload_file(analyst, secured_site, dependencies, wide, "wide.csv")
    assert "has 10,000 columns: an import reads at most 1,000" in answer.text


def test_a_refused_file_clears_what_was_checked_for_the_one_before(secured_site: SecuredSite, dependencies) -> None:
    analyst = sign_in(secured_site, "anna")
    assert uploaded(analyst, secured_site, dependencies, ONE_ORDER)["file"] == "one.csv"
    refused = upload_file(analyst, secured_site, dependencies, "\x00\x01\x02" * 5000, "photo.csv").json()["response"]
    assert "photo.csv is not a text file of orders" in json.dumps(refused["data-file-info"])
    assert "photo.csv: photo.csv" not in json.dumps(refused["data-file-info"]), "the name once"
    assert refused["data-upload"]["data"] is None and refused["data-import"]["disabled"] is True
    assert refused["data-validation"]["children"] is None and refused["data-result"]["children"] is None


def test_uploads_need_the_data_pages_role_and_the_csrf_token(secured_site: SecuredSite) -> None:
    anonymous = requests.post(f"{secured_site.base}/upload", data=b"a,b\n", timeout=30)
    assert anonymous.status_code == 401
    viewer = sign_in(secured_site, "vera")
    assert send_file(viewer, secured_site, b"order_id,order_date,product,amount\n").status_code == 403
    analyst = sign_in(secured_site, "anna")
    refused = send_file(analyst, secured_site, b"order_id,order_date,product,amount\n", csrf=False)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "csrf_failed"
    sent = send_file(analyst, secured_site, b"order_id,order_date,product,amount\n", "../../etc/passwd")
    assert sent.status_code == 200 and sent.json()["file"] == "passwd" and sent.json()["size"] == 35


def test_an_upload_past_the_limit_is_refused_before_it_is_read(secured_site: SecuredSite) -> None:
    """A declared length past the limit is refused at once; the body is never read into the server."""
    from bi_app.importing import MAX_UPLOAD_BYTES

    analyst = sign_in(secured_site, "anna")
    address = urlsplit(secured_site.base)
    with socket.create_connection((address.hostname, address.port), timeout=30) as raw:
        cookies = "; ".join(f"{name}={value}" for name, value in analyst.cookies.items())
        raw.sendall((f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookies}\r\n"
                     f"X-CSRFToken: {analyst.cookies.get('_csrf_token')}\r\nX-File-Name: big.csv\r\n"
                     f"Content-Type: application/octet-stream\r\nContent-Length: {MAX_UPLOAD_BYTES + 1}\r\n"
                     "Connection: close\r\n\r\n").encode() + b"x" * 1024)
        received = b""
        while chunk := raw.recv(65536):  # the server answers and closes without reading the body
            received += chunk
        answer = received.decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413") and "the most a file may be is 200 MB" in answer, answer[:500]


def test_a_method_a_route_does_not_take_is_a_405_not_a_csrf_refusal(secured_site: SecuredSite) -> None:
    session = sign_in(secured_site, "vera")
    answer = session.post(f"{secured_site.base}/api/v1/kpis", timeout=30)
    assert answer.status_code == 405


def test_an_import_on_the_command_line_is_audited(secured_site: SecuredSite, tmp_path) -> None:  # noqa: ANN001
    order_id = f"CLI-{uuid.uuid4().hex[:8]}"
    orders = tmp_path / "cli-orders.csv"
    orders.write_text(ONE_ORDER.replace("X-1", order_id))
    done = bi_app(secured_site, "import", str(orders), "--no-train")
    assert done.returncode == 0, done.stderr
    assert re.search(r"cli:\S+\s+import\s+bi-app rows=1 .*cli-orders.csv \(append; 0 rejected\)", audit_log(secured_site))
