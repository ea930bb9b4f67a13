"""More than one machine, and PostgreSQL stopped and started, against PostgreSQL servers of the test's own.

A primary made with ``initdb`` and a streaming replica made from it with ``pg_basebackup``, each on a
loopback port (the shared test server is never stopped). Two app instances share one Redis and read
the replica (``BI_DATABASE_READ_URL``) while sign-in and loads use the primary: a load on the primary
becomes visible through the replica and both instances serve the new data version; with the primary
stopped they keep serving what the replica holds. A third instance on the primary alone says the
database is unavailable while it is stopped and heals by itself once it is back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import requests
from sqlalchemy import text

from data_layer.engine import make_engine
from tests.support import BI_APP, IN_CI, SECRET_KEY, USER_PASSWORD, served, stored_kpis

pytestmark = pytest.mark.slow


def postgres_bin() -> Path | None:
    found = shutil.which("pg_config")
    if found:
        bindir = Path(subprocess.run([found, "--bindir"], capture_output=True, text=True).stdout.strip())
        if (bindir / "initdb").exists():
            return bindir
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    """A PostgreSQL server of this test: its folder, port and the tools to run it."""

    bindir: Path
    folder: Path
    port: int

    def command(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        argv = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{tool} {args}: {done.stdout}\n{done.stderr}"
        return done

    def start(self) -> None:
        self.command("pg_ctl", "-D", str(self.folder), "-l", str(self.folder / "server.log"), "-w", "-t", "120",
                     "start")

    def stop(self) -> None:
        self.command("pg_ctl", "-D", str(self.folder), "-m", "fast", "-w", "-t", "120", "stop")

    def url(self, database: str = "shop") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def configure(self, **settings: str) -> None:
        with open(self.folder / "postgresql.conf", "a") as conf:
            for name, value in settings.items():
                conf.write(f"{name} = {value}\n")


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[Cluster, Cluster]]:
    bindir = postgres_bin()
    if bindir is None:
        if IN_CI:
            pytest.fail("CI has PostgreSQL's server tools (initdb, pg_basebackup); this test must run there")
        pytest.skip("PostgreSQL's server tools (initdb, pg_basebackup) are not installed")
    root = Path(tempfile.mkdtemp(prefix="bi-clusters-"))
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    primary = Cluster(bindir, root / "primary", free_port())
    replica = Cluster(bindir, root / "replica", free_port())
    started: list[Cluster] = []
    try:
        primary.command("initdb", "-D", str(primary.folder), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                        "--no-sync")
        socket_dir = str(root)
        primary.configure(port=str(primary.port), listen_addresses="'127.0.0.1'",
                          unix_socket_directories=f"'{socket_dir}'", wal_level="replica", max_wal_senders="4",
                          fsync="off", synchronous_commit="off", full_page_writes="off", shared_buffers="32MB")
        primary.start()
        started.append(primary)
        primary.command("createdb", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "shop")
        primary.command("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                        "-D", str(replica.folder), "-R", "-X", "stream", "--no-sync", "--checkpoint=fast")
        replica.configure(port=str(replica.port), hot_standby="on")
        replica.start()
        started.append(replica)
        yield primary, replica
    finally:
        for cluster in reversed(started):
            subprocess.run(["runuser", "-u", "postgres", "--"] * (os.geteuid() == 0) +
                           [str(bindir / "pg_ctl"), "-D", str(cluster.folder), "-m", "immediate", "stop"],
                           capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def app_env(folder: Path, **settings: str) -> dict[str, str]:
    env = {**os.environ, "BI_DATA_DIR": str(folder), "BI_COLUMNAR": "0", "BI_LOG_FORMAT": "json", **settings}
    for name in ("BI_DATABASE_WRITE_URL", "BI_DATABASE_READ_URL", "BI_CACHE_URL", "BI_SECRET_KEY"):
        if name not in settings:
            env.pop(name, None)
    return env


def kpis(session: requests.Session, base: str) -> dict:
    answer = session.get(f"{base}/api/v1/kpis?period=all", timeout=60)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    return {"revenue": data["revenue"]["value"], "orders": data["orders"]["value"]}


def version_of(base: str) -> str:
    return requests.get(f"{base}/healthz", timeout=60).json()["data_version"]


def sign_in(base: str, name: str) -> requests.Session:
    session = requests.Session()
    form = session.get(f"{base}/login", timeout=60).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    answer = session.post(f"{base}/login", data={"csrf_token": token, "name": name, "password": USER_PASSWORD,
                                                 "next": "/"}, allow_redirects=False, timeout=60)
    assert answer.status_code == 302, answer.text[:300]
    return session


def replicated(primary: Cluster, replica: Cluster, deadline_s: float = 120) -> None:
    """Wait until the replica has replayed everything the primary has written so far."""
    source, standby = make_engine(primary.url("postgres")), make_engine(replica.url("postgres"))
    try:
        with source.connect() as conn:
            target = conn.execute(text("SELECT pg_current_wal_lsn()")).scalar_one()
        deadline = time.monotonic() + deadline_s
        while True:
            with standby.connect() as conn:
                done = conn.execute(text("SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)"),
                                    {"lsn": target}).scalar_one()
            if done:
                return
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(0.2)
    finally:
        source.dispose()
        standby.dispose()


def test_two_instances_read_the_replica_and_follow_a_load_on_the_primary(clusters, tmp_path: Path) -> None:
    primary, replica = clusters
    write = {"BI_DATABASE_URL": primary.url()}
    loaded = subprocess.run([BI_APP, "demo-data", "--rows", "1500", "--no-train"], env=app_env(tmp_path, **write),
                            capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    added = subprocess.run([BI_APP, "users", "add", "ada", "--role", "admin"], input=f"{USER_PASSWORD}\n",
                           env=app_env(tmp_path, **write), capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    replicated(primary, replica)

    settings = {"BI_DATABASE_URL": primary.url(), "BI_DATABASE_READ_URL": replica.url(),
                "BI_CACHE_URL": "redis://127.0.0.1:6379/0", "BI_SECRET_KEY": SECRET_KEY}
    with ExitStack() as stack:
        bases = [stack.enter_context(served(app_env(tmp_path / f"app-{n}", **settings), tmp_path / f"app-{n}.log"))
                 for n in range(2)]
        sessions = [sign_in(base, "ada") for base in bases]  # a session written to the primary, read back there
        health = requests.get(f"{bases[0]}/healthz", timeout=60).json()
        assert f":{replica.port}/" in health["database"], "the dashboards read the replica"
        first = version_of(bases[0])
        assert version_of(bases[1]) == first
        expected = stored_kpis(make_engine(primary.url()))
        assert [kpis(session, base) for session, base in zip(sessions, bases)] == [pytest.approx(expected)] * 2

        more = subprocess.run([BI_APP, "demo-data", "--rows", "700", "--seed", "9", "--no-train"],
                              env=app_env(tmp_path, **write), capture_output=True, text=True)
        assert more.returncode == 0, more.stderr
        replicated(primary, replica)
        expected = stored_kpis(make_engine(replica.url()))
        assert expected == pytest.approx(stored_kpis(make_engine(primary.url())))
        deadline = time.monotonic() + 60  # each instance looks at the data version at most every few seconds
        while {version_of(base) for base in bases} != {version_of(bases[0])} or version_of(bases[0]) == first:
            assert time.monotonic() < deadline, "the instances did not see the new data version"
            time.sleep(0.5)
        assert [kpis(session, base) for session, base in zip(sessions, bases)] == [pytest.approx(expected)] * 2


    # Without sign-in (which reads the primary), an instance keeps answering from the replica while the
    # primary is stopped, the uncached answers included: the dashboards' queries go to the replica.
    demo = {"BI_DATABASE_URL": primary.url(), "BI_DATABASE_READ_URL": replica.url()}
    with served(app_env(tmp_path / "demo", **demo), tmp_path / "demo.log") as base:
        session = requests.Session()
        primary.stop()
        try:
            assert kpis(session, base) == pytest.approx(expected)
            uncached = session.get(f"{base}/api/v1/regions?period=all", timeout=60)
            assert uncached.status_code == 200, uncached.text
        finally:
            primary.start()


def test_postgres_stopped_and_started_is_a_clear_503_and_heals_by_itself(clusters, tmp_path: Path) -> None:
    primary, _replica = clusters
    env = app_env(tmp_path / "app", BI_DATABASE_URL=primary.url(), BI_CONNECT_TIMEOUT_S="2")
    loaded = subprocess.run([BI_APP, "demo-data", "--rows", "900", "--replace", "--no-train"], env=env,
                            capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    log = tmp_path / "app.log"
    with served(env, log) as base:
        session = requests.Session()
        expected = stored_kpis(make_engine(primary.url()))
        assert kpis(session, base) == pytest.approx(expected)
        pids_before = {entry["pid"] for entry in requests_logged(log)}

        primary.stop()
        try:
            answer = session.get(f"{base}/api/v1/kpis?period=all", timeout=60)
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "database_unavailable" and "Retry-After" in answer.headers
            assert requests.get(f"{base}/healthz", timeout=60).status_code == 503
            page = session.get(f"{base}/", headers={"Accept": "text/html"}, timeout=60)
            assert page.status_code == 200, "the pages still load, and say the database cannot be reached"
        finally:
            primary.start()

        deadline = time.monotonic() + 120
        while session.get(f"{base}/api/v1/kpis?period=all", timeout=60).status_code != 200:
            assert time.monotonic() < deadline, "the app did not reconnect by itself"
            time.sleep(0.5)
        assert kpis(session, base) == pytest.approx(expected)
        assert {entry["pid"] for entry in requests_logged(log)} == pids_before, "no worker died"


def requests_logged(log: Path) -> list[dict]:
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [entry for entry in entries if entry.get("event") == "request"]
