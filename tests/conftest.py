"""Shared fixtures: real SQLite and real PostgreSQL databases, one per test.

PostgreSQL comes from BI_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test).
Each test gets its own schema there, dropped afterwards. Without a server the
PostgreSQL variants skip, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from data_layer.engine import make_engine

DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
from tests.support import IN_CI


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


@pytest.fixture
def postgres_schema_url(postgres_admin: Engine) -> Iterator[str]:
    """A URL whose connections work in a fresh schema of their own, dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with postgres_admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in postgres_url() else "?"
    yield f"{postgres_url()}{separator}options={quote(f'-csearch_path={schema}')}"
    with postgres_admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


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
