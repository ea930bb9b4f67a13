from pathlib import Path

import pytest

from bi_app.config import Config, ConfigError, normalise_database_url
from tests.support import URL_PASSWORD


def test_unset_url_means_embedded_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    config = Config.from_env({"BI_DATA_DIR": str(tmp_path / "d")})
    assert config.embedded
    assert config.database_url == f"sqlite:///{(tmp_path / 'd' / 'bi_demo.sqlite').resolve()}"


def test_bi_database_url_wins_over_database_url() -> None:
    config = Config.from_env(
        {"BI_DATABASE_URL": "postgresql://a@h/one", "DATABASE_URL": "postgresql://b@h/two"}
    )
    assert config.database_url == "postgresql://a@h/one"
    assert not config.embedded


def test_database_url_is_accepted_and_postgres_scheme_normalised() -> None:
    config = Config.from_env({"DATABASE_URL": f"postgres://u:{URL_PASSWORD}@db.example:5432/shop?sslmode=require"})
    assert config.database_url == f"postgresql://u:{URL_PASSWORD}@db.example:5432/shop?sslmode=require"


def test_unsupported_scheme_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unsupported database URL scheme 'mysql'"):
        normalise_database_url("mysql://root@localhost/shop")


def test_bad_integer_setting_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="BI_DEMO_ROWS must be an integer"):
        Config.from_env({"BI_DEMO_ROWS": "lots"})


def test_settings_are_read_from_the_environment() -> None:
    config = Config.from_env(
        {"BI_DEMO_ROWS": "500", "BI_DEMO_SEED": "7", "BI_CACHE_URL": "redis://127.0.0.1:6379/0"}
    )
    assert (config.demo_rows, config.demo_seed, config.cache_url) == (500, 7, "redis://127.0.0.1:6379/0")


@pytest.mark.parametrize(("name", "value", "message"), [
    ("BI_LOG_LEVEL", "LOUD", "BI_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    ("BI_DEMO_ROWS", "0", "BI_DEMO_ROWS must be 1 or more"),
    ("BI_STATEMENT_TIMEOUT_MS", "-1", "BI_STATEMENT_TIMEOUT_MS must be 1 or more"),
    ("BI_CONNECT_TIMEOUT_S", "0", "BI_CONNECT_TIMEOUT_S must be 1 or more"),
    ("BI_COLUMNAR_MEMORY", "0MB", "BI_COLUMNAR_MEMORY must be a size"),
    ("BI_CACHE_URL", "foo://x", "BI_CACHE_URL must be a redis://"),
])
def test_a_setting_that_cannot_work_is_refused_naming_it(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env({name: value})
