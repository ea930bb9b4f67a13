"""`bi-app serve` end to end: a real gunicorn process on a free port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

BI_APP = str(Path(sys.executable).with_name("bi-app"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early:\n{process.stdout.read()}")
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"server did not answer {url} within {seconds}s")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    processes: list[subprocess.Popen] = []

    def start(**env: str) -> str:
        port = free_port()
        process = subprocess.Popen(
            [BI_APP, "serve", "--port", str(port)],
            env={**os.environ, "BI_DATA_DIR": str(tmp_path / "data"), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/healthz", process)
        return base

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=20)


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
    base = serve(BI_DATABASE_URL="postgresql://bi:Hunter2Secret@127.0.0.1:1/shop", BI_CONNECT_TIMEOUT_S="2")
    status, body = get(f"{base}/healthz")
    assert status == 503
    answer = json.loads(body)
    assert answer["status"] == "unavailable" and "Connection refused" in answer["reason"]
    assert b"Hunter2Secret" not in body
    assert get(f"{base}/")[0] == 200, "the app keeps serving its pages"
