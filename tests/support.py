"""Helpers shared by tests (fixtures live in conftest.py)."""

import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pandas as pd
import pytest
import requests

#: A database password made for this test run (never written in the code): tests put it in URLs and check
#: that no page, log line or message shows it.
URL_PASSWORD = secrets.token_hex(12)
#: The passwords of the users tests add (and the one they change to), made for this run too.
USER_PASSWORD, NEW_PASSWORD = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
#: The BI_SECRET_KEY of servers and commands with sign-in on, made for this run too.
SECRET_KEY = secrets.token_urlsafe(40)
#: In CI every test that needs a real service must run, never skip.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BI_APP = str(Path(sys.executable).with_name("bi-app"))


@contextmanager
def served(env: dict[str, str], log: Path, seconds: float = 60, cwd: Path | None = None) -> Iterator[str]:
    """`bi-app serve` on a free port with exactly ``env`` (in ``cwd``, as `make run` in a checkout);
    yields its base URL once /healthz answers.

    The server's output goes to ``log`` (shown if it exits early); it is stopped on exit.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with open(log, "w") as output:
        process = subprocess.Popen([BI_APP, "serve", "--port", str(port)], env=env, cwd=cwd,
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


def expected_histogram(values: pd.Series, bins: int = 20) -> tuple[list[int], list[float], bool]:
    """The order-value histogram as the API draws it, with numpy: equal-width bins from the least to the
    largest order, or, when the orders above the 99th percentile would take more of the axis than
    all the others, bins up to that percentile and one overflow bin for the orders above it.
    Returns the counts, the bins' left edges and whether the overflow bin is there."""
    import numpy as np

    lo, hi, q99 = values.min(), values.max(), values.quantile(0.99)
    if hi - q99 > q99 - lo:
        counts, edges = np.histogram(values[values <= q99], bins=bins, range=(lo, q99))
        return [*counts.tolist(), int((values > q99).sum())], [*edges[:-1].tolist(), q99], True
    counts, edges = np.histogram(values, bins=bins)
    return counts.tolist(), edges[:-1].tolist(), False


def wide_shop(path: Path, *, products: int = 1500, regions: int = 40, orders: int = 6000, seed: int = 7) -> Path:
    """A shop's CSV export as real logs look: many products with names near 60 characters, many
    regions (one far larger than the rest), a few categories, no segments, satisfaction or discounts,
    and a handful of huge orders. Writes ``path`` and returns it."""
    import numpy as np

    rng = np.random.default_rng(seed)
    words = ["Vintage", "Ceramic", "Hand-painted", "Large", "Organic", "Cotton", "Stainless", "Bamboo", "Set of 4",
             "Limited", "Edition", "Garden", "Kitchen", "Storage", "Lantern", "Cushion", "Blanket", "Teapot"]
    names = []
    for i in range(products):
        name = " ".join(rng.choice(words, size=8)) + f" No. {i:04d}"
        names.append((name + " Deluxe Collection Edition")[:60])
    region_names = ["United Kingdom"] + [f"Region {i:02d} of the Overseas Territories" for i in range(1, regions)]
    region_weights = np.array([40.0] + [1.0] * (regions - 1))
    lines = []
    for order in range(orders):
        day = pd.Timestamp("2023-01-01") + pd.Timedelta(days=int(rng.integers(0, 700)))
        customer = f"C{int(rng.integers(0, orders // 3)):05d}"
        region = region_names[rng.choice(regions, p=region_weights / region_weights.sum())]
        for _ in range(int(rng.integers(1, 4))):
            # Every product sold once, then the few best sellers most often, as in a real catalogue.
            product = len(lines) if len(lines) < products else int(min(rng.zipf(1.3), products) - 1)
            amount = round(float(rng.uniform(3, 80)), 2) * (400 if order % 1500 == 0 else 1)
            lines.append((f"O{order:06d}", day.date().isoformat(), names[product], f"Category {product % 15}",
                          round(amount, 2), customer, region))
    frame = pd.DataFrame(lines, columns=["Order", "Date", "Product", "Category", "Amount", "Customer", "Region"])
    frame.to_csv(path, index=False)
    return path


def callback_body(dependency: dict, values: dict[str, object] | None = None) -> dict:
    """The body the renderer posts for a callback of ``/_dash-dependencies``: inputs as ``values`` gives them by
    ``id.property`` (a pattern-matched group by ``type.property``: its list of entries), else empty."""
    values = values or {}

    def entry(item: dict) -> object:
        if item["id"].startswith("{"):
            return values.get(f"{json.loads(item['id'])['type']}.{item['property']}", [])
        return {"id": item["id"], "property": item["property"], "value": values.get(f"{item['id']}.{item['property']}")}

    def entries(items: list[dict]) -> list:
        return [entry(item) for item in items]

    output = dependency["output"]
    parts = [part.rsplit(".", 1) for part in (output[2:-2].split("...") if output.startswith("..") else [output])]
    outputs = [[] if component.startswith("{") else {"id": component, "property": prop.split("@")[0]}
               for component, prop in parts]
    return {"output": output, "outputs": outputs if output.startswith("..") else outputs[0],
            "inputs": entries(dependency["inputs"]), "state": entries(dependency["state"]),
            "changedPropIds": []}


def stored_kpis(engine) -> dict:  # noqa: ANN001
    """Net revenue and orders of the stored lines, read with plain SQL and computed with pandas."""
    with engine.connect() as conn:
        lines = pd.read_sql("SELECT order_id, line_type, total_amount, refunded_amount FROM advanced_sales_data", conn)
    amount = lines["total_amount"].astype(float)
    counted = (lines["line_type"] == "sale") & (amount != 0)
    return {"revenue": round((amount - lines["refunded_amount"].astype(float)).sum(), 2),
            "orders": lines.loc[counted, "order_id"].nunique()}


def send_and_leave(session: requests.Session, url: str, body: dict, headers: dict[str, str] | None = None) -> None:
    """POST ``body`` (JSON) as ``session`` would, then close the connection without waiting for the answer, as a
    closed browser tab does. Over HTTPS the session's ``verify`` names the certificate to trust."""
    prepared = session.prepare_request(requests.Request("POST", url, json=body, headers={
        "X-CSRFToken": session.cookies.get("_csrf_token", ""), **(headers or {})}))
    where = urlsplit(url)
    head = [f"POST {where.path} HTTP/1.1", f"Host: {where.netloc}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in prepared.headers.items() if name.lower() != "connection"]
    connection = socket.create_connection((where.hostname, where.port), timeout=30)
    if where.scheme == "https":
        context = ssl.create_default_context(cafile=session.verify if isinstance(session.verify, str) else None)
        connection = context.wrap_socket(connection, server_hostname=where.hostname)
    with connection:
        connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + prepared.body)
