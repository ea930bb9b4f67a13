"""Shared fixtures: real SQLite and real PostgreSQL databases, one per test.

PostgreSQL comes from BI_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test).
Each test gets its own schema there, dropped afterwards. Without a server the
PostgreSQL variants skip, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from data_layer.engine import make_engine
from data_layer.users import add_user
from tests.support import BI_APP, IN_CI, SECRET_KEY, USER_PASSWORD, net_revenue, served

DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    return os.environ.get("BI_TEST_POSTGRES_URL") or DEFAULT_TEST_POSTGRES_URL


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An engine on the test PostgreSQL server, or a skip (a failure in CI) without one."""
    engine = make_engine(postgres_url())
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        reason = f"PostgreSQL not reachable at {postgres_url()}: {str(exc.orig).strip().splitlines()[0]}"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: the PostgreSQL tests must run)")
        pytest.skip(reason)
    yield engine
    engine.dispose()


@contextmanager
def private_schema(postgres_admin: Engine) -> Iterator[str]:
    """A URL whose connections work in a fresh schema of their own, dropped when the block ends."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with postgres_admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in postgres_url() else "?"
    try:
        yield f"{postgres_url()}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with postgres_admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def postgres_schema_url(postgres_admin: Engine) -> Iterator[str]:
    """A URL whose connections work in a fresh schema of their own, dropped afterwards."""
    with private_schema(postgres_admin) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database: SQLite in a temp folder, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite'}"
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the empty database of :func:`db_url`."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def plain_engine(db_url: str) -> Iterator[Engine]:
    """An engine with none of the app's settings, to write tables the way other tools do."""
    url = db_url
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    engine = create_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a dash.Dash
    """One app per test session (Dash's page and callback registries are process-wide),
    on an embedded SQLite database seeded with the 2,000 demo orders (seed 42)."""
    from bi_app.app import create_app
    from bi_app.config import Config

    config = Config.from_env({"BI_DATA_DIR": str(tmp_path_factory.mktemp("embedded"))})
    assert config.embedded
    return create_app(config)


@pytest.fixture
def client(app):  # noqa: ANN001, ANN201
    return app.server.test_client()


@pytest.fixture
def point_app_at(app, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    """Point the session's app at another database (and optionally cache) for one test."""
    from dataclasses import replace as replace_config

    from bi_app.context import CACHE_KEY, CONFIG_KEY
    from data_layer.cache import ResultCache

    def point(url: str, cache_url: str | None = None) -> None:
        config = replace_config(app.server.config[CONFIG_KEY], database_url=url, embedded=False,
                                cache_url=cache_url, connect_timeout_s=2)
        monkeypatch.setitem(app.server.config, CONFIG_KEY, config)
        monkeypatch.setitem(app.server.config, CACHE_KEY, ResultCache.from_url(cache_url))

    return point


@dataclass
class SecuredSite:
    """A real server with sign-in on (``BI_SECRET_KEY``) over 2,000 demo orders, and its users."""

    base: str
    backend: str
    #: The URL that may write (PostgreSQL: the server itself reads as a role with SELECT only).
    write_url: str
    env: dict[str, str]
    log: Path

    def orders(self) -> pd.DataFrame:
        """The stored order lines, read with pandas (not through the app), with each line's net revenue."""
        engine = make_engine(self.write_url)
        try:
            frame = pd.read_sql_table("advanced_sales_data", engine)
        finally:
            engine.dispose()
        frame["net"] = net_revenue(frame)
        return frame


#: Every user of :func:`secured_site`: name -> (role, regions). All share :data:`SITE_PASSWORD`.
SITE_USERS = {
    "vera": ("viewer", ()), "anna": ("analyst", ()), "adam": ("admin", ()),
    "nora": ("viewer", ("North",)), "sam": ("analyst", ("South",)),
}
SITE_PASSWORD = USER_PASSWORD
READER_ROLE = "bi_test_reader"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def secured_site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredSite]:
    """`bi-app serve` with sign-in on, on SQLite or on PostgreSQL. On PostgreSQL the server reads as a
    role that may only SELECT (``BI_DATABASE_URL``) and writes as another (``BI_DATABASE_WRITE_URL``)."""
    folder = tmp_path_factory.mktemp(f"secured-{request.param}")
    env = {**os.environ, "BI_DATA_DIR": str(folder / "data"), "BI_SECRET_KEY": SECRET_KEY,
           "BI_COLUMNAR": "0", "BI_DEMO_ROWS": "2000"}
    env.pop("BI_CACHE_URL", None)
    schema = None
    if request.param == "sqlite":
        write_url = read_url = f"sqlite:///{folder / 'shop.sqlite'}"
    else:
        admin = request.getfixturevalue("postgres_admin")
        schema = f"test_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            conn.execute(text(f"DO $$ BEGIN CREATE ROLE {READER_ROLE} LOGIN; "
                              "EXCEPTION WHEN duplicate_object THEN NULL; END $$"))
            conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO {READER_ROLE}'))
            conn.execute(text(f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT SELECT ON TABLES TO {READER_ROLE}'))
        separator = "&" if "?" in postgres_url() else "?"
        write_url = f"{postgres_url()}{separator}options={quote(f'-csearch_path={schema}')}"
        read_url = write_url.replace("postgresql://postgres@", f"postgresql://{READER_ROLE}@", 1)
        assert read_url != write_url, "the test PostgreSQL URL must name the user postgres"
    env.update(BI_DATABASE_URL=read_url, BI_DATABASE_WRITE_URL=write_url)
    load = subprocess.run([BI_APP, "demo-data", "--rows", "2000", "--no-train"],
                          env={**env, "BI_DATABASE_URL": write_url}, capture_output=True, text=True)
    assert load.returncode == 0, load.stderr
    engine = make_engine(write_url)
    with engine.begin() as conn:
        for name, (role, regions) in SITE_USERS.items():
            add_user(conn, name, role, SITE_PASSWORD, regions)
    engine.dispose()
    log = folder / "server.log"
    try:
        with served(env, log) as base:
            yield SecuredSite(base, request.param, write_url, env, log)
    finally:
        if schema is not None:
            with request.getfixturevalue("postgres_admin").begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
