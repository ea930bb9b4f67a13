"""Loading on real SQLite and PostgreSQL: counts, quality, versions, all-or-nothing."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import Engine, func, inspect, select

from data_layer.bootstrap import load_demo_data
from data_layer.columnar import LoadSummary
from data_layer.demo_data import generate_orders, generate_orders_frame
from data_layer.engine import make_engine
from data_layer.loader import LoadError, load_orders
from data_layer.info import database_info
from data_layer.meta import data_version, read_meta, scan_stored_lines
from data_layer.schema import SEED_COLUMNS, SALES_TABLE, sales
from data_layer.summaries import DIMENSIONS, daily, rebuild_summaries


def stored(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(select(sales).order_by(sales.c.order_id), conn)


def current_version(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return data_version(conn)


def test_replace_load_stores_every_row_exactly(engine: Engine) -> None:
    result = load_demo_data(engine, 2000, 42, replace=True)
    assert (result.rows_in, result.rows_stored) == (2000, 2000)
    assert result.quality.ok, result.quality.failures
    expected = generate_orders_frame(2000, 42)
    got = stored(engine)
    assert list(got["order_id"]) == list(expected["order_id"])
    for column in ("total_amount", "subtotal", "unit_price", "discount_amount", "shipping_cost"):
        assert ((got[column] - expected[column]).abs() < 0.001).all(), column
    assert (pd.to_datetime(got["order_date"]) == pd.to_datetime(expected["order_date"])).all()
    assert (got["customer_segment"] == expected["customer_segment"]).all()


def test_schema_has_the_seed_columns_and_indexes_and_an_order_line_key(engine: Engine) -> None:
    load_demo_data(engine, 100, 1, replace=True)
    inspector = inspect(engine)
    assert inspector.get_pk_constraint(SALES_TABLE)["constrained_columns"] == ["order_id", "line_number"]
    indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes(SALES_TABLE)}
    assert indexes == {
        "idx_customer_id": ["customer_id"],
        "idx_order_date": ["order_date"],
        "idx_region": ["region"],
        "idx_segment": ["customer_segment"],
    }
    columns = [c["name"] for c in inspector.get_columns(SALES_TABLE)]
    assert columns[:20] == list(SEED_COLUMNS) and columns[20:] == ["line_number", "line_type", "refunded_amount"]


def test_every_load_changes_the_data_version(engine: Engine) -> None:
    first = load_demo_data(engine, 300, 1, replace=True)
    assert current_version(engine) == first.data_version
    appended = load_demo_data(engine, 200, 2, replace=False)
    assert appended.data_version != first.data_version
    assert appended.rows_stored == 500
    assert current_version(engine) == appended.data_version
    replaced = load_demo_data(engine, 100, 3, replace=True)
    assert replaced.rows_stored == 100
    assert len({first.data_version, appended.data_version, replaced.data_version}) == 3
    info = database_info(engine)
    assert info["tables"]["advanced_sales_data"] == 100
    assert info["data_version"] == replaced.data_version


def test_a_failing_row_rolls_back_the_whole_load(engine: Engine) -> None:
    before = load_demo_data(engine, 500, 1, replace=True)
    good = next(generate_orders(100, 9, first_order_number=10_000))
    duplicate = next(generate_orders(1, 9, first_order_number=10_050))  # same id as a row above
    for mode in ("replace", "append"):
        with pytest.raises(Exception):
            load_orders(engine, iter([good, duplicate]), mode=mode)
        assert len(stored(engine)) == 500, mode
        assert current_version(engine) == before.data_version


def test_rows_failing_the_quality_checks_roll_back(engine: Engine) -> None:
    before = load_demo_data(engine, 200, 1, replace=True)
    chunk = next(generate_orders(50, 4, first_order_number=5000)).to_pandas()
    chunk.loc[0, "total_amount"] += 10  # total no longer = subtotal - discount + shipping
    with pytest.raises(LoadError, match="total = subtotal - discount \\+ shipping: 1 rows"):
        load_orders(engine, iter([pa.Table.from_pandas(chunk, preserve_index=False)]), mode="replace")
    assert len(stored(engine)) == 200
    assert current_version(engine) == before.data_version


#: Amounts at a half cent as decimal text; as binary floats 1.005 and 2.675 lie just below the half.
HALF_CENTS = [0.125, 1.005, 2.675, -0.125, -2.675, 10.005]


def test_amounts_at_half_a_cent_are_stored_rounded_as_written_half_away_from_zero(engine: Engine) -> None:
    """The float a file's 1.005 becomes is stored as 1.01, as the decimal text rounds (PostgreSQL's binary COPY
    and SQLite alike): the expected cents come from the decimal text with Python's decimal module."""
    chunk = next(generate_orders(len(HALF_CENTS), 5, first_order_number=7000)).to_pandas()
    signs = [1 if amount > 0 else -1 for amount in HALF_CENTS]
    chunk["quantity"] = signs
    chunk["unit_price"] = [abs(amount) for amount in HALF_CENTS]
    for column in ("subtotal", "total_amount"):
        chunk[column] = HALF_CENTS
    chunk["discount_amount"] = chunk["shipping_cost"] = chunk["discount_rate"] = 0.0
    load_orders(engine, iter([pa.Table.from_pandas(chunk, preserve_index=False)]), mode="replace")
    got = stored(engine)
    expected = [float(Decimal(repr(amount)).quantize(Decimal("0.01"), ROUND_HALF_UP)) for amount in HALF_CENTS]
    if engine.dialect.name == "postgresql":  # SQLite keeps the float as it came (its NUMERIC has no scale)
        assert list(got["total_amount"]) == expected
        assert list(got["subtotal"]) == expected
    assert list(got["unit_price"]) == [abs(amount) for amount in HALF_CENTS]  # six decimals: nothing to round


def test_a_value_beyond_its_column_is_a_load_error_and_nothing_is_written(postgres_schema_url: str) -> None:
    engine = make_engine(postgres_schema_url)  # SQLite's INTEGER holds it
    before = load_demo_data(engine, 100, 1, replace=True)
    chunk = next(generate_orders(10, 6, first_order_number=8000)).to_pandas()
    chunk["quantity"] = chunk["quantity"].astype("int64")
    chunk.loc[3, "quantity"] = 2**40  # beyond the INTEGER column
    with pytest.raises(LoadError, match="the quantity values do not fit the database's column"):
        load_orders(engine, iter([pa.Table.from_pandas(chunk, preserve_index=False)]), mode="replace")
    assert len(stored(engine)) == 100
    assert current_version(engine) == before.data_version
    engine.dispose()


def test_a_column_type_without_a_binary_twin_is_copied_as_text(postgres_schema_url: str) -> None:
    """An orders table made by another tool with a NUMERIC of no fixed scale (no Arrow decimal matches it)
    still loads, every amount as written."""
    engine = make_engine(postgres_schema_url)
    load_demo_data(engine, 10, 1, replace=True)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {SALES_TABLE} ALTER COLUMN unit_price TYPE NUMERIC")
    chunks = list(generate_orders(500, 8, chunk_rows=200))
    expected = pd.concat([chunk.to_pandas() for chunk in chunks]).sort_values("order_id")
    load_orders(engine, iter(chunks), mode="replace")
    got = stored(engine)
    assert got["unit_price"].map(lambda price: len(repr(price).partition(".")[2])).max() > 1  # cents at least
    assert list(got["unit_price"]) == list(expected["unit_price"])
    assert list(got["total_amount"]) == list(expected["total_amount"])
    engine.dispose()


def test_progress_is_reported_per_chunk(engine: Engine) -> None:
    seen: list[int] = []
    load_orders(engine, generate_orders(2500, 1, chunk_rows=1000), on_progress=seen.append)
    assert seen == [1000, 1000, 500]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sales)).scalar_one() == 2500


def summary_state(engine: Engine) -> tuple[pd.DataFrame, dict[str, str]]:
    """``bi_daily`` in a fixed order, and the metadata that stamps it."""
    with engine.connect() as conn:
        rows = pd.read_sql(select(daily), conn)
        meta = read_meta(conn)
    rows["order_date"] = pd.to_datetime(rows["order_date"])
    rows = rows.sort_values(list(DIMENSIONS)).reset_index(drop=True)
    return rows, {key: meta.get(key) for key in ("summary_version", "dimension_values", "multi_line_orders")}


@pytest.mark.parametrize("lines_per_order", [1, 3])
def test_a_replace_load_writes_the_summary_a_rebuild_from_the_stored_lines_makes(
        engine: Engine, lines_per_order: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replace load summarises its lines in DuckDB; a rebuild aggregates the stored table in the database."""
    frame = pd.concat([chunk.to_pandas() for chunk in generate_orders(3000, 8)], ignore_index=True)
    frame.loc[::7, "customer_id"] = None  # guests
    frame["customer_segment"] = "Unknown"  # a field the shop does not have
    if lines_per_order > 1:
        order = frame.index // lines_per_order
        frame["order_id"] = frame.groupby(order)["order_id"].transform("first")
        frame["line_number"] = frame.groupby(order).cumcount() + 1
        for name in ("order_date", "customer_id"):
            frame[name] = frame.groupby(order)[name].transform("first")
    for kind, step in (("return", 11), ("adjustment", 13)):  # the ledger's distinctions at work
        rows = frame.index[::step]
        for name in ("quantity", "subtotal", "discount_amount", "shipping_cost", "total_amount"):
            frame.loc[rows, name] = -frame.loc[rows, name]
        frame.loc[rows, ["line_type", "refunded_amount"]] = [kind, 0]
    assert (frame["refunded_amount"] > 0).any()
    # Shuffled into chunks, so a day's product shows up in several chunks; a small load is summarised
    # by the database after it, unless it is as long as this.
    monkeypatch.setattr(LoadSummary, "MIN_LINES", 1000)
    frame = frame.sample(frac=1, random_state=3)
    frame.loc[frame.index[:-3], "satisfaction_rating"] = None  # rated by three customers
    lines = pa.Table.from_pandas(frame, preserve_index=False)
    result = load_orders(engine, (lines.slice(start, 400) for start in range(0, len(frame), 400)), mode="replace")

    loaded_rows, loaded_meta = summary_state(engine)
    assert loaded_meta["summary_version"] == result.data_version
    # Orders of several lines leave bi_daily empty: their filter values are listed after the load.
    assert result.summary_with_load == (lines_per_order == 1)
    with engine.connect() as conn:
        assert read_meta(conn)["absent_fields"] == ",".join(scan_stored_lines(conn, ledger=True).absent_fields)
        assert read_meta(conn)["absent_fields"] == "customer_segment"
    assert len(loaded_rows) == (0 if lines_per_order > 1 else frame.groupby(list(DIMENSIONS)).ngroups)
    rebuild_summaries(engine)
    rebuilt_rows, rebuilt_meta = summary_state(engine)
    assert not load_orders(engine, iter([lines.slice(0, 999)]), mode="replace").summary_with_load  # a small load
    assert loaded_meta == rebuilt_meta
    pd.testing.assert_frame_equal(loaded_rows, rebuilt_rows, check_dtype=False, rtol=1e-9)


@pytest.mark.parametrize("memory_limit", ["2MB", "20MB"])
def test_a_summary_duckdb_cannot_build_is_rebuilt_after_the_load(
        engine: Engine, memory_limit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Short of memory while copying the lines or while summarising them, the load still succeeds."""
    monkeypatch.setattr(LoadSummary, "MIN_LINES", 1000)
    monkeypatch.setattr(LoadSummary, "MEMORY_LIMIT", memory_limit)
    result = load_orders(engine, generate_orders(20_000, 4, chunk_rows=2000), mode="replace")
    assert result.rows_stored == 20_000 and not result.summary_with_load
    loaded_rows, loaded_meta = summary_state(engine)
    assert loaded_meta["summary_version"] == result.data_version
    rebuild_summaries(engine)
    rebuilt_rows, rebuilt_meta = summary_state(engine)
    assert len(loaded_rows) and loaded_meta == rebuilt_meta
    pd.testing.assert_frame_equal(loaded_rows, rebuilt_rows, check_dtype=False, rtol=1e-9)
