"""The deployment end to end on this machine: the repo's own gunicorn settings with two workers, Debian's
nginx in front with the repo's site file (on loopback ports, a self-signed certificate), the real
PostgreSQL, and a Redis of the test's own (so that it can be stopped). Through nginx: HTTPS only, the
headers, sign-in, a page, an export, the API, the metrics, the limits; an answer one worker computed is
served by the other from the shared cache; a worker killed or Redis stopped costs no request.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pandas as pd
import pytest
import requests

from data_layer.engine import make_engine
from tests.conftest import private_schema
from tests.support import BI_APP, IN_CI, SECRET_KEY, USER_PASSWORD, send_and_leave, stored_kpis

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REDIS = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, seconds: float = 120, **options: object) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[0]} exited early:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=5, **options).status_code < 500:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {seconds} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Deployment:
    https: str  # nginx, as users reach it
    http: str  # nginx's plain port, which only redirects
    direct: str  # gunicorn itself, as this machine reaches it
    certificate: Path
    app_log: Path
    database_url: str
    redis_port: int
    folder: Path
    redis: subprocess.Popen | None = None
    master: int = 0
    signed_in: dict[str, requests.Session] = field(default_factory=dict)

    def session(self) -> requests.Session:
        session = requests.Session()
        session.verify = str(self.certificate)
        session.trust_env = False  # no CA bundle or proxy from the environment: this certificate, directly
        return session

    def sign_in(self, name: str) -> requests.Session:
        """A session of ``name`` (one per user for the whole module: nginx limits sign-in attempts)."""
        if name in self.signed_in:
            return self.signed_in[name]
        session = self.signed_in[name] = self.session()
        form = session.get(f"{self.https}/login", timeout=60).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        answer = session.post(f"{self.https}/login", data={"csrf_token": token, "name": name,
                                                           "password": USER_PASSWORD, "next": "/"},
                              headers={"Referer": f"{self.https}/login"},  # as a browser sends it
                              allow_redirects=False, timeout=60)
        assert answer.status_code == 302, answer.text[:500]
        return session

    def requests_logged(self) -> dict[str, dict]:
        """The app's request lines (JSON) by request id."""
        found = {}
        for line in self.app_log.read_text().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("event") == "request":
                    found[entry["request_id"]] = entry
        return found

    def workers(self) -> list[int]:
        """The gunicorn master's worker processes now."""
        children = Path(f"/proc/{self.master}/task/{self.master}/children").read_text().split()
        return [int(pid) for pid in children]

    def start_redis(self) -> None:
        self.redis = subprocess.Popen([REDIS, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(self.folder)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1):
                    return
            except OSError:
                assert time.monotonic() < deadline, "redis did not start"
                time.sleep(0.2)

    def stop_redis(self) -> None:
        if self.redis is not None:
            stop(self.redis)
            self.redis = None


def nginx_site(https_port: int, http_port: int, app_port: int, tls: Path, webroot: Path) -> str:
    """deploy/nginx-site.conf with this machine's ports and paths; every change is checked to apply."""
    site = (DEPLOY / "nginx-site.conf").read_text()
    changes = [
        (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
        (r"listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        (r"server 127.0.0.1:8050;", f"server 127.0.0.1:{app_port};"),
        (r"/etc/bi-app/tls/", f"{tls}/"),
        (r"root /var/www/letsencrypt;", f"root {webroot};"),
    ]
    for old, new in changes:
        assert old in site, f"deploy/nginx-site.conf no longer has {old!r}: update this test"
        site = site.replace(old, new)
    return "\n".join(line for line in site.splitlines() if "listen [::]" not in line)  # no IPv6 here


@pytest.fixture(scope="module")
def deployment(postgres_admin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:  # noqa: ANN001
    if not os.path.exists(NGINX) or REDIS is None:
        if IN_CI:
            pytest.fail("CI installs nginx and Redis (.ci/run); the deployment test must run there")
        pytest.skip("nginx or redis-server is not installed (apt-get install nginx-light redis-server)")
    folder = tmp_path_factory.mktemp("deployment")
    with private_schema(postgres_admin) as database_url:
        yield from _deployment(folder, database_url)


def _deployment(folder: Path, database_url: str) -> Iterator[Deployment]:
    https_port, http_port, app_port, redis_port = free_port(), free_port(), free_port(), free_port()
    env = {**os.environ, "BI_DATA_DIR": str(folder / "data"), "BI_DATABASE_URL": database_url,
           "BI_SECRET_KEY": SECRET_KEY, "BI_CACHE_URL": f"redis://127.0.0.1:{redis_port}/0",
           "BI_TRUSTED_PROXIES": "1", "BI_HTTPS": "1", "BI_LOG_FORMAT": "json", "BI_COLUMNAR": "0",
           "BI_BIND": f"127.0.0.1:{app_port}", "BI_WORKERS": "2", "BI_THREADS": "4",
           "PROMETHEUS_MULTIPROC_DIR": str(folder / "metrics")}
    env.pop("BI_DATABASE_WRITE_URL", None)
    load = subprocess.run([BI_APP, "demo-data", "--rows", "3000", "--no-train"], env=env, capture_output=True,
                          text=True)
    assert load.returncode == 0, load.stderr
    for name, role in (("ada", "admin"), ("vic", "viewer")):
        added = subprocess.run([BI_APP, "users", "add", name, "--role", role], input=f"{USER_PASSWORD}\n", env=env,
                               capture_output=True, text=True)
        assert added.returncode == 0, added.stderr

    tls = folder / "tls"
    tls.mkdir()
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                           "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                           "-keyout", str(tls / "privkey.pem"), "-out", str(tls / "fullchain.pem")],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    (folder / "webroot").mkdir()
    (folder / "site.conf").write_text(nginx_site(https_port, http_port, app_port, tls, folder / "webroot"))
    temp = {name: folder / "nginx" / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(parents=True)
    (folder / "nginx.conf").write_text(f"""
{"user root root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log warn;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {folder}/nginx-access.log;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {folder}/site.conf;
}}
""")
    checked = subprocess.run([NGINX, "-t", "-q", "-p", str(folder), "-c", str(folder / "nginx.conf")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr

    deployment = Deployment(https=f"https://127.0.0.1:{https_port}", http=f"http://127.0.0.1:{http_port}",
                            direct=f"http://127.0.0.1:{app_port}", certificate=tls / "fullchain.pem",
                            app_log=folder / "gunicorn.log", database_url=database_url, redis_port=redis_port,
                            folder=folder)
    deployment.start_redis()
    with open(deployment.app_log, "w") as log:
        app = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", str(DEPLOY / "gunicorn.conf.py"),
                                "bi_app.wsgi:server()"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deployment.master = app.pid
    with open(folder / "nginx-output.log", "w") as log:
        proxy = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf")], stdout=log,
                                 stderr=subprocess.STDOUT)
    try:
        wait_for(f"{deployment.direct}/healthz", app, deployment.app_log)
        wait_for(f"{deployment.https}/healthz", proxy, folder / "nginx-error.log", verify=str(deployment.certificate))
        yield deployment
    finally:
        stop(proxy)
        stop(app)
        deployment.stop_redis()


def test_plain_http_only_redirects_to_https(deployment: Deployment) -> None:
    answer = requests.get(f"{deployment.http}/segments?region=North", allow_redirects=False, timeout=30)
    assert answer.status_code == 301
    assert answer.headers["Location"] == "https://127.0.0.1/segments?region=North"


def test_every_answer_carries_the_security_headers_once(deployment: Deployment) -> None:
    session = deployment.session()
    for path in ("/login", "/healthz", "/api/v1/kpis", "/no-such-page"):
        answer = session.get(f"{deployment.https}{path}", allow_redirects=False, timeout=60)
        raw = answer.raw.headers
        for header, value in (("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
                              ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY")):
            assert raw.getlist(header) == [value], (path, header, raw.getlist(header))
        assert answer.headers["Server"] == "nginx", "no version"
    login = session.get(f"{deployment.https}/login", timeout=60)
    assert "frame-ancestors 'none'" in login.headers["Content-Security-Policy"] or \
        "default-src" in login.headers["Content-Security-Policy"]


def test_every_line_the_server_writes_is_json_with_the_request_and_user(deployment: Deployment) -> None:
    session = deployment.sign_in("ada")
    answer = session.get(f"{deployment.https}/api/v1/segments", timeout=60)
    lines = [line for line in deployment.app_log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # gunicorn's own lines too
    assert any(entry.get("name") == "gunicorn.error" and "Booting worker" in entry["message"] for entry in entries)
    mine = deployment.requests_logged()[answer.headers["X-Request-ID"]]
    assert mine["user"] == "ada" and mine["route"] == "/api/v1/<name>" and mine["status"] == 200
    anonymous = [entry for entry in entries if entry.get("event") == "request" and entry["route"] == "/login"]
    assert anonymous and all(entry["user"] in ("", "ada", "vic") for entry in anonymous), "no one is 'demo'"


def test_sign_in_a_page_the_api_and_an_export_through_nginx(deployment: Deployment) -> None:
    anonymous = deployment.session().get(f"{deployment.https}/api/v1/kpis", timeout=60)
    assert anonymous.status_code == 401

    session = deployment.sign_in("ada")
    assert all(cookie.secure for cookie in session.cookies), "cookies only over HTTPS"
    page = session.get(f"{deployment.https}/", headers={"Accept": "text/html", "Accept-Encoding": "gzip"},
                       timeout=60)
    assert page.status_code == 200 and "_dash-renderer" in page.text
    assert page.headers.get("Content-Encoding") in ("gzip", "br")

    bundle = re.search(r'src="(/_dash-component-suites/[^"]+\.v[0-9_]+m[0-9]+\.[a-z.]+)"', page.text).group(1)
    cached = session.get(f"{deployment.https}{bundle}", timeout=60)
    assert cached.status_code == 200 and "max-age=31536000" in cached.headers["Cache-Control"]

    engine = make_engine(deployment.database_url)
    expected = stored_kpis(engine)
    with engine.connect() as conn:
        lines = pd.read_sql("SELECT order_id FROM advanced_sales_data", conn)
    engine.dispose()
    data = session.get(f"{deployment.https}/api/v1/kpis", timeout=60).json()["data"]
    assert {"revenue": data["revenue"]["value"], "orders": data["orders"]["value"]} == pytest.approx(expected)

    export = session.get(f"{deployment.https}/export/orders.csv", timeout=120)
    assert export.status_code == 200
    exported = export.content.decode("utf-8-sig").splitlines()
    assert len(exported) - 1 == len(lines), "every stored line, streamed through nginx"


def test_an_answer_one_worker_computed_is_served_by_the_other_from_redis(deployment: Deployment) -> None:
    session = deployment.sign_in("ada")
    segments = session.get(f"{deployment.https}/api/v1/segments", timeout=60).json()["data"]
    query = f"/api/v1/regions?segment={quote(segments[-1]['segment'])}&period=all"

    def ask(_number: int) -> tuple[str, dict]:
        answer = session.get(f"{deployment.https}{query}", timeout=60)
        assert answer.status_code == 200
        return answer.headers["X-Request-ID"], answer.json()["data"]  # nginx's $request_id, logged by the app

    first_id, first = ask(0)
    logged = deployment.requests_logged()
    computed_by = logged[first_id]["pid"]
    assert logged[first_id]["cache_misses"] > 0, "the first answer is computed"

    others: list[dict] = []
    deadline = time.monotonic() + 120
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # several connections: both workers take some
        while not others:
            assert time.monotonic() < deadline, "no request reached the second worker"
            answers = list(pool.map(ask, range(1, 33)))
            assert all(data == first for _id, data in answers)
            logged = deployment.requests_logged()
            others = [logged[request_id] for request_id, _data in answers if logged[request_id]["pid"] != computed_by]
    assert all(entry["cache_misses"] == 0 and entry["cache_hits"] > 0 for entry in others), others


def test_metrics_are_for_the_operator_and_admins(deployment: Deployment) -> None:
    assert deployment.session().get(f"{deployment.https}/metrics", timeout=60).status_code == 401
    assert deployment.sign_in("vic").get(f"{deployment.https}/metrics", timeout=60).status_code == 403
    scraped = deployment.sign_in("ada").get(f"{deployment.https}/metrics", timeout=60)
    assert scraped.status_code == 200 and scraped.headers["Content-Type"].startswith("text/plain")
    local = requests.get(f"{deployment.direct}/metrics", timeout=60).text  # on this machine, not through nginx
    for name in ("bi_http_requests_total", "bi_http_request_duration_seconds_bucket", "bi_cache_lookups_total",
                 "bi_database_connections_in_use", "bi_columnar_snapshot_ready", "bi_database_slow"):
        assert name in local, name
    served = sum(float(line.rsplit(" ", 1)[1]) for line in local.splitlines()
                 if line.startswith("bi_http_requests_total{"))
    assert served >= len(deployment.requests_logged()) - 1, "summed over both workers"


def rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


#: What a worker's memory may grow by while it takes a 50 MB upload (it writes 1 MB pieces to disk).
UPLOAD_MEMORY_BOUND_MB = 25


def test_a_50_mb_upload_goes_to_disk_through_nginx_in_bounded_memory(deployment: Deployment) -> None:
    session = deployment.sign_in("ada")
    assert session.get(f"{deployment.https}/data", headers={"Accept": "text/html"}, timeout=60).status_code == 200
    row = "ORD-{:08d},2024-03-{:02d},A product with a long name of a real shop,{}.99\n"
    content = ("order_id,order_date,product,amount\n" + "".join(
        row.format(number, number % 28 + 1, number % 500) for number in range(800_000))).encode()
    assert len(content) > 50 * 1024 * 1024
    workers = deployment.workers()
    baseline = {pid: rss_mb(pid) for pid in workers}
    peak = dict(baseline)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for pid in workers:
                peak[pid] = max(peak[pid], rss_mb(pid))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        sent = session.post(f"{deployment.https}/upload", data=content, timeout=600,
                            headers={"X-CSRFToken": session.cookies.get("_csrf_token", ""), "X-File-Name": "big.csv",
                                     "Content-Type": "application/octet-stream",
                                     "Referer": f"{deployment.https}/data"})
    finally:
        done.set()
        watcher.join()
    assert sent.status_code == 200, sent.text[:300]
    stored = deployment.folder / "data" / "uploads" / sent.json()["id"] / "big.csv"
    assert stored.read_bytes() == content
    growth = max(peak[pid] - baseline[pid] for pid in workers)
    assert growth < UPLOAD_MEMORY_BOUND_MB, f"a worker grew by {growth:.0f} MB for a {len(content) >> 20} MB upload"


def test_an_import_whose_browser_leaves_is_stopped_through_nginx(deployment: Deployment) -> None:
    from tests.test_access import import_request, uploaded

    session = deployment.sign_in("ada")
    session.headers["Referer"] = f"{deployment.https}/data"  # as the browser sends it on the Data page
    assert session.get(f"{deployment.https}/data", headers={"Accept": "text/html"}, timeout=60).status_code == 200
    dependencies = [d for d in session.get(f"{deployment.https}/_dash-dependencies", timeout=60).json()
                    if d.get("clientside_function") is None]
    rows = "".join(f"LEFT-{i},2024-06-{i % 28 + 1:02d},Left {i % 300},{i % 70 + 1}.10\n" for i in range(50_000))
    site = SimpleNamespace(base=deployment.https)
    upload = uploaded(session, site, dependencies, "order_id,order_date,product,total_amount\n" + rows)
    engine = make_engine(deployment.database_url)
    before = pd.read_sql("SELECT * FROM advanced_sales_data ORDER BY order_id, line_number", engine)
    logged = deployment.app_log.read_text().count("Work stopped, nothing written")
    send_and_leave(session, f"{deployment.https}/_dash-update-component", import_request(dependencies, upload,
                                                                                          "append"))
    deadline = time.monotonic() + 120
    while deployment.app_log.read_text().count("Work stopped, nothing written") == logged:
        assert time.monotonic() < deadline, "nginx's upstream connection stayed open, or the import was not stopped"
        time.sleep(0.1)
    assert "the browser or program that asked for it has gone" in deployment.app_log.read_text()
    after = pd.read_sql("SELECT * FROM advanced_sales_data ORDER BY order_id, line_number", engine)
    engine.dispose()
    pd.testing.assert_frame_equal(after, before)


def test_a_worker_killed_is_replaced_and_no_request_fails(deployment: Deployment) -> None:
    session = deployment.sign_in("ada")
    answer = session.get(f"{deployment.https}/api/v1/kpis", timeout=60)
    assert answer.status_code == 200
    victim = deployment.requests_logged()[answer.headers["X-Request-ID"]]["pid"]
    assert victim in deployment.workers() and len(deployment.workers()) == 2
    os.kill(victim, signal.SIGKILL)
    statuses = []
    deadline = time.monotonic() + 120
    while not (len(deployment.workers()) == 2 and victim not in deployment.workers()):
        assert time.monotonic() < deadline, f"gunicorn did not replace the killed worker: {deployment.workers()}"
        statuses.append(session.get(f"{deployment.https}/api/v1/segments", timeout=60).status_code)
        time.sleep(0.2)
    statuses += [session.get(f"{deployment.https}/api/v1/segments", timeout=60).status_code for _ in range(6)]
    assert set(statuses) == {200}, statuses
    assert requests.get(f"{deployment.direct}/healthz", timeout=60).status_code == 200


def test_redis_stopped_costs_no_request_and_is_used_again_once_back(deployment: Deployment) -> None:
    session = deployment.sign_in("ada")
    engine = make_engine(deployment.database_url)
    expected = stored_kpis(engine)
    engine.dispose()
    deployment.stop_redis()
    try:
        for _ in range(4):
            answer = session.get(f"{deployment.https}/api/v1/kpis?period=all", timeout=60)
            assert answer.status_code == 200
            data = answer.json()["data"]
            assert {"revenue": data["revenue"]["value"], "orders": data["orders"]["value"]} == pytest.approx(expected)
        assert requests.get(f"{deployment.direct}/healthz", timeout=60).status_code == 200
    finally:
        deployment.start_redis()
    request_ids = []
    for _ in range(3):  # the first may be computed and stored again, the next come from Redis
        answer = session.get(f"{deployment.https}/api/v1/segments?period=all", timeout=60)
        assert answer.status_code == 200
        request_ids.append(answer.headers["X-Request-ID"])
    logged = deployment.requests_logged()
    assert logged[request_ids[-1]]["cache_hits"] > 0


@pytest.mark.parametrize("unit", ["bi-app.service", "bi-scheduler.service"])
def test_the_systemd_units_are_valid_and_sandboxed(unit: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    verified = subprocess.run([analyze, "verify", str(DEPLOY / unit)], capture_output=True, text=True)
    complaints = [line for line in (verified.stdout + verified.stderr).splitlines()
                  if line.strip() and not re.search(r"/opt/bi-app/\.venv/bin/\S+ is not executable", line)]
    assert complaints == [], complaints  # on a host the path exists; here only the unit's syntax is checked
    security = subprocess.run([analyze, "security", "--offline=true", str(DEPLOY / unit)],
                              capture_output=True, text=True)
    exposure = float(re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+)", security.stdout).group(1))
    assert exposure <= 2.0, security.stdout[-2000:]


def test_the_bootstrap_script_is_valid_shell() -> None:
    script = DEPLOY / "ec2-bootstrap.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    checker = shutil.which("shellcheck")
    if checker is None:
        pytest.skip("shellcheck is not installed")
    checked = subprocess.run([checker, str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout


def test_sign_in_attempts_and_bodies_are_limited_by_nginx(deployment: Deployment) -> None:
    """Last in this module: it uses up the sign-in allowance of this address."""
    session = deployment.session()
    statuses = [session.get(f"{deployment.https}/login", timeout=60).status_code for _ in range(20)]
    assert 429 in statuses and statuses[0] == 200, statuses
    big = b"x" * (3 * 1024 * 1024)
    assert session.post(f"{deployment.https}/api/v1/kpis", data=big, timeout=60).status_code == 413
    callback = session.post(f"{deployment.https}/_dash-update-component", data=big, timeout=60,
                            headers={"Content-Type": "application/json"})
    assert callback.status_code == 413
    upload = session.post(f"{deployment.https}/upload", data=big, timeout=60)
    assert upload.status_code == 401, "the upload route takes large bodies (and then wants a session)"


def test_the_deployment_guide_names_every_deploy_file_and_only_those() -> None:
    guide = (ROOT / "docs" / "DEPLOY.md").read_text()
    named = set(re.findall(r"deploy/([\w.-]+)", guide))
    present = {path.name for path in DEPLOY.iterdir()}
    assert named == present, (named - present, present - named)
    run_here = {"gunicorn.conf.py", "nginx-site.conf", "bi-app.service", "bi-scheduler.service", "ec2-bootstrap.sh"}
    assert all(name in Path(__file__).read_text() for name in run_here)
