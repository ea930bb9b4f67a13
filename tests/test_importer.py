"""Importing messy files: each written for the test, with its expected written and rejected rows,
and the resulting KPIs checked against pandas on the rows that should have gone in."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import Workbook
from sqlalchemy import Engine

from bi_app.analytics import kpis
from bi_app.importing import import_file, parse_map_options
from data_layer.filters import Filters
from data_layer.importer import FileImportError, auto_mapping, read_table, validate
from data_layer.parsing import read_dates, read_numbers
from data_layer.loader import LoadError
from data_layer.meta import data_version

HEADER = "InvoiceNo,InvoiceDate,Description,Quantity,UnitPrice,CustomerID,Country"
GOOD = [  # (order, date, product, quantity, price, customer, country)
    ("1001", "2024-03-01", "Lamp, desk", 2, 15.50, "C1", "France"),
    ("1001", "2024-03-01", "Bulb", 4, 1.25, "C1", "France"),
    ("1002", "2024-03-02", "Chair", 1, 89.99, "C2", "Spain"),
    ("1003", "2024-03-05", "Desk", 1, 240.00, "", "Spain"),  # a guest
    ("1004", "2024-04-10", "Lamp, desk", 3, 15.50, "C1", "France"),
]


def good_rows() -> pd.DataFrame:
    return pd.DataFrame(GOOD, columns=["order", "date", "product", "quantity", "price", "customer", "country"])


def csv_text(rows: list[str], header: str = HEADER, newline: str = "\n") -> str:
    return newline.join([header, *rows]) + newline


def line(order: str, day: str, product: str, quantity: object, price: object, customer: str, country: str,
         sep: str = ",") -> str:
    product = f'"{product}"' if sep in product else product
    return sep.join([order, day, product, str(quantity), str(price), customer, country])


def good_lines(sep: str = ",", price=lambda p: f"{p:.2f}") -> list[str]:  # noqa: ANN001
    return [line(o, d, p, q, price(pr), c, r, sep) for o, d, p, q, pr, c, r in GOOD]


def expected_kpis(rows: pd.DataFrame) -> dict:
    """The KPIs by the finance definitions, from the file's rows: a line of negative amount (or of a
    "C" order) is a return; net revenue is every line's amount; orders and customers count
    orders with a sale line of non-zero value."""
    amount = rows["quantity"] * rows["price"]
    sale = (amount >= 0) & ~rows["order"].str.match(r"^C\d")
    counted = sale & (amount != 0)
    revenue = round(float(amount.sum()), 2)
    orders = rows.loc[counted, "order"].nunique()
    customers = rows.loc[counted & (rows["customer"] != ""), "customer"].nunique()
    return {"revenue": revenue, "gross_sales": round(float(amount[sale].sum()), 2),
            "returns": round(float(-amount[~sale].sum()), 2), "orders": orders, "customers": customers,
            "aov": round(revenue / orders, 2) if orders else None}


def run(engine: Engine, path: Path, *, mode: str = "append", skip_invalid: bool = False, dry_run: bool = False,
        overrides: dict[str, str] | None = None):  # noqa: ANN201
    messages: list[str] = []
    outcome = import_file(engine, path, overrides or {}, mode=mode, skip_invalid=skip_invalid, dry_run=dry_run,
                          report_dir=path.parent / "reports", echo=messages.append)
    return outcome, "\n".join(messages)


def assert_kpis(engine: Engine, rows: pd.DataFrame) -> None:
    expected = expected_kpis(rows)
    with engine.connect() as conn:
        got = kpis(conn, Filters())
    assert got["revenue"]["value"] == pytest.approx(expected["revenue"], abs=0.005)
    assert got["gross_sales"]["value"] == pytest.approx(expected["gross_sales"], abs=0.005)
    assert got["returns"]["value"] == pytest.approx(expected["returns"], abs=0.005)
    assert got["orders"]["value"] == expected["orders"]
    assert got["customers"]["value"] == expected["customers"]
    assert got["average_order_value"]["value"] == pytest.approx(expected["aov"], abs=0.005)


MESSY = {
    # name: (file contents as bytes, file suffix, rows in, written, rejected)
    "quoted-commas-and-several-lines": (csv_text(good_lines()).encode(), ".csv", 5, 5, 0),
    "bom-and-crlf": (b"\xef\xbb\xbf" + csv_text(good_lines(), newline="\r\n").encode(), ".csv", 5, 5, 0),
    "semicolons-decimal-commas": (
        csv_text(good_lines(";", lambda p: f"{p:.2f}".replace(".", ",")), header=HEADER.replace(",", ";")).encode(),
        ".csv", 5, 5, 0),
    "latin-1": (csv_text([*good_lines()[:4], line("1004", "2024-04-10", "Lampe caf\xe9", 3, "15.50", "C1",
                                                    "France")]).encode("latin-1"), ".csv", 5, 5, 0),
    "blank-lines-and-extra-columns": (
        csv_text([f"{row},note {i}" for i, row in enumerate(good_lines())], header=HEADER + ",Note")
        .replace("\n1002", "\n\n\n1002").encode(), ".csv", 5, 5, 0),
    "mixed-date-formats": (csv_text([line("1001", "01/03/2024", "Lamp, desk", 2, "15.50", "C1", "France"),
                                     *good_lines()[1:3], line("1003", "5/3/2024 14:05", "Desk", 1, "240.00", "",
                                                              "Spain"),
                                     line("1004", "2024-04-10T09:00:00", "Lamp, desk", 3, "15.50", "C1", "France"),
                                     line("1005", "31/12/2024", "Bulb", 1, "1.25", "C3", "Spain")]).encode(),
                           ".csv", 6, 6, 0),
    # An identical line is kept (a second sale of the same item); returns are kept and netted.
    "identical-lines-and-returns": (csv_text([*good_lines(), good_lines()[2], line("C1002", "2024-03-03", "Chair", -1,
                                              "89.99", "C2", "Spain"), line("1006", "2024-03-04", "Desk", -1,
                                                                            "240.00", "C2", "Spain")]).encode(),
                                    ".csv", 8, 8, 0),
}


@pytest.mark.parametrize("name", list(MESSY))
def test_messy_file_imports_with_the_expected_counts_and_kpis(engine: Engine, tmp_path: Path, name: str) -> None:
    content, suffix, rows_in, written, rejected = MESSY[name]
    path = tmp_path / f"{name}{suffix}"
    path.write_bytes(content)
    outcome, printed = run(engine, path)
    assert (outcome.rows_in, outcome.written, outcome.rejected) == (rows_in, written, rejected), printed
    assert f"{rows_in:,} rows in = {written:,} written + {rejected:,} rejected" in printed
    rows = good_rows()
    if name == "mixed-date-formats":
        rows = pd.concat([rows, pd.DataFrame([("1005", "", "Bulb", 1, 1.25, "C3", "Spain")], columns=rows.columns)])
    if name == "identical-lines-and-returns":
        rows = pd.concat([rows, rows.iloc[[2]], pd.DataFrame(
            [("C1002", "", "Chair", -1, 89.99, "C2", "Spain"), ("1006", "", "Desk", -1, 240.00, "C2", "Spain")],
            columns=rows.columns)])
    assert_kpis(engine, rows)


def test_mixed_dates_are_read_day_first_when_a_date_says_so() -> None:
    parsed = read_dates(pd.Series(["01/03/2024", "5/3/2024 14:05", "2024-04-10T09:00:00", "31/12/2024", "nope"]),
                        "Date").days
    assert [d.date().isoformat() if pd.notna(d) else None for d in parsed] == [
        "2024-03-01", "2024-03-05", "2024-04-10", "2024-12-31", None]
    us = read_dates(pd.Series(["03/01/2024", "12/25/2024"]), "Date").days
    assert [d.date().isoformat() for d in us] == ["2024-03-01", "2024-12-25"]


def test_numbers_as_shops_write_them() -> None:
    got = read_numbers(pd.Series(["$1,234.50", "(12.00)", "€ 7", "", "abc"]), "Price").numbers.tolist()
    assert got[:3] == [1234.5, -12.0, 7.0] and pd.isna(got[3]) and pd.isna(got[4])
    assert read_numbers(pd.Series(["15%", "15", "0.2"]), "Rate", percent=True).numbers.tolist() == [0.15, 0.15, 0.2]
    assert read_numbers(pd.Series(["1.234,50"]), "Price").numbers.tolist() == [1234.5]


def test_ids_keep_their_leading_zeros(engine: Engine, tmp_path: Path) -> None:
    """Cells are text: 007 and 7 are two orders, 00123 and 123 two customers."""
    path = tmp_path / "zeros.csv"
    rows = [("007", "2024-03-01", "Desk", 1, 10.0, "00123", "Spain"), ("7", "2024-03-02", "Desk", 2, 10.0, "123",
                                                                         "Spain")]
    path.write_text(csv_text([line(*row[:4], f"{row[4]:.2f}", *row[5:]) for row in rows]))
    assert run(engine, path)[0].written == 2
    with engine.connect() as conn:
        stored = sorted(conn.exec_driver_sql("SELECT order_id, customer_id FROM advanced_sales_data").all())
    assert stored == sorted((order, customer) for order, _, _, _, _, customer, _ in rows)
    assert_kpis(engine, pd.DataFrame(rows, columns=good_rows().columns))


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("value_with_a_line_break", [False, True])
def test_rejected_rows_name_their_line_in_the_file(tmp_path: Path, newline: str, value_with_a_line_break: bool
                                                   ) -> None:
    """Blank and whitespace-only lines, any line ending, and (read by the slower reader) a quoted
    value spanning two lines: each rejected row's line is where its text starts in the file."""
    rows = good_lines()
    rows[1] = line("1001", "not a date", "Bulb", 4, "1.25", "C1", "France")
    rows[4] = line("1004", "2024-04-10", "Lamp", "four", "15.50", "C1", "France")
    if value_with_a_line_break:
        rows[2] = rows[2].replace("Chair", '"Chair,' + newline + ' oak"')
    text = newline.join([HEADER, "", rows[0], "   ", rows[1], rows[2], "", "", rows[3], rows[4]]) + newline
    path = tmp_path / "lines.csv"
    path.write_bytes(text.encode())
    source = read_table(path)
    from data_layer.importer import validate

    rejected = validate(source, auto_mapping(source.columns)).rejected
    physical = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    expected = [next(i for i, text_line in enumerate(physical, start=1) if text_line == marker)
                for marker in (rows[1], rows[4])]
    assert [r.line for r in rejected] == expected
    assert len(source.frame) == 5 and source.frame.iloc[2, 2].startswith("Chair")


def test_identical_lines_are_kept_and_counted_or_dropped_on_request_naming_the_line_they_repeat(
        tmp_path: Path) -> None:
    from data_layer.importer import ImportChoices, validate

    rows = good_lines()
    near_copy = rows[2].replace("89.99", "89.98")  # same order and product, another price: not a copy
    path = tmp_path / "copies.csv"
    path.write_text(csv_text([*rows, rows[2], near_copy, rows[0]]))  # lines 2-6, then 7, 8, 9
    source = read_table(path)
    kept = validate(source, auto_mapping(source.columns))
    assert kept.rejected == [] and len(kept.lines) == 8 and kept.identical == 2
    assert "2 identical lines kept" in kept.summary()
    dropped = validate(source, auto_mapping(source.columns), ImportChoices(drop_identical=True))
    assert [(r.line, r.reason, r.blocking) for r in dropped.rejected] == [
        (7, "identical to line 4", False), (9, "identical to line 2", False)]
    assert len(dropped.lines) == 6


def test_identical_lines_are_the_rows_pandas_finds_equal_to_an_earlier_one(tmp_path: Path) -> None:
    """A file of few orders, products and amounts (many lines alike in some cells, some in all, blanks
    among them): the identical lines dropped on request are those pandas' duplicated() finds on the file's
    cells, each naming the first line it repeats."""
    import random

    from data_layer.importer import ImportChoices

    generator = random.Random(5)
    rows = [[f"O{generator.randint(1, 40)}", "2024-03-01", generator.choice(["Mug", "Pen", "Cap"]),
             str(generator.randint(1, 2)), generator.choice(["1.50", "2.00"]), generator.choice(["", "C1", "C2"]),
             generator.choice(["", "North"])] for _ in range(600)]
    for row in rows:
        row.append(f"{int(row[3]) * float(row[4]):.2f}")
    path = tmp_path / "alike.csv"
    pd.DataFrame(rows, columns=["Order", "Date", "Product", "Qty", "Price", "Customer", "Region", "Total"]).to_csv(
        path, index=False)
    cells = pd.read_csv(path, dtype=str, keep_default_na=False)
    repeats = cells.duplicated(keep="first")
    first_line = {i: cells.index[(cells == cells.iloc[i]).all(axis=1)][0] + 2 for i in cells.index[repeats]}
    source = read_table(path)
    dropped = validate(source, auto_mapping(source.columns), ImportChoices(drop_identical=True))
    assert 0 < repeats.sum() < len(cells)
    assert dropped.identical == repeats.sum()
    assert sorted((r.line, r.reason) for r in dropped.rejected) == sorted(
        (i + 2, f"identical to line {line}") for i, line in first_line.items())


@pytest.mark.parametrize("block", [1, 2, 5, 1 << 23])
def test_non_blank_lines_count_lines_as_pythons_csv_module_does(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import random

    from data_layer import importer

    monkeypatch.setattr(importer, "_BLOCK", block)  # a large file is looked at a block at a time: edges
    blank = "".join(map(chr, range(33)))
    pieces = ["a", "xy", " ", "\t", "\n", "\r", "\r\n", "\n\n", ","]
    generator = random.Random(11)
    for _ in range(500):
        text = "".join(generator.choice(pieces) for _ in range(generator.randint(0, 30)))
        reference = [number for number, text_line in enumerate(io.StringIO(text, newline=""), start=1)
                     if text_line.strip(blank)]
        assert importer.non_blank_lines(text.encode()).tolist() == reference, repr(text)


def test_gzip_and_xlsx_files(engine: Engine, tmp_path: Path) -> None:
    gz = tmp_path / "orders.csv.gz"
    gz.write_bytes(gzip.compress(csv_text(good_lines()[:3]).encode()))
    assert run(engine, gz)[0].written == 3
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER.split(","))
    for order, day, product, quantity, price, customer, country in GOOD[3:]:
        sheet.append([order, pd.Timestamp(day).to_pydatetime(), product, quantity, price, customer or None, country])
    xlsx = tmp_path / "more.xlsx"
    workbook.save(xlsx)
    assert run(engine, xlsx)[0].written == 2
    assert_kpis(engine, good_rows())


def test_an_invalid_row_rejects_the_whole_file_unless_skipped(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(csv_text([*good_lines(), line("1007", "not a date", "Desk", 1, "240", "C4", "Spain"),
                              line("1008", "2024-05-01", "Desk", "two", "240", "C4", "Spain"),
                              line("", "2024-05-01", "Desk", 1, "240", "C4", "Spain")]))
    with engine.connect() as conn:
        before = data_version(conn)
    outcome, printed = run(engine, path)
    assert outcome.failed and (outcome.written, outcome.rejected) == (0, 8)
    with engine.connect() as conn:
        assert data_version(conn) == before  # nothing written
    report = pd.read_csv(outcome.report)
    assert report.loc[report["kind"] == "decision", "reason"].str.startswith(("encoding", "decimal mark")).all()
    report = report[report["kind"] == "invalid"]
    assert report[["line", "column"]].values.tolist() == [[7, "InvoiceDate"], [8, "Quantity"], [9, "InvoiceNo"]]
    assert "unreadable date 'not a date'" in report["reason"].tolist()

    outcome, printed = run(engine, path, skip_invalid=True)
    assert (outcome.written, outcome.rejected, outcome.failed) == (5, 3, False)
    rejects = pd.read_csv(outcome.rejects, dtype=str)
    assert rejects["line"].tolist() == ["7", "8", "9"] and rejects["InvoiceDate"].iloc[0] == "not a date"
    assert_kpis(engine, good_rows())


def test_upsert_of_the_same_file_changes_nothing_and_of_a_changed_file_replaces_its_orders(
        engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(csv_text(good_lines()))
    run(engine, path)
    with engine.connect() as conn:
        version = data_version(conn)
    outcome, printed = run(engine, path, mode="upsert")
    assert "nothing changed" in printed and outcome.written == 0
    with engine.connect() as conn:
        assert data_version(conn) == version
    assert_kpis(engine, good_rows())

    # Order 1001 now has one line; 1009 is new; the other stored orders stay.
    changed = tmp_path / "changed.csv"
    changed.write_text(csv_text([line("1001", "2024-03-01", "Bulb", 10, "1.25", "C1", "France"),
                                 line("1009", "2024-06-01", "Chair", 1, "89.99", "C5", "Spain")]))
    outcome, _ = run(engine, changed, mode="upsert")
    assert outcome.written == 2
    rows = good_rows()
    rows = pd.concat([rows[rows["order"] != "1001"], pd.DataFrame(
        [("1001", "", "Bulb", 10, 1.25, "C1", "France"), ("1009", "", "Chair", 1, 89.99, "C5", "Spain")],
        columns=rows.columns)])
    assert_kpis(engine, rows)

    with pytest.raises(LoadError, match="already stored"):  # append of stored orders: refused, nothing written
        run(engine, path)
    assert_kpis(engine, rows)


def test_mapping_by_name_and_by_option(tmp_path: Path) -> None:
    assert auto_mapping(["InvoiceNo", "InvoiceDate", "UnitPrice", "CustomerID", "StockCode", "Description"]) == {
        "order_id": "InvoiceNo", "order_date": "InvoiceDate", "unit_price": "UnitPrice",
        "customer_id": "CustomerID", "product": "Description"}
    assert parse_map_options(["Ref=order_id", "When=order_date", "Note=none"], None) == (
        {"order_id": "Ref", "order_date": "When"}, {"Note"})
    with pytest.raises(FileImportError, match="unknown field"):
        parse_map_options(["Ref=orderid"], None)
    path = tmp_path / "plain.csv"
    path.write_text("Ref;When;What;Paid\n7;2024-01-02;Desk;10\n")
    table = read_table(path)
    assert table.delimiter == ";" and table.columns == ["Ref", "When", "What", "Paid"]


@pytest.mark.parametrize(("header", "sep"), [
    ("Bestellnummer;Bestelldatum;Artikel;Menge;Einzelpreis;Kundennummer;Land", ";"),
    ("Numéro de commande;Date;Désignation;Quantité;Prix unitaire;Client;Pays", ";"),
    ("Número de pedido\tFecha\tProducto\tCantidad\tPrecio unitario\tCliente\tPaís", "\t"),
])
def test_a_shop_exports_headers_in_german_french_or_spanish_map_without_help(engine: Engine, tmp_path: Path,
                                                                              header: str, sep: str) -> None:
    """Decimal commas, the shop's own language for its column names, accents and all: no mapping given."""
    path = tmp_path / "export.csv"
    path.write_text(csv_text(good_lines(sep, price=lambda p: f"{p:.2f}".replace(".", ",")), header=header),
                    encoding="utf-8")
    outcome, printed = run(engine, path)
    assert (outcome.written, outcome.rejected) == (5, 0), printed
    assert_kpis(engine, good_rows())


def test_a_specific_column_name_wins_over_a_general_one() -> None:
    """A German export with a unit price and a line price, a customer number and a customer's name."""
    mapping = auto_mapping(["Bestellnummer", "Datum", "Artikelnummer", "Artikelbezeichnung", "Menge", "Preis",
                            "Einzelpreis", "Kunde", "Kundennummer"])
    assert (mapping["unit_price"], mapping["customer_id"], mapping["product"]) == (
        "Einzelpreis", "Kundennummer", "Artikelbezeichnung")


def test_a_column_whose_name_misleads_is_left_out_with_none(engine: Engine, tmp_path: Path) -> None:
    """'Land' (freehold or leasehold) and 'Client' (the app it was bought in) match region and customer id
    by name: COLUMN=none leaves them out."""
    path = tmp_path / "tenure.csv"
    path.write_text("Order,Date,Product,Qty,Price,Land,Client\n1,2024-03-01,Lamp,1,10.00,Freehold,web\n"
                    "2,2024-03-02,Desk,1,20.00,Leasehold,ios\n")
    _outcome, printed = run(engine, path, dry_run=True)
    assert "region               <- Land" in printed and "customer_id          <- Client" in printed
    with pytest.raises(FileImportError, match="no column 'client' in the file"):  # names are matched exactly
        import_file(engine, path, {}, unused_columns={"client"}, mode="append", skip_invalid=False, dry_run=True,
                    report_dir=tmp_path, echo=lambda _line: None)
    overrides, unused = parse_map_options(["Land=none", "Client=none"], None)
    messages: list[str] = []
    outcome = import_file(engine, path, overrides, unused_columns=unused, mode="append", skip_invalid=False,
                          dry_run=False, report_dir=tmp_path, echo=messages.append)
    printed = "\n".join(messages)
    assert outcome.written == 2 and "<- Land" not in printed and "<- Client" not in printed, printed
    assert "not used: Land, Client" in printed, printed
    with engine.connect() as conn:
        got = kpis(conn, Filters())
    assert (got["revenue"]["value"], got["orders"]["value"], got["customers"]["value"]) == (30.0, 2, 0)


def test_cli_import_prints_the_mapping_and_the_counts(db_url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from bi_app.cli import main

    monkeypatch.setenv("BI_DATABASE_URL", db_url)
    monkeypatch.setenv("BI_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "shop.csv"
    path.write_text(csv_text(good_lines(), header=HEADER.replace("Description", "Article")))
    runner = CliRunner()
    missing = runner.invoke(main, ["import", str(path), "--no-train"])
    assert missing.exit_code == 1 and "no column for product" in missing.output
    done = runner.invoke(main, ["import", str(path), "--map", "Article=product", "--no-train"])
    assert done.exit_code == 0, done.output
    assert "product              <- Article  (as chosen)" in done.output
    assert "5 rows in = 5 written + 0 rejected" in done.output


def test_a_killed_import_leaves_the_previous_data_exactly_as_it_was(postgres_schema_url: str, tmp_path: Path) -> None:
    """`bi-app import --mode replace` killed (SIGKILL) while PostgreSQL is copying its rows."""
    import os
    import signal
    import subprocess
    import time

    from sqlalchemy import text

    from data_layer.bootstrap import load_demo_data
    from data_layer.demo_data import generate_orders_frame
    from data_layer.engine import make_engine
    from tests.support import BI_APP

    engine = make_engine(postgres_schema_url)
    load_demo_data(engine, 500, 1, replace=True)
    with engine.connect() as conn:
        before_version, before = data_version(conn), kpis(conn, Filters())
    big = tmp_path / "big.csv"
    generate_orders_frame(300_000, seed=2).to_csv(big, index=False)

    process = subprocess.Popen([BI_APP, "import", str(big), "--mode", "replace", "--no-train"],
                               env={**os.environ, "BI_DATABASE_URL": postgres_schema_url},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    copying = False
    deadline = time.monotonic() + 120
    with engine.connect() as watcher:
        while time.monotonic() < deadline and process.poll() is None:
            copying = watcher.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'COPY advanced_sales_data%'"
            )).scalar_one() > 0
            watcher.rollback()
            if copying:
                break
            time.sleep(0.02)
    assert copying, "the import never reached its COPY"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    with engine.connect() as conn:
        assert data_version(conn) == before_version
        assert kpis(conn, Filters()) == before
        assert conn.execute(text("SELECT count(*) FROM advanced_sales_data")).scalar_one() == 500
    engine.dispose()


def test_amounts_are_completed_from_one_another_and_must_add_up(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "amounts.csv"
    path.write_text(
        "Order,Date,Product,Qty,Price,Total,Discount,Shipping\n"
        "1,2024-01-01,Desk,2,100.00,180.00,,\n"        # total below quantity x price: a discount of 20
        "2,2024-01-01,Lamp,1,20.00,25.99,,\n"          # above: 5.99 of shipping
        "3,2024-01-02,Chair,1,50.00,45.00,5.00,\n"     # discount given: no shipping
        "4,2024-01-02,Bulb,3,2.00,10.00,1.00,2.00\n"   # 6 - 1 + 2 is not 10: rejected
    )
    overrides = {"order_id": "Order", "order_date": "Date", "product": "Product", "quantity": "Qty",
                 "unit_price": "Price", "total_amount": "Total", "discount_amount": "Discount",
                 "shipping_cost": "Shipping"}
    outcome, printed = run(engine, path, skip_invalid=True, overrides=overrides)
    assert (outcome.written, outcome.rejected) == (3, 1), printed
    assert "line 5, Total: amounts do not add up" in printed
    with engine.connect() as conn:
        stored = {row[0]: [float(v) for v in row[1:]] for row in conn.exec_driver_sql(
            "SELECT order_id, discount_amount, shipping_cost, total_amount, discount_rate FROM advanced_sales_data")}
    assert stored["1"] == [20.0, 0.0, 180.0, 0.1]
    assert stored["2"] == [0.0, 5.99, 25.99, 0.0]
    assert stored["3"] == [5.0, 0.0, 45.0, 0.1]


def test_two_upserts_in_one_process_reuse_the_staging_table_name(engine: Engine, tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(csv_text(good_lines()[:2]))
    second.write_text(csv_text(good_lines()[2:]))
    assert run(engine, first, mode="upsert")[0].written == 2
    assert run(engine, second, mode="upsert")[0].written == 3
    assert_kpis(engine, good_rows())


def test_fields_the_file_lacks_are_recorded_for_the_pages(engine: Engine, tmp_path: Path, client, point_app_at,
                                                          app) -> None:  # noqa: ANN001
    from data_layer.meta import absent_fields

    path = tmp_path / "plain.csv"
    path.write_text(csv_text(good_lines()))  # no satisfaction, segment or category columns
    run(engine, path)
    with engine.connect() as conn:
        assert absent_fields(conn) == ["satisfaction_rating", "customer_segment", "category"]
    point_app_at(engine.url.render_as_string(hide_password=False))
    from bi_app.shell import data_notice

    with app.server.test_request_context():
        notice = str(data_notice().children)
    assert "no satisfaction ratings; no customer segments; no product categories" in notice
    with engine.connect() as conn:
        assert kpis(conn, Filters())["average_satisfaction"]["value"] is None


def test_a_dry_run_append_says_when_the_file_holds_orders_already_stored(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(csv_text(good_lines()))
    first, _printed = run(engine, path)
    assert not first.failed and first.written == 5
    dry, printed = run(engine, path, dry_run=True)
    stored_orders = good_rows()["order"].nunique()
    assert dry.failed and dry.written == 0, printed
    first_orders = ", ".join(good_rows()["order"].astype(str).drop_duplicates().head(3))
    assert (f"{stored_orders} orders of the file are already stored ({first_orders}, ...), so an append would "
            "write nothing") in printed
    assert "5 rows in = 0 to write (the append is refused)" in printed and dry.refused
    with pytest.raises(LoadError, match=re.escape(f"{stored_orders} orders of the file are already stored "
                                                  f"({first_orders}, ...), so nothing was written")):
        run(engine, path)  # the dry run said what the import does
    new_orders = tmp_path / "new.csv"
    new_orders.write_text(csv_text([row.replace("100", "900", 1) for row in good_lines()]))
    dry, printed = run(engine, new_orders, dry_run=True)
    assert not dry.failed and "5 rows in = 5 to write + 0 rejected" in printed, printed


def test_lines_a_status_leaves_out_are_told_apart_from_invalid_ones(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "statuses.csv"
    statuses = ["paid", "paid", "pending", "paid", "pending"]  # pending: not a sale yet
    path.write_text(csv_text([f"{row},{status}" for row, status in zip(good_lines(), statuses)],
                             header=HEADER + ",Status"))
    outcome, printed = run(engine, path)
    assert (outcome.written, outcome.rejected) == (3, 2), printed
    assert "5 rows in = 3 written + 2 rejected (2 of them left out by rule, not invalid)" in printed


def _workbook_with_sheet_xml(path: Path, edit) -> Path:  # noqa: ANN001 - edit: str -> str
    """A three-line workbook of orders whose sheet XML ``edit`` rewrites (as a hostile or careless file would)."""
    import re
    import zipfile

    from openpyxl import Workbook

    plain = path.with_suffix(".plain.xlsx")
    book = Workbook()
    book.active.append(["order_id", "order_date", "product", "total_amount"])
    book.active.append(["A1", "2024-01-02", "Widget", 10.5])
    book.active.append(["A2", "2024-01-03", "Gadget", 3])
    book.save(plain)
    with zipfile.ZipFile(plain) as source:
        files = {name: source.read(name) for name in source.namelist()}
    sheet = files["xl/worksheets/sheet1.xml"].decode()
    files["xl/worksheets/sheet1.xml"] = edit(re.sub(r'<dimension ref="[^"]*"/>', "<dimension ref=\"A1:D3\"/>",
                                                   sheet)).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in files.items():
            target.writestr(name, data)
    return path


def test_a_workbook_declaring_a_huge_sheet_is_read_for_the_cells_it_holds(tmp_path: Path) -> None:
    path = _workbook_with_sheet_xml(tmp_path / "bomb.xlsx",
                                    lambda sheet: sheet.replace('ref="A1:D3"', 'ref="A1:XFD1048576"'))
    assert path.stat().st_size < 10_000
    table = read_table(path)
    assert list(table.frame["order_id"]) == ["A1", "A2"] and list(table.frame.columns) == [
        "order_id", "order_date", "product", "total_amount"]


def test_a_run_of_empty_rows_ends_a_sheets_data(tmp_path: Path) -> None:
    empty = "".join(f'<row r="{number}"/>' for number in range(4, 200_004))
    path = _workbook_with_sheet_xml(tmp_path / "empty.xlsx", lambda sheet: sheet.replace(
        "</sheetData>", empty + '<row r="200004"><c r="A200004" t="inlineStr"><is><t>late</t></is></c></row></sheetData>'))
    table = read_table(path)
    assert list(table.frame["order_id"]) == ["A1", "A2"]
    assert any(d.topic == "rows" and "1,000 empty rows" in d.reason for d in table.decisions)


def test_files_past_the_read_limits_are_refused_with_the_reason(tmp_path: Path) -> None:
    from data_layer.importer import ReadLimits

    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(10_000)) + "\n" + ",".join("1" * 10_000) + "\n")
    with pytest.raises(FileImportError, match=r"wide.csv has 10,000 columns: an import reads at most 1,000"):
        read_table(wide)
    long = tmp_path / "long.csv"
    long.write_text("order_id,order_date,product,total_amount\n" + "".join(
        f"O{i},2024-01-01,Widget,1.00\n" for i in range(50)))
    with pytest.raises(FileImportError, match=r"more than 20 rows, the most an import reads"):
        read_table(long, limits=ReadLimits(max_rows=20))
    assert len(read_table(long, limits=ReadLimits(max_rows=50)).frame) == 50
    sheet = _workbook_with_sheet_xml(tmp_path / "wide.xlsx", lambda xml: xml.replace(  # the header, 1,199 wide
        "</row>", "".join(f'<c r="{_column(i)}1" t="inlineStr"><is><t>x{i}</t></is></c>' for i in range(5, 1_200))
        + "</row>", 1))
    with pytest.raises(FileImportError, match=r"wide.xlsx has 1,001 columns: an import reads at most 1,000"):
        read_table(sheet)
    binary = tmp_path / "photo.csv"
    binary.write_bytes(bytes(range(256)) * 200)
    with pytest.raises(FileImportError, match="holds binary data"):
        read_table(binary)


def _column(index: int) -> str:
    """Excel's column letters of the 1-based column ``index``."""
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def test_the_command_line_refuses_a_file_past_the_limits_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bi_app.cli import main

    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(3000)) + "\n" + ",".join("1" * 3000) + "\n")
    answer = CliRunner().invoke(main, ["import", str(wide)], env={"BI_DATA_DIR": str(tmp_path / "data"),
                                                                  "BI_IMPORT_MAX_COLUMNS": "2500"})
    assert answer.exit_code == 1
    assert answer.output.strip().splitlines()[-1] == (
        "Error: wide.csv has 3,000 columns: an import reads at most 2,500. Keep the order columns and leave the "
        "others out")


def test_old_uploads_are_removed_when_a_new_one_comes(app, tmp_path: Path) -> None:  # noqa: ANN001
    import os
    import time

    from io import BytesIO

    from bi_app.context import current_config
    from bi_app.importing import receive_upload

    def save_upload(content: bytes, name: str):  # noqa: ANN202 - an Upload
        return receive_upload(BytesIO(content), len(content), name)

    with app.server.test_request_context("/"):
        uploads = current_config().data_dir / "uploads"
        old = save_upload(b"order_id\nA\n", "old.csv")
        recent = save_upload(b"order_id\nB\n", "recent.csv")
        day_and_more = time.time() - 25 * 3600
        for entry in (old.path, old.path.parent):
            os.utime(entry, (day_and_more, day_and_more))
        (uploads / "not-an-upload").mkdir(exist_ok=True)
        os.utime(uploads / "not-an-upload", (day_and_more, day_and_more))
        new = save_upload(b"order_id\nC\n", "new.csv")
        assert not old.path.parent.exists()
        assert recent.path.exists() and new.path.exists() and (uploads / "not-an-upload").exists()


def test_a_check_only_validation_counts_what_the_full_one_does(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("order_id,order_date,product,quantity,unit_price,customer_id,status,refunded_amount\n"
                    "A1,2024-03-01,Mug,2,5.00,C1,paid,0\n"
                    "A1,2024-03-01,Lamp,1,20.00,C1,paid,0\n"
                    "A2,2024-03-02,Mug,1,5.00,,paid,0\n"  # a guest
                    "A3,2024-03-03,Mug,-1,5.00,C2,paid,0\n"  # a return
                    "A4,2024-03-04,Lamp,1,20.00,C3,refunded,20.00\n"
                    "A5,2024-03-05,Mug,1,0.00,C4,paid,0\n"  # zero value: no order
                    "A6,2024-03-06,Mug,1,5.00,C5,voided,0\n"
                    "A7,bad,Mug,1,5.00,C6,paid,0\n")  # invalid
    source = read_table(path)
    mapping = auto_mapping(source.columns)
    full, checked = validate(source, mapping), validate(source, mapping, check_only=True)
    assert len(checked.lines.columns) < len(full.lines.columns)
    assert checked.summary() == full.summary()
    assert (checked.orders, checked.guests, checked.line_types()) == (full.orders, full.guests, full.line_types())
    assert [(r.line, r.column, r.reason) for r in checked.rejected] == [(r.line, r.column, r.reason)
                                                                        for r in full.rejected]
    lines = full.lines
    expected_orders = lines.loc[(lines["line_type"] == "sale") & (lines["total_amount"] != 0), "order_id"].nunique()
    assert full.orders == expected_orders and full.guests == lines["customer_id"].isna().sum() == 1
