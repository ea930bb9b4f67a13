"""`bi-app serve` end to end: a real gunicorn process on a free port."""

from __future__ import annotations

import itertools
import json
import os
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

import pytest

from tests.support import URL_PASSWORD, served


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    with ExitStack() as servers:
        numbers = itertools.count()

        def start(**env: str) -> str:
            full_env = {**os.environ, "BI_DATA_DIR": str(tmp_path / "data"), **env}
            return servers.enter_context(served(full_env, tmp_path / f"server-{next(numbers)}.log"))

        yield start


@pytest.mark.slow
def test_serve_seeds_the_embedded_database_and_serves_the_overview(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BI_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    base = serve()
    status, body = get(f"{base}/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = get(f"{base}/")
    assert status == 200 and b"_dash-renderer" in body


@pytest.mark.slow
def test_serve_starts_with_the_database_down_and_healthz_says_why(serve) -> None:
    base = serve(BI_DATABASE_URL=f"postgresql://bi:{URL_PASSWORD}@127.0.0.1:1/shop", BI_CONNECT_TIMEOUT_S="2")
    status, body = get(f"{base}/healthz")
    assert status == 503
    answer = json.loads(body)
    assert answer["status"] == "unavailable" and "Connection refused" in answer["reason"]
    assert URL_PASSWORD.encode() not in body
    assert get(f"{base}/")[0] == 200, "the app keeps serving its pages"
