"""Faults of the services the app stands on, against the real services: a slow (locked) database.

A real server (`bi-app serve`) on a real PostgreSQL schema; the test holds locks as a long load or an
operator's ALTER TABLE would. Answers the server already has are still served, the others are a clear
"database slow" (503 from the API, a banner on a page) at once instead of a thread held for the
statement timeout, and everything comes back by itself once the lock is gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
import requests
from sqlalchemy import text

from data_layer.engine import make_engine
from tests.conftest import private_schema
from tests.support import BI_APP, callback_body, net_revenue, served

pytestmark = pytest.mark.slow

#: Long enough that a request held for it could never pass for one answered at once.
STATEMENT_TIMEOUT_MS = 120_000


@dataclass(frozen=True)
class Site:
    base: str
    url: str  # the database the server reads, as the test's own connections reach it


@pytest.fixture(scope="module")
def site(postgres_admin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:  # noqa: ANN001
    folder = tmp_path_factory.mktemp("faults")
    with private_schema(postgres_admin) as url:
        yield from _site(folder, url)


def _site(folder: Path, url: str) -> Iterator[Site]:
    env = {**os.environ, "BI_DATA_DIR": str(folder / "data"), "BI_DATABASE_URL": url, "BI_COLUMNAR": "0",
           "BI_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS)}
    for name in ("BI_CACHE_URL", "BI_SECRET_KEY", "BI_DATABASE_WRITE_URL"):
        env.pop(name, None)
    load = subprocess.run([BI_APP, "demo-data", "--rows", "2000", "--no-train"], env=env, capture_output=True,
                          text=True)
    assert load.returncode == 0, load.stderr
    with served(env, folder / "server.log") as base:
        yield Site(base, url)


@contextmanager
def locked(url: str, table: str) -> Iterator[None]:
    """``table`` held in ACCESS EXCLUSIVE mode (no one may even read it) until the block ends."""
    engine = make_engine(url, statement_timeout_ms=0)
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            try:
                yield
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


def api(site: Site, query: str = "") -> tuple[requests.Response, float]:
    started = time.monotonic()
    answer = requests.get(f"{site.base}/api/v1/segments{query}", timeout=STATEMENT_TIMEOUT_MS / 1000 + 60)
    return answer, time.monotonic() - started


def expected_segments(site: Site, region: str) -> dict[str, float]:
    """Net revenue per segment of ``region``'s lines, from the stored rows with pandas."""
    engine = make_engine(site.url)
    with engine.connect() as conn:
        lines = pd.read_sql(text("SELECT customer_segment, region, total_amount, refunded_amount "
                                 "FROM advanced_sales_data"), conn)
    engine.dispose()
    lines = lines[lines["region"] == region]
    for column in ("total_amount", "refunded_amount"):
        lines[column] = lines[column].astype(float)
    return net_revenue(lines).groupby(lines["customer_segment"]).sum().round(2).to_dict()


def recovered(site: Site, query: str) -> requests.Response:
    """The API's answer once the server has noticed the database answers again (it asks again by itself
    a few seconds after it found it slow), polled without assuming how fast this machine is."""
    deadline = time.monotonic() + 120
    while True:
        answer, _seconds = api(site, query)
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        assert answer.json()["error"]["code"] == "database_slow"
        time.sleep(1)


def regions(site: Site) -> list[str]:
    answer = requests.get(f"{site.base}/api/v1/regions", timeout=60)
    assert answer.status_code == 200, answer.text
    return sorted(row["region"] for row in answer.json()["data"])


@pytest.mark.parametrize("table", ["bi_metadata", "advanced_sales_data"])
def test_a_locked_table_serves_known_answers_and_says_the_rest_is_slow(site: Site, table: str) -> None:
    region = regions(site)[0 if table == "bi_metadata" else 1]
    known, _seconds = api(site)
    assert known.status_code == 200

    with locked(site.url, table):
        again, seconds = api(site)
        assert again.status_code == 200 and again.json() == known.json(), "an answer the server has is served"
        assert seconds < STATEMENT_TIMEOUT_MS / 1000 / 2, f"waited {seconds:.1f} s for an answer it had"

        uncached, seconds = api(site, f"?region={quote(region)}")
        assert uncached.status_code == 503, uncached.text
        assert uncached.json()["error"]["code"] == "database_slow" and "try again" in uncached.json()["error"]["message"]
        assert int(uncached.headers["Retry-After"]) > 0
        assert seconds < STATEMENT_TIMEOUT_MS / 1000 / 2, f"held {seconds:.1f} s instead of answering at once"

        health = requests.get(f"{site.base}/healthz", timeout=60)
        assert health.status_code == 200 and health.json()["database_slow"] is True

    answer = recovered(site, f"?region={quote(region)}")
    assert answer.status_code == 200, answer.text
    got = {row["segment"]: row["revenue"] for row in answer.json()["data"]}
    assert got == pytest.approx(expected_segments(site, region), abs=0.005)
    assert requests.get(f"{site.base}/healthz", timeout=60).json()["database_slow"] is False


def test_a_page_says_the_database_is_slow_and_redraws_when_it_answers(site: Site) -> None:
    session = requests.Session()
    assert session.get(f"{site.base}/", headers={"Accept": "text/html"}, timeout=60).status_code == 200
    dependencies = session.get(f"{site.base}/_dash-dependencies", timeout=60).json()
    overview = next(d for d in dependencies if "overview-kpis.children" in d["output"])
    watcher = next(d for d in dependencies if d["output"] == "db-status.data")
    headers = {"X-CSRFToken": session.cookies.get("_csrf_token", "")}

    def post(dependency: dict, values: dict) -> requests.Response:
        answer = session.post(f"{site.base}/_dash-update-component", json=callback_body(dependency, values),
                              headers=headers, timeout=STATEMENT_TIMEOUT_MS / 1000 + 60)
        assert answer.status_code in (200, 204), answer.text[:300]
        return answer

    region = regions(site)[2]
    with locked(site.url, "advanced_sales_data"):
        page = post(overview, {"url.search": f"?region={quote(region)}&period=all", "db-status.data": "ok"})
        status = json.dumps(page.json()["response"]["overview-status"])
        assert "database-slow-banner" in status and "slow to answer" in status
        assert "Traceback" not in page.text
        watched = post(watcher, {"db-retry.n_intervals": 1, "db-status.data": "ok"})
        assert watched.json()["response"]["db-status"]["data"] == "slow"

    deadline = time.monotonic() + 120
    while True:  # the watcher's look after the lock is gone turns the page back to ok (no change: no answer)
        watched = post(watcher, {"db-retry.n_intervals": 2, "db-status.data": "slow"})
        if watched.status_code == 200 and watched.json()["response"].get("db-status", {}).get("data") == "ok":
            break
        assert time.monotonic() < deadline, "the watcher never saw the database answer again"
        time.sleep(1)
    page = post(overview, {"url.search": f"?region={quote(region)}&period=all", "db-status.data": "ok"})
    assert "banner" not in json.dumps(page.json()["response"]["overview-status"])
