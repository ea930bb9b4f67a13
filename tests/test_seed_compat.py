"""A database made by the seed document's own pipeline is readable as is."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, inspect, text

from data_layer.bootstrap import load_demo_data
from data_layer.demo_data import generate_orders_frame
from data_layer.filters import Filters
from data_layer.info import database_info
from data_layer.quality import quality_report
from data_layer.schema import LEDGER_COLUMNS, SEED_COLUMNS
from bi_app.analytics import kpis

# The seed's DDL, verbatim.
SEED_DDL = """
CREATE TABLE advanced_sales_data (
    order_id VARCHAR(20) PRIMARY KEY,
    customer_id VARCHAR(20) NOT NULL,
    order_date DATE NOT NULL,
    category VARCHAR(50) NOT NULL,
    product VARCHAR(50) NOT NULL,
    quantity INTEGER NOT NULL,
    unit_price DECIMAL(10,2) NOT NULL,
    subtotal DECIMAL(10,2) NOT NULL,
    discount_rate DECIMAL(5,4) DEFAULT 0,
    discount_amount DECIMAL(10,2) DEFAULT 0,
    shipping_cost DECIMAL(10,2) DEFAULT 0,
    total_amount DECIMAL(10,2) NOT NULL,
    region VARCHAR(20) NOT NULL,
    customer_segment VARCHAR(20) NOT NULL,
    satisfaction_rating DECIMAL(2,1) NOT NULL,
    day_of_week VARCHAR(10),
    month INTEGER,
    quarter VARCHAR(5),
    is_weekend INTEGER DEFAULT 0,
    is_holiday_season INTEGER DEFAULT 0
)
"""
SEED_INDEXES = [
    "CREATE INDEX idx_customer_id ON advanced_sales_data(customer_id)",
    "CREATE INDEX idx_order_date ON advanced_sales_data(order_date)",
    "CREATE INDEX idx_region ON advanced_sales_data(region)",
    "CREATE INDEX idx_segment ON advanced_sales_data(customer_segment)",
]


def seed_frame() -> pd.DataFrame:
    """Orders as the seed's generator holds them: order_date as pandas datetimes."""
    frame = generate_orders_frame(1000, seed=11)[list(SEED_COLUMNS)]  # the seed's 20 columns
    frame["order_date"] = pd.to_datetime(frame["order_date"])
    return frame


def make_seed_table(plain_engine: Engine, frame: pd.DataFrame, how: str) -> None:
    """The orders table as the seed's pipeline makes it: its DDL, or pandas' to_sql alone."""
    with plain_engine.begin() as conn:
        if plain_engine.dialect.name == "postgresql":  # its statistics published as it commits, not up to 10 s later
            conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        if how == "seed-ddl":
            conn.execute(text(SEED_DDL))
            for statement in SEED_INDEXES:
                conn.execute(text(statement))
            frame.to_sql("advanced_sales_data", conn, if_exists="append", index=False, method="multi")
        else:  # the seed's upload_to_database: no key, no index, pandas' own column types
            frame.to_sql("advanced_sales_data", conn, if_exists="replace", index=False, method="multi")


@pytest.mark.parametrize("how", ["to_sql-replace", "seed-ddl"])
def test_seed_made_table_is_readable(plain_engine: Engine, engine: Engine, how: str) -> None:
    frame = seed_frame()
    make_seed_table(plain_engine, frame, how)

    in_march = Filters(start=date(2024, 3, 1), end=date(2024, 3, 31))
    march = frame[(frame["order_date"] >= "2024-03-01") & (frame["order_date"] <= "2024-03-31")]
    with engine.connect() as conn:
        everything = kpis(conn, Filters())
        march_kpis = kpis(conn, in_march)
        report = quality_report(conn, expected_rows=len(frame))
    assert everything["revenue"]["value"] == pytest.approx(round(frame["total_amount"].sum(), 2), abs=0.005)
    assert everything["customers"]["value"] == frame["customer_id"].nunique()
    assert march_kpis["orders"]["value"] == len(march) > 0
    assert march_kpis["revenue"]["value"] == pytest.approx(round(march["total_amount"].sum(), 2), abs=0.005)
    assert report.ok, report.failures
    assert report.min_date == frame["order_date"].min().date()
    assert report.max_date == frame["order_date"].max().date()

    info = database_info(engine)
    assert info["tables"]["advanced_sales_data"] == 1000
    assert info["tables"]["bi_metadata"] is None
    assert info["data_version"] is None


@pytest.mark.parametrize("how", ["to_sql-replace", "seed-ddl"])
def test_a_load_upgrades_a_seed_made_table_to_order_lines(plain_engine: Engine, engine: Engine, how: str) -> None:
    make_seed_table(plain_engine, seed_frame(), how)
    load_demo_data(engine, 300, 12, replace=False)  # appends after the stored orders

    inspector = inspect(engine)
    assert [c["name"] for c in inspector.get_columns("advanced_sales_data")][20:] == ["line_number", *LEDGER_COLUMNS]
    assert inspector.get_pk_constraint("advanced_sales_data")["constrained_columns"] == ["order_id", "line_number"]
    with engine.connect() as conn:
        lines = conn.execute(text("SELECT line_number, count(*) FROM advanced_sales_data GROUP BY 1")).all()
        assert lines == [(1, 1300)]
        assert kpis(conn, Filters())["orders"]["value"] == 1300


def orders_counted(engine: Engine, snapshot: Path) -> tuple[int, int]:
    """The orders KPI read from the database, and from a columnar snapshot of it made at ``snapshot``."""
    from data_layer.columnar import ColumnarReplica, build_snapshot

    with engine.connect() as conn:
        from_database = kpis(conn, Filters())["orders"]["value"]
    build_snapshot(engine, snapshot)
    with ColumnarReplica(engine, snapshot.parent)._open(snapshot).connect() as conn:
        return from_database, kpis(conn, Filters())["orders"]["value"]


def test_a_table_of_other_tools_with_orders_of_several_rows_is_numbered_and_takes_new_orders(
        plain_engine: Engine, engine: Engine, tmp_path: Path) -> None:
    """pandas' to_sql of line-level data: an order in several rows (no key to stop it). The upgrade numbers
    each order's rows from 1 in their stored order; a load of new orders then appends (it failed on the key,
    reported as orders already stored)."""
    frame = seed_frame()
    several = frame.iloc[:30].copy()
    several["order_id"] = [f"MULTI-{i // 3}" for i in range(30)]  # ten orders of three rows each
    frame = pd.concat([several, frame.iloc[30:]], ignore_index=True)
    make_seed_table(plain_engine, frame, "to_sql-replace")
    orders = frame["order_id"].nunique()  # 980: an order of three rows is one order
    assert orders_counted(engine, tmp_path / "before.duckdb") == (orders, orders)  # read as it is
    load_demo_data(engine, 50, 12, replace=False)
    assert orders_counted(engine, tmp_path / "after.duckdb") == (orders + 50, orders + 50)
    with engine.connect() as conn:
        stored = pd.read_sql(text("SELECT order_id, line_number, total_amount FROM advanced_sales_data"), conn)
    assert len(stored) == len(frame) + 50
    multi = stored[stored["order_id"].str.startswith("MULTI-")].sort_values(["order_id", "line_number"])
    assert multi.groupby("order_id")["line_number"].apply(list).tolist() == [[1, 2, 3]] * 10
    expected = several.groupby("order_id")["total_amount"].sum().round(2).sort_index()
    assert multi.groupby("order_id")["total_amount"].sum().round(2).sort_index().tolist() == expected.tolist()


def test_a_pandas_table_of_ids_in_digits_takes_ids_with_letters(plain_engine: Engine, engine: Engine,
                                                                 tmp_path: Path) -> None:
    """pandas writes ids made of digits as integers (BIGINT on PostgreSQL): the first import into the
    table keeps them as text, says what it changed, and takes ids such as 'NEW-1'."""
    from bi_app.importing import import_file

    frame = seed_frame()
    frame["order_id"] = range(1, len(frame) + 1)
    frame["customer_id"] = frame["customer_id"].str.extract(r"(\d+)$", expand=False).astype(int)
    frame["notes"] = [f"note {i}" for i in range(len(frame))]  # a column of the other tool's own
    with plain_engine.begin() as conn:  # pandas' default: its index as a column named "index"
        frame.to_sql("advanced_sales_data", conn, if_exists="replace", method="multi")
    path = tmp_path / "more.csv"
    path.write_text("Order,Date,Product,Qty,Price,Customer\nNEW-1,2024-03-01,Lamp,2,10.00,C-77\n")
    printed: list[str] = []
    outcome = import_file(engine, path, {}, mode="append", skip_invalid=False, dry_run=False, report_dir=tmp_path,
                          echo=printed.append)
    assert outcome.written == 1, printed
    [upgraded] = [line for line in printed if line.startswith("The orders table was made by another tool")]
    assert "line_number" in upgraded and f"columns added ({', '.join(LEDGER_COLUMNS)}:" in upgraded
    assert ("ids with letters (order_id, customer_id)" if engine.dialect.name == "postgresql"
            else "ids kept as text (order_id, customer_id)") in upgraded, upgraded
    with engine.connect() as conn:  # the other tool's columns are kept, and their values
        kept = pd.read_sql(text('SELECT "index", notes FROM advanced_sales_data WHERE notes IS NOT NULL'), conn)
    assert sorted(kept["notes"]) == sorted(frame["notes"]) and sorted(kept["index"]) == list(range(len(frame)))
    with engine.connect() as conn:
        got = kpis(conn, Filters())
    assert got["revenue"]["value"] == pytest.approx(round(frame["total_amount"].sum() + 20.0, 2), abs=0.005)
    assert (got["orders"]["value"], got["customers"]["value"]) == (len(frame) + 1, frame["customer_id"].nunique() + 1)


def test_a_table_of_the_line_schema_is_read_as_is_then_upgraded_to_the_ledger(plain_engine: Engine, engine: Engine,
                                                                            tmp_path) -> None:  # noqa: ANN001
    """A table loaded by the previous version (line numbers, 20-character regions, no ledger columns):
    read as sale lines, then widened and given the ledger columns by the next import, keeping its rows."""
    from bi_app.importing import import_file
    from data_layer.meta import write_meta

    frame = seed_frame()
    v2_ddl = (SEED_DDL.replace("order_id VARCHAR(20) PRIMARY KEY", "order_id VARCHAR(20) NOT NULL")
              .replace("customer_id VARCHAR(20) NOT NULL", "customer_id VARCHAR(20)")
              .replace("satisfaction_rating DECIMAL(2,1) NOT NULL", "satisfaction_rating DECIMAL(2,1)")
              .replace("is_holiday_season INTEGER DEFAULT 0\n)", "is_holiday_season INTEGER DEFAULT 0,\n"
                       "    line_number INTEGER NOT NULL DEFAULT 1,\n    PRIMARY KEY (order_id, line_number)\n)"))
    assert "PRIMARY KEY (order_id, line_number)" in v2_ddl
    with plain_engine.begin() as conn:
        conn.execute(text(v2_ddl))
        frame.to_sql("advanced_sales_data", conn, if_exists="append", index=False, method="multi")
        conn.execute(text("CREATE TABLE bi_metadata (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)"))
        write_meta(conn, {"data_version": "old", "schema_version": "2", "multi_line_orders": "0"})
    with engine.connect() as conn:
        assert kpis(conn, Filters())["revenue"]["value"] == pytest.approx(round(frame["total_amount"].sum(), 2),
                                                                          abs=0.005)
    region = "Provence-Alpes-Côte d'Azur"  # 26 characters: more than the old VARCHAR(20)
    path = tmp_path / "more.csv"
    path.write_text(f"Order,Date,Product,Qty,Price,Region\nX1,2024-03-01,Lamp,1,10.00,{region}\n"
                    "X2,2024-03-02,Lamp,-1,10.00,North\nX3,2024-03-02,Teacup,12,0.065,North\n")  # DECIMAL(10,2) before
    printed: list[str] = []
    outcome = import_file(engine, path, {}, mode="append", skip_invalid=False, dry_run=False, report_dir=tmp_path,
                          echo=printed.append)
    assert outcome.written == 3
    upgraded = [line for line in printed if line.startswith("The orders table was made by another tool")]
    assert len(upgraded) == 1 and f"columns added ({', '.join(LEDGER_COLUMNS)}:" in upgraded[0], printed
    # SQLite enforces no VARCHAR length or NUMERIC scale: only PostgreSQL's columns are widened.
    assert ("columns widened" in upgraded[0]) == (engine.dialect.name == "postgresql"), upgraded
    if engine.dialect.name == "postgresql":
        assert all(name in upgraded[0].split("columns widened")[1] for name in ("region", "unit_price")), upgraded
    inspector = inspect(engine)
    columns = {c["name"]: c for c in inspector.get_columns("advanced_sales_data")}
    assert {"line_type", "refunded_amount"} <= set(columns)
    with engine.connect() as conn:
        got = kpis(conn, Filters())
        assert conn.execute(text("SELECT count(*) FROM advanced_sales_data WHERE line_type = 'sale'")).scalar_one() \
            == len(frame) + 2
        assert float(conn.execute(text("SELECT unit_price FROM advanced_sales_data WHERE order_id = 'X3'")).scalar_one()) \
            == 0.065
        assert kpis(conn, Filters(regions=(region,)))["revenue"]["value"] == 10.0
    assert got["revenue"]["value"] == pytest.approx(round(frame["total_amount"].sum() + 0.78, 2), abs=0.005)
    assert got["gross_sales"]["value"] == pytest.approx(round(frame["total_amount"].sum() + 10.78, 2), abs=0.005)
    assert got["returns"]["value"] == pytest.approx(10.0)
    assert got["orders"]["value"] == len(frame) + 2
    printed.clear()  # the next import finds the table upgraded
    again = tmp_path / "again.csv"
    again.write_text("Order,Date,Product,Qty,Price,Region\nX4,2024-03-03,Lamp,1,10.00,North\n")
    import_file(engine, again, {}, mode="append", skip_invalid=False, dry_run=False, report_dir=tmp_path,
                echo=printed.append)
    assert not any(line.startswith("The orders table was made") for line in printed), printed


def test_rows_other_tools_add_to_a_table_we_never_loaded_reach_the_kpis(plain_engine: Engine, db_url: str, client,  # noqa: ANN001
                                                                         point_app_at, monkeypatch) -> None:  # noqa: ANN001
    """A table made and then written by the seed's pipeline alone: its statistics (PostgreSQL) or its file's
    size and time (SQLite) give it a data version, so cached KPIs follow a row inserted with plain SQL."""
    import data_layer.meta as meta

    monkeypatch.setattr(meta, "FRESHNESS_S", 0.0)  # look at every request (the app looks every 5 s)
    frame = seed_frame()
    make_seed_table(plain_engine, frame, "to_sql-replace")
    point_app_at(db_url)

    def kpis() -> tuple[float, int]:
        data = client.get("/api/v1/kpis").get_json()["data"]
        return data["revenue"]["value"], data["orders"]["value"]

    def healthz_version() -> str:
        return client.get("/healthz").get_json()["data_version"]

    assert kpis() == (pytest.approx(round(frame["total_amount"].sum(), 2), abs=0.005), len(frame))
    before = healthz_version()
    assert before.startswith("external+")
    flush = "SELECT pg_stat_force_next_flush();" if db_url.startswith("postgresql") else ""
    added = frame.iloc[[0]].assign(order_id="OUTSIDE-1", total_amount=123.45)
    with plain_engine.begin() as conn:
        if flush:
            conn.exec_driver_sql(flush)
        added.to_sql("advanced_sales_data", conn, if_exists="append", index=False)
    after = pd.concat([frame, added])
    assert kpis() == (pytest.approx(round(after["total_amount"].sum(), 2), abs=0.005), len(after))
    assert healthz_version() not in (before, None)


def test_a_table_of_timestamps_gives_its_days_to_the_grid_the_export_and_a_snapshot(
        plain_engine: Engine, engine: Engine, db_url: str, client, point_app_at, tmp_path: Path) -> None:  # noqa: ANN001
    """pandas' to_sql writes order_date as a timestamp (on SQLite, text: "2023-01-01 00:00:00.000000"): the
    grid's page, the orders CSV and a columnar snapshot read the days, before and after an import into it."""
    import csv
    import io

    from bi_app.importing import import_file
    from data_layer.columnar import build_snapshot
    from data_layer.queries import orders_page

    frame = seed_frame()
    make_seed_table(plain_engine, frame, "to_sql-replace")
    point_app_at(db_url)

    def exported() -> pd.DataFrame:
        answer = client.get("/export/orders.csv?period=all")
        assert answer.status_code == 200, answer.data[:300]
        return pd.DataFrame(list(csv.DictReader(io.StringIO(answer.data.decode("utf-8-sig")))))

    def check(days: pd.Series, snapshot: Path) -> None:
        rows = exported()
        assert sorted(rows["order_date"]) == sorted(days.dt.strftime("%Y-%m-%d"))
        with engine.connect() as conn:
            page, _total = orders_page(conn, Filters(), offset=0, limit=5, sort=[("order_date", False)])
        assert [row["order_date"] for row in page] == sorted(days.dt.strftime("%Y-%m-%d"))[:5]
        assert build_snapshot(engine, snapshot)

    check(frame["order_date"], tmp_path / "before.duckdb")
    path = tmp_path / "more.csv"
    path.write_text("Order,Date,Product,Qty,Price\nNEW-1,2024-12-30,Lamp,1,10.00\n")
    assert import_file(engine, path, {}, mode="append", skip_invalid=False, dry_run=False, report_dir=tmp_path,
                       echo=lambda _line: None).written == 1
    check(pd.concat([frame["order_date"], pd.Series(pd.to_datetime(["2024-12-30"]))]), tmp_path / "after.duckdb")


def test_a_table_another_tool_replaced_after_our_load_is_read_as_it_now_is(
        plain_engine: Engine, engine: Engine, db_url: str, client, point_app_at, monkeypatch) -> None:  # noqa: ANN001
    """Loaded by us, then replaced by pandas' to_sql (the seed's 20 columns, no ledger, an order in two rows):
    our metadata describes the table we left, so the columns and the order count come from the table."""
    import data_layer.meta as meta

    monkeypatch.setattr(meta, "FRESHNESS_S", 0.0)  # look at every request (the app looks every 5 s)
    load_demo_data(engine, 200, 3, replace=True)
    point_app_at(db_url)
    assert client.get("/api/v1/kpis").status_code == 200
    frame = seed_frame()
    frame.loc[1, "order_id"] = frame.loc[0, "order_id"]  # one order in two rows
    with plain_engine.begin() as conn:
        if db_url.startswith("postgresql"):  # its statistics published as it commits, not up to 10 s later
            conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        frame.to_sql("advanced_sales_data", conn, if_exists="replace", index=False)
    answer = client.get("/api/v1/kpis")
    assert answer.status_code == 200, answer.data[:300]
    data = answer.get_json()["data"]
    assert data["revenue"]["value"] == pytest.approx(round(frame["total_amount"].sum(), 2), abs=0.005)
    assert data["orders"]["value"] == frame["order_id"].nunique() == len(frame) - 1


def test_models_of_a_table_we_never_loaded_are_retrained_once_other_tools_added_a_tenth(
        plain_engine: Engine, db_url: str, client, point_app_at, monkeypatch) -> None:  # noqa: ANN001
    """No load of ours stamps such a table, so its models are never "of a load": other tools' rows (counted
    by PostgreSQL's statistics, or on SQLite as the file's rows) start a retraining past the share."""
    import bi_app.context as context
    import data_layer.meta as meta
    from bi_app.ml.models import RETRAIN_SHARE

    monkeypatch.setattr(meta, "FRESHNESS_S", 0.0)
    started: list[str] = []
    monkeypatch.setattr(context, "start_training", lambda config: started.append(config.database_url))
    frame = seed_frame()
    make_seed_table(plain_engine, frame, "to_sql-replace")
    flush = "SELECT pg_stat_force_next_flush()" if db_url.startswith("postgresql") else None
    point_app_at(db_url)
    trained = client.get("/api/v1/clusters").get_json()["data"]["model"]
    assert trained["trained_on_customers"] == frame["customer_id"].nunique()

    def append(rows: pd.DataFrame) -> None:
        with plain_engine.begin() as conn:
            if flush:
                conn.exec_driver_sql(flush)
            rows.to_sql("advanced_sales_data", conn, if_exists="append", index=False)

    share = int(len(frame) * RETRAIN_SHARE)
    append(frame.head(share - 1).assign(order_id=lambda f: "FEW-" + f["order_id"]))
    assert client.get("/api/v1/clusters").get_json()["data"]["model"] == trained and started == []
    append(frame.head(1).assign(order_id="ONE-MORE"))
    assert client.get("/api/v1/clusters").get_json()["data"]["model"] == trained and started == [db_url]
