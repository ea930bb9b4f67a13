"""Work stopped part-way writes nothing: a load stopped at each of its checkpoints on real SQLite and PostgreSQL,
the command line's ``--time-limit``, the Data page's time budget, and a client that closes its connection to a
real server while its import runs."""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from click.testing import CliRunner
from pandas.testing import assert_frame_equal
from sqlalchemy import Engine, inspect, select

from bi_app.busy import client_gone
from bi_app.cli import main
from bi_app.context import CONFIG_KEY
from data_layer import stopping
from data_layer.bootstrap import load_demo_data
from data_layer.demo_data import generate_orders
from data_layer.loader import load_orders
from data_layer.meta import data_version
from data_layer.schema import SALES_TABLE, sales
from data_layer.stopping import WorkStopped, checkpoint, stop_when
from tests.conftest import SecuredSite
from tests.support import send_and_leave
from tests.test_access import dependencies, import_request, sign_in, uploaded  # noqa: F401 - a fixture

CSV_HEADER = "order_id,order_date,product,total_amount\n"


class StopAt:
    """A stop test that counts the checkpoints it is asked at and gives a reason at the ``at``-th (never: None)."""

    def __init__(self, at: int | None = None) -> None:
        self.at, self.calls = at, 0

    def __call__(self) -> str | None:
        self.calls += 1
        return "told to stop" if self.at is not None and self.calls >= self.at else None


def stored(engine: Engine) -> tuple[pd.DataFrame, str | None, dict]:
    """The stored lines (read with pandas), the data version and the indexes."""
    with engine.connect() as conn:
        lines = pd.read_sql(select(sales).order_by(sales.c.order_id, sales.c.line_number), conn)
        version = data_version(conn)
    indexes = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes(SALES_TABLE)}
    return lines, version, indexes


def assert_unchanged(engine: Engine, before: tuple[pd.DataFrame, str | None, dict]) -> None:
    lines, version, indexes = stored(engine)
    assert_frame_equal(lines, before[0])
    assert (version, indexes) == before[1:]


def fake_clock(monkeypatch: pytest.MonkeyPatch, step: float = 1.0) -> None:
    """The stop tests' clock moves ``step`` seconds each time it is read (no waiting on the real one)."""
    now = [time.perf_counter()]

    def tick() -> float:
        now[0] += step
        return now[0]

    monkeypatch.setattr(stopping, "time", SimpleNamespace(perf_counter=tick))


def test_checkpoint_raises_only_when_the_test_gives_a_reason() -> None:
    checkpoint()  # no test: never stops
    with stop_when(lambda: None):
        checkpoint()
    with stop_when(lambda: "the client has gone"), pytest.raises(WorkStopped, match="^the client has gone$"):
        checkpoint()
    checkpoint()  # the block's test is gone with it


@pytest.mark.parametrize("mode", ["replace", "append", "upsert"])
def test_a_load_stopped_at_any_of_its_checkpoints_writes_nothing(engine: Engine, mode: str) -> None:
    """Checkpoints between the load's steps, and (SQLite) the progress handler inside its long statements."""
    def new_orders():  # noqa: ANN202
        return generate_orders(2_500, 7, first_order_number=10_000, chunk_rows=500)

    counting = StopAt()
    with stop_when(counting):
        load_orders(engine, new_orders(), mode=mode)
    checkpoints = counting.calls
    assert checkpoints >= 5 + 2, "one before each of the 5 chunks, and more after them"
    load_demo_data(engine, 500, 1, replace=True)
    before = stored(engine)
    for at in sorted({1, 3, checkpoints - 1, checkpoints}):
        with stop_when(StopAt(at)), pytest.raises(WorkStopped, match="told to stop"):
            load_orders(engine, new_orders(), mode=mode)
        assert_unchanged(engine, before)
    result = load_orders(engine, new_orders(), mode=mode)  # and then, unbounded, it loads
    assert result.rows_stored == 2_500 + (500 if mode != "replace" else 0)


def test_the_command_line_import_stops_at_its_time_limit_and_writes_nothing(
        engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_demo_data(engine, 300, 1, replace=True)
    before = stored(engine)
    path = tmp_path / "orders.csv"
    path.write_text(CSV_HEADER + "".join(f"N-{i},2024-03-{i % 28 + 1:02d},Mug {i % 40},{i % 90 + 1}.50\n"
                                         for i in range(5_000)))
    monkeypatch.setenv("BI_DATABASE_URL", db_url)
    monkeypatch.setenv("BI_DATA_DIR", str(tmp_path / "data"))
    fake_clock(monkeypatch)
    ran = CliRunner().invoke(main, ["import", str(path), "--no-train", "--time-limit", "3"])
    assert ran.exit_code == 1, ran.output
    assert "Error: the import was stopped, nothing was written: it ran past 3 seconds (--time-limit)" in ran.output
    assert "Traceback" not in ran.output
    assert_unchanged(engine, before)


def test_the_data_page_stops_an_import_past_the_request_budget_and_says_so(
        engine: Engine, db_url: str, app, point_app_at, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from bi_app.importing import Upload, upload_folder
    from data_layer.importer import ImportChoices, auto_mapping
    from pages.data import imported

    load_demo_data(engine, 300, 1, replace=True)
    before = stored(engine)
    point_app_at(db_url)
    monkeypatch.setitem(app.server.config, CONFIG_KEY, replace(app.server.config[CONFIG_KEY], work_time_limit_s=3))
    upload_id = uuid.uuid4().hex
    with app.server.test_request_context():
        folder = upload_folder(upload_id)
        folder.mkdir(parents=True)
        (folder / "big.csv").write_text(CSV_HEADER + "".join(f"P-{i},2024-04-{i % 28 + 1:02d},Lamp,{i % 50}.25\n"
                                                             for i in range(3_000)))
        mapping = auto_mapping(CSV_HEADER.strip().split(","))
        fake_clock(monkeypatch)
        shown = str(imported(Upload(upload_id, "big.csv"), mapping, mapping, ImportChoices(), mode="append",
                             skip_invalid=False))
    assert ("Nothing was written: the file could not be imported in time: it ran past 3 seconds, the most this "
            "server gives one task. Try a smaller file") in shown
    assert "Traceback" not in shown and "WorkStopped" not in shown
    assert_unchanged(engine, before)


def test_client_gone_sees_a_closed_connection_and_nothing_else() -> None:
    server, client = socket.socketpair()
    try:
        assert not client_gone(server)
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")  # a next request, pipelined: still there
        assert not client_gone(server)
        assert server.recv(100).startswith(b"GET")  # and it was left for the server to read
        client.shutdown(socket.SHUT_WR)
        assert client_gone(server)
    finally:
        server.close()
        client.close()
    server, client = socket.socketpair()
    client.close()
    try:
        assert client_gone(server)
    finally:
        server.close()


@pytest.mark.slow
def test_an_import_whose_client_has_gone_stops_on_the_server_and_writes_nothing(
        secured_site: SecuredSite, dependencies: list[dict]) -> None:  # noqa: F811 - the fixture imported above
    analyst = sign_in(secured_site, "anna")
    rows = "".join(f"GONE-{i},2024-05-{i % 28 + 1:02d},Gone {i % 300},{i % 70 + 1}.10\n" for i in range(50_000))
    upload = uploaded(analyst, secured_site, dependencies, CSV_HEADER + rows)
    before = secured_site.orders()
    logged = secured_site.log.read_text().count("Work stopped, nothing written")
    send_and_leave(analyst, f"{secured_site.base}/_dash-update-component", import_request(dependencies, upload,
                                                                                          "append"))
    deadline = time.monotonic() + 120
    while secured_site.log.read_text().count("Work stopped, nothing written") == logged:
        assert time.monotonic() < deadline, "the server never stopped the import"
        time.sleep(0.1)
    assert "the browser or program that asked for it has gone" in secured_site.log.read_text()
    assert_frame_equal(secured_site.orders(), before)
    assert analyst.get(f"{secured_site.base}/healthz", timeout=30).status_code == 200

