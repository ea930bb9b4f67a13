import pytest
from sqlalchemy import text

from bi_app.analytics import kpis
from data_layer.bootstrap import load_demo_data
from data_layer.engine import DatabaseError, describe_error, is_postgres, make_engine, ping, safe_url
from data_layer.filters import Filters
from tests.support import IN_CI, URL_PASSWORD

UNREACHABLE = f"postgresql://reporter:{URL_PASSWORD}@127.0.0.1:1/shop"


def test_safe_url_masks_the_password() -> None:
    shown = safe_url(f"postgresql://reporter:{URL_PASSWORD}@db.internal:5432/shop?sslmode=require")
    assert URL_PASSWORD not in shown
    assert shown == "postgresql://reporter:***@db.internal:5432/shop?sslmode=require"


def test_unreachable_database_gives_one_line_without_the_password() -> None:
    engine = make_engine(UNREACHABLE, connect_timeout_s=2)
    with pytest.raises(DatabaseError) as caught:
        ping(engine)
    message = str(caught.value)
    assert URL_PASSWORD not in message
    assert "\n" not in message
    assert "127.0.0.1" in message and "***" in message


def test_describe_error_scrubs_a_password_echoed_by_the_driver() -> None:
    error = RuntimeError(f'password authentication failed for user "reporter" ({URL_PASSWORD})')
    assert URL_PASSWORD not in describe_error(error, UNREACHABLE)


def test_is_postgres() -> None:
    assert is_postgres("postgresql://u@h/db")
    assert not is_postgres("sqlite:///x.sqlite")


def test_url_options_are_kept_beside_the_statement_timeout(postgres_schema_url: str) -> None:
    engine = make_engine(postgres_schema_url, statement_timeout_ms=1234)
    with engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "1234ms"
        assert conn.execute(text("SELECT current_schema()")).scalar_one().startswith("test_")
    engine.dispose()


def test_sslmode_require_url_works(postgres_schema_url: str, postgres_admin) -> None:  # noqa: ANN001
    with postgres_admin.connect() as conn:
        server_has_tls = conn.execute(text("SHOW ssl")).scalar_one() == "on"
    if not server_has_tls:
        if IN_CI:
            pytest.fail("CI turns TLS on in the test PostgreSQL (.ci/postgres-ssl.sh); it is off")
        pytest.skip("the test PostgreSQL has TLS off (run .ci/postgres-ssl.sh to turn it on)")
    engine = make_engine(f"{postgres_schema_url}&sslmode=require")
    load_demo_data(engine, 100, 1, replace=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).scalar_one()
        assert kpis(conn, Filters())["orders"]["value"] == 100
    engine.dispose()


def test_rows_refuses_a_read_past_its_cap_and_run_logs_slow_reads(db_url: str, caplog, monkeypatch) -> None:  # noqa: ANN001
    import logging

    from sqlalchemy import literal, select, union_all

    from data_layer import engine as engine_module
    from data_layer.engine import TooManyRowsError, rows, run

    engine = make_engine(db_url)
    five = union_all(*[select(literal(i).label("n")) for i in range(5)])
    with engine.connect() as conn:
        assert sorted(n for (n,) in rows(conn, five, cap=5)) == [0, 1, 2, 3, 4]
        with pytest.raises(TooManyRowsError, match="more than 4 rows"):
            rows(conn, five, cap=4)
        monkeypatch.setattr(engine_module, "SLOW_READ_S", 0.0)  # every read is slow: logged at INFO
        with caplog.at_level(logging.INFO, logger="data_layer.engine"):
            assert run(conn, select(literal(7))).scalar_one() == 7
        assert any("read on" in record.message and "SELECT" in record.message for record in caplog.records)
    engine.dispose()
