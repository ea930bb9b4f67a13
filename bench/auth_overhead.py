"""What sign-in costs a request: a trivial Dash callback served in process (Flask's test client), with
sign-in on (a session, its CSRF token) and in demo mode, on the same PostgreSQL database, in one run.

Each mode runs in a process of its own (Dash keeps one app per process); the callback (the menu's toggle)
does no data work, so the difference is the guard's: reading the session's user, Flask-Login, the CSRF
check and the session cookie.

    .venv/bin/python bench/auth_overhead.py [--requests 500] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.report import write_section  # noqa: E402

USER = "bench"
#: Made for this run, and handed to the measuring processes in their environment.
PASSWORD = os.environ.get("BI_BENCH_PASSWORD") or secrets.token_urlsafe(18)
CALLBACK = {"output": "navbar-collapse.is_open", "outputs": {"id": "navbar-collapse", "property": "is_open"},
            "inputs": [{"id": "navbar-toggler", "property": "n_clicks", "value": 1}],
            "state": [{"id": "navbar-collapse", "property": "is_open", "value": False}],
            "changedPropIds": ["navbar-toggler.n_clicks"]}


def measure(requests: int) -> list[float]:
    """Seconds per callback request in this process, with sign-in on when ``BI_SECRET_KEY`` is set."""
    from bi_app.app import create_app

    client = create_app().server.test_client()
    headers = {}
    if os.environ.get("BI_SECRET_KEY"):
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
        answer = client.post("/login", data={"csrf_token": token, "name": USER, "password": PASSWORD, "next": "/"})
        assert answer.status_code == 302, answer.status_code
        client.get("/", headers={"Accept": "text/html"})
        headers = {"X-CSRFToken": client.get_cookie("_csrf_token").value}
    times = []
    for index in range(requests + 50):
        started = time.perf_counter()
        assert client.post("/_dash-update-component", json=CALLBACK, headers=headers).status_code == 200
        if index >= 50:  # after warming up
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--child", choices=["signed-in", "demo"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.requests)))
        return
    schema = f"bench_auth_{secrets.token_hex(3)}"
    url = f"{args.postgres}?options={quote(f'-csearch_path={schema}')}"
    subprocess.run(["psql", args.postgres, "-qc", f"CREATE SCHEMA {schema}"], check=True)
    env = {**os.environ, "BI_DATABASE_URL": url, "BI_COLUMNAR": "0", "BI_LOG_LEVEL": "WARNING"}
    env.pop("BI_SECRET_KEY", None)
    bi_app = str(Path(sys.executable).with_name("bi-app"))
    try:
        subprocess.run([bi_app, "demo-data", "--rows", "2000", "--no-train"], env=env, check=True, capture_output=True)
        signed = {**env, "BI_SECRET_KEY": secrets.token_urlsafe(40)}
        subprocess.run([bi_app, "users", "add", USER, "--role", "analyst"], env=signed, input=PASSWORD + "\n",
                       text=True, check=True, capture_output=True)
        medians = {}
        for mode, mode_env in (("demo", env), ("signed-in", signed), ("demo", env), ("signed-in", signed)):
            done = subprocess.run([sys.executable, __file__, "--child", mode, "--requests", str(args.requests)],
                                  env={**mode_env, "BI_BENCH_PASSWORD": PASSWORD}, check=True, capture_output=True,
                                  text=True)
            medians.setdefault(mode, []).append(statistics.median(json.loads(done.stdout.splitlines()[-1])))
    finally:
        subprocess.run(["psql", args.postgres, "-qc", f"DROP SCHEMA {schema} CASCADE"], check=True)
    demo, signed_in = min(medians["demo"]) * 1000, min(medians["signed-in"]) * 1000
    line = (f"A callback with no data work, {args.requests} requests per mode, each mode twice (the better kept): "
            f"demo mode {demo:.2f} ms, signed in {signed_in:.2f} ms per request: {signed_in - demo:.2f} ms more "
            f"({signed_in / demo:.2f}x).")
    print(line)
    write_section("What sign-in costs a request (PostgreSQL)", f"python bench/auth_overhead.py --requests {args.requests}",
                  line)


if __name__ == "__main__":
    main()
