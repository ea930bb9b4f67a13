"""The load test in a short, bounded form: bench/load_test.py's simulated users (Locust) against the
deployment's gunicorn (2 workers, sign-in on, Redis, the real PostgreSQL), for a few seconds.

It checks what a load must never do (fail a request, leave a page view unfinished), not how fast the
answers are: timings are bench/load_test.py's, on 1,000,000 orders, in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import pytest

from bench.load_test import Deployment, record_journeys, run_locust
from tests.support import BI_APP

pytestmark = pytest.mark.slow


def test_simulated_users_walk_the_pages_without_an_error(postgres_schema_url: str, tmp_path: Path) -> None:
    url = postgres_schema_url
    loaded = subprocess.run([BI_APP, "demo-data", "--rows", "4000", "--no-train"],
                            env={**os.environ, "BI_DATABASE_URL": url, "BI_DATA_DIR": str(tmp_path / "data")},
                            capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    with Deployment(url, BI_WORKERS="2", BI_THREADS="4", BI_DATA_DIR=str(tmp_path / "data")) as server:
        journeys = record_journeys(server.base)
        for page, waves in journeys["pages"].items():  # (how they group in waves depends on the machine's pace)
            calls = {call["name"] for wave in waves for call in wave}
            assert {"page-content", "url"} <= calls and any(name.endswith("content") and name != "page-content"
                                                            or name == "overview-kpis" for name in calls), (page, calls)
        path = tmp_path / "journeys.json"
        path.write_text(json.dumps(journeys))
        options = argparse.Namespace(seconds=15, think="0.5-1.5", spawn_rate=5.0)
        result = run_locust(server, 6, options, path, tmp_path)
    assert result["failures"] == 0, result["failure_kinds"]
    assert result["views"] >= 6, "every user finished page views"
    names = set(result["by_name"])
    assert {"GET /", "GET /segments", "GET /regions", "callback overview-kpis"} <= names, names
    # The page, its layout and dependencies, and its callbacks: the router, the filter bar, the chips and the
    # page's content (a view the server rewrites, such as one without dates, has one more).
    assert result["requests"] >= 7 * result["views"], "each page view is the page, layout, dependencies and its callbacks"
