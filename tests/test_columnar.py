"""The columnar snapshot: built from either database, used by the service once ready, replaced per version."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, event, text

from bi_app import analytics
from bi_app.context import current_engine, current_replica
from data_layer.bootstrap import load_demo_data
from data_layer.columnar import ColumnarReplica, build_snapshot
from data_layer.demo_data import generate_orders_frame
from data_layer.engine import make_engine
from data_layer.filters import Filters
from data_layer import meta
from data_layer.meta import data_version
from data_layer.schema import SEED_COLUMNS
from data_layer.summaries import order_source
from tests.support import assert_same


def version_of(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return data_version(conn)


def test_snapshot_of_a_seed_made_table_with_timestamps(plain_engine: Engine, engine: Engine, tmp_path: Path) -> None:
    frame = generate_orders_frame(300, seed=4)[list(SEED_COLUMNS)]  # the seed's columns: no ledger
    frame["order_date"] = pd.to_datetime(frame["order_date"])  # pandas writes timestamps
    with plain_engine.begin() as conn:
        frame.to_sql("advanced_sales_data", conn, index=False)
    replica = ColumnarReplica(engine, tmp_path)
    path = tmp_path / "seed.duckdb"
    with engine.connect() as conn:
        version = data_version(conn)
    # Never loaded by bi-app: the table's statistics (PostgreSQL) or the file's size and time (SQLite)
    # still give it a version.
    assert version is not None and version.startswith("external+")
    assert build_snapshot(engine, path) == version
    snapshot = replica._open(path)
    with snapshot.connect() as conn:
        got = analytics.kpis(conn, Filters(regions=("North",)))
        by_region = analytics.regions(conn, Filters()).set_index("region")
        # The snapshot summarised the rows itself (the table has no summary of ours).
        assert order_source(conn).summary
    north = frame[frame["region"] == "North"]
    assert got["orders"]["value"] == len(north)
    assert got["revenue"]["value"] == pytest.approx(round(north["total_amount"].sum(), 2), abs=0.005)
    expected = frame.groupby("region").agg(orders=("order_id", "nunique"), revenue=("total_amount", "sum"))
    assert by_region["orders"].to_dict() == expected["orders"].to_dict()
    assert by_region["revenue"].to_dict() == pytest.approx(expected["revenue"].round(2).to_dict(), abs=0.005)
    snapshot.dispose()


def test_a_snapshot_after_other_tools_wrote_summarises_the_rows_as_they_are(engine: Engine, plain_engine: Engine,
                                                                           tmp_path: Path) -> None:
    """The database's summary table is the last load's; rows written since by other tools make a new
    version, whose snapshot builds its own summary from the rows it copied."""
    load_demo_data(engine, 400, 6, replace=True)
    with plain_engine.begin() as conn:
        conn.exec_driver_sql("UPDATE advanced_sales_data SET total_amount = total_amount + 50, region = 'Outside' "
                             "WHERE order_id IN ('ORD-00000001', 'ORD-00000002')")
    if engine.url.get_backend_name().startswith("postgresql"):
        with plain_engine.connect() as conn:  # published when the writer's session goes idle; asked for here
            conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    meta.forget_fingerprint(engine)
    version = version_of(engine)
    path = tmp_path / "changed.duckdb"
    assert build_snapshot(engine, path) == version
    with engine.connect() as conn:
        stored = pd.read_sql("SELECT region, order_id, total_amount, refunded_amount FROM advanced_sales_data", conn)
    stored["net"] = stored["total_amount"].astype(float) - stored["refunded_amount"].astype(float)
    expected = stored.groupby("region").agg(orders=("order_id", "nunique"), revenue=("net", "sum"))
    snapshot = ColumnarReplica(engine, tmp_path)._open(path)
    with snapshot.connect() as conn:
        assert order_source(conn).summary
        by_region = analytics.regions(conn, Filters()).set_index("region")
    snapshot.dispose()
    assert by_region.loc["Outside", "orders"] == 2
    assert by_region["orders"].to_dict() == expected["orders"].to_dict()
    assert by_region["revenue"].to_dict() == pytest.approx(expected["revenue"].round(2).to_dict(), abs=0.005)


def test_a_new_version_replaces_the_old_snapshot(engine: Engine, tmp_path: Path) -> None:
    load_demo_data(engine, 200, 1, replace=True)
    replica = ColumnarReplica(engine, tmp_path)
    first = version_of(engine)
    assert replica.engine_for(first) is None  # not built yet: a background build starts
    deadline = time.monotonic() + 30
    while replica.engine_for(first) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert replica.engine_for(first) is not None
    load_demo_data(engine, 100, 2, replace=True)
    second = version_of(engine)
    replica.build(second)
    assert [p.name for p in tmp_path.glob("*.duckdb")] == [f"{second}.duckdb"]
    with replica.engine_for(second).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM advanced_sales_data")).scalar_one() == 100
    replica.close()


def test_the_service_answers_from_the_snapshot_once_it_is_built(db_url: str, app, client, point_app_at) -> None:
    source = make_engine(db_url)
    load_demo_data(source, 500, 3, replace=True)
    source.dispose()
    point_app_at(db_url)
    with app.server.test_request_context():
        replica = current_replica()
        replica.build(version_of(current_engine()))
        statements: list[str] = []
        event.listen(current_engine(), "before_cursor_execute", lambda *a: statements.append(a[2]))
    body = client.get("/api/v1/cohorts?region=East").get_json()
    database_work = [s for s in statements if "advanced_sales_data" in s or "bi_daily" in s]
    assert database_work == [], "the analysis ran on the snapshot, not the database"
    orders = generate_orders_frame(500, seed=3)
    east = orders[orders["region"] == "East"]
    first_month = pd.to_datetime(east["order_date"]).dt.strftime("%Y-%m")
    cohort_sizes = east.assign(m=first_month).groupby("customer_id")["m"].min().value_counts()
    got = {r["cohort"]: r["cohort_size"] for r in body["data"] if r["months_since_first"] == 0}
    assert got == cohort_sizes.to_dict()


def test_default_and_drill_down_views_are_precomputed_into_the_snapshot(engine: Engine, tmp_path: Path) -> None:
    from bi_app.service import ANALYSES, precompute_default_views
    from data_layer.filters import default_period, period_dates
    from bi_app.jsonable import to_jsonable
    from data_layer.cache import result_key

    load_demo_data(engine, 400, 5, replace=True)
    orders = generate_orders_frame(400, seed=5)
    version = version_of(engine)
    replica = ColumnarReplica(engine, tmp_path, precompute=precompute_default_views)
    replica.build(version)
    days = pd.to_datetime(orders["order_date"])
    opening = default_period(days.min().date(), days.max().date())
    start, end = period_dates(opening, days.max().date())
    assert start is not None  # the demo spans two years: the dashboard opens on the last 90 days
    views = [Filters(start=first, end=last, period=name, **one)
             for first, last, name in ((None, None, None), (start, end, opening))
             for one in ({}, *({"regions": (r,)} for r in sorted(orders["region"].unique())),
                         *({"segments": (s,)} for s in sorted(orders["customer_segment"].unique())))]
    with engine.connect() as conn:
        for name, analysis in ANALYSES.items():
            parameters = {p.name: p.default for p in analysis.parameters}
            if not analysis.precompute:
                key = result_key(name, version, Filters().cache_key(), sorted(parameters.items()))
                assert replica.precomputed(version, key) is None, name
                continue
            for filters in views:
                key = result_key(name, version, filters.cache_key(), sorted(parameters.items()))
                stored = replica.precomputed(version, key)
                assert stored is not None, (name, filters)
                expected = analysis.function(conn, filters, **parameters)
                assert_same(to_jsonable(stored), to_jsonable(expected), f"{name} {filters.describe()}")
            two_regions = Filters(regions=tuple(sorted(orders["region"].unique())[:2]))
            assert replica.precomputed(version, result_key(name, version, two_regions.cache_key(),
                                                           sorted(parameters.items()))) is None
    assert replica.precomputed(version, "no-such-key") is None
    replica.close()


def test_app_servers_build_the_snapshot_in_a_process_of_their_own(db_url: str, tmp_path: Path) -> None:
    from bi_app.config import Config
    from bi_app.context import replica_for
    from bi_app.service import precompute_default_views

    source = make_engine(db_url)
    load_demo_data(source, 300, 6, replace=True)
    version = version_of(source)
    source.dispose()
    config = Config.from_env({"BI_DATABASE_URL": db_url, "BI_DATA_DIR": str(tmp_path)})
    replica = replica_for(config, precompute_default_views, build_in_subprocess=True)
    assert replica.build_command[0][-1] == "snapshot"
    assert replica.engine_for(version) is None and replica.status(version) == "building"
    deadline = time.monotonic() + 90
    while replica.status(version) != "ready" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert replica.status(version) == "ready"
    with replica.engine_for(version).connect() as conn:
        assert analytics.kpis(conn, Filters())["orders"]["value"] == 300
    replica.close()


def test_snapshot_command(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from bi_app.cli import main

    source = make_engine(db_url)
    monkeypatch.setenv("BI_DATABASE_URL", db_url)
    monkeypatch.setenv("BI_DATA_DIR", str(tmp_path))
    empty = CliRunner().invoke(main, ["snapshot"])
    assert empty.exit_code == 1 and "never loaded by bi-app" in empty.output
    load_demo_data(source, 100, 7, replace=True)
    done = CliRunner().invoke(main, ["snapshot"])
    assert done.exit_code == 0, done.output
    assert f"Snapshot of data version {version_of(source)}" in done.output
    assert len(list(tmp_path.glob("columnar/*/*.duckdb"))) == 1

    import duckdb

    import data_layer.columnar as columnar

    def disk_full(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202 - what DuckDB raises on a full disk
        raise duckdb.IOException("IO Error: Could not write file: No space left on device")

    load_demo_data(source, 50, 8, replace=True)  # a new version, so a new snapshot is built
    monkeypatch.setattr(columnar, "build_snapshot", disk_full)
    failed = CliRunner().invoke(main, ["snapshot"])
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    [line] = failed.output.strip().splitlines()
    assert line.startswith(f"Error: the snapshot of data version {version_of(source)} was not built: IO Error: "
                           "Could not write file: No space left on device")
    monkeypatch.setenv("BI_COLUMNAR_MEMORY", "lots")
    bad_setting = CliRunner().invoke(main, ["snapshot"])
    assert bad_setting.output.strip() == "Error: BI_COLUMNAR_MEMORY must be a size such as 500MB or 2GB, got 'lots'"
    source.dispose()


def test_a_failed_build_is_retried_later_logged_once_and_shown_in_healthz(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        app, client) -> None:  # noqa: ANN001
    import sys

    import data_layer.columnar as columnar
    from bi_app.context import REPLICAS_KEY

    load_demo_data(engine, 50, 8, replace=True)
    version = version_of(engine)
    fails = ([sys.executable, "-c", "import sys; sys.exit('Error: no space left on device')"], {})
    replica = ColumnarReplica(engine, tmp_path, build_command=fails)

    def wait_while_building() -> None:  # the build runs in a thread; its end, not a time, is awaited
        for thread in [t for t in threading.enumerate() if t.name.startswith("columnar-")]:
            thread.join()

    assert replica.engine_for(version) is None
    wait_while_building()
    assert replica.status(version) == "failed"
    assert replica.failure(version) == "Error: no space left on device"
    assert replica.engine_for(version) is None and replica.status(version) == "failed", "no retry yet"
    monkeypatch.setattr(columnar, "RETRY_AFTER_S", 0)
    replica.engine_for(version)  # a retry that fails the same way
    wait_while_building()
    warnings = [r for r in caplog.records if "not built" in r.getMessage() and r.levelname == "WARNING"]
    assert len(warnings) == 1 and "no space left on device" in warnings[0].getMessage()

    # /healthz says so (the app's own replica for its database, set to this one).
    monkeypatch.setattr(columnar, "RETRY_AFTER_S", 3600)
    config = app.server.config["BI_CONFIG"]
    monkeypatch.setitem(app.server.config, "BI_CONFIG", replace(config, database_url=engine.url.render_as_string(
        hide_password=False), embedded=False, columnar=True))
    monkeypatch.setattr(app.server.config[REPLICAS_KEY], "made", {engine.url.render_as_string(hide_password=False): replica})
    health = client.get("/healthz").get_json()
    assert health["columnar"] == "failed" and health["columnar_error"] == "Error: no space left on device"

    monkeypatch.setattr(columnar, "RETRY_AFTER_S", 0)
    replica.build_command = None
    replica.engine_for(version)
    wait_while_building()
    assert replica.status(version) == "ready" and replica.failure(version) is None
    replica.close()
