"""Helpers shared by tests (fixtures live in conftest.py)."""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

#: In CI every test that needs a real service must run, never skip.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BI_APP = str(Path(sys.executable).with_name("bi-app"))


@contextmanager
def served(env: dict[str, str], log: Path, seconds: float = 60) -> Iterator[str]:
    """`bi-app serve` on a free port with exactly ``env``; yields its base URL once /healthz answers.

    The server's output goes to ``log`` (shown if it exits early); it is stopped on exit.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with open(log, "w") as output:
        process = subprocess.Popen([BI_APP, "serve", "--port", str(port)], env=env,
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + seconds
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited early:\n{log.read_text()}")
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).read()
                break
            except urllib.error.HTTPError:
                break  # it answers (503: the database is down, which some tests want)
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"server did not answer {base}/healthz within {seconds}s") from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def assert_same(got: object, expected: object, where: str) -> None:
    """Equal structures, floats to 1e-9 relative (two engines may round the last digit apart)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), where
        for key in expected:
            assert_same(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-9), where
    else:
        assert got == expected, where


def net_revenue(orders: pd.DataFrame) -> pd.Series:
    """Each line's net revenue: its amount less what was refunded of it (the README's Measures)."""
    return orders["total_amount"] - orders["refunded_amount"]
