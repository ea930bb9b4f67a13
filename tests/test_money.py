"""Money right on real shops' exports: one small file per kind of real-world case, with its expected
written/rejected counts and KPIs (net revenue, gross sales, returns, orders, customers, average order
value) computed with pandas from the ledger the file means, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from bi_app.analytics import distribution, kpis
from bi_app.importing import import_file
from data_layer.filters import Filters
from data_layer.importer import ImportChoices
from data_layer.meta import data_currency, data_version
from tests.support import expected_histogram

HEADER = "Order,Date,Product,Qty,Price,Customer,Region"


def ledger(*rows: tuple) -> pd.DataFrame:
    """What a finance user reads in a file: (order, customer, signed amount, refunded, kind) per line."""
    return pd.DataFrame(rows, columns=["order", "customer", "amount", "refunded", "kind"])


def expected_kpis(lines: pd.DataFrame) -> dict:
    """Net revenue = gross sales - returns (+ adjustments and fees); orders have a sale line of value."""
    sale = lines["kind"] == "sale"
    counted = sale & (lines["amount"] != 0)
    net = round(float((lines["amount"] - lines["refunded"]).sum()), 2)
    orders = lines.loc[counted, "order"].nunique()
    return {
        "revenue": net,
        "gross_sales": round(float(lines.loc[sale, "amount"].sum()), 2),
        "returns": round(float(lines["refunded"].sum() - lines.loc[lines["kind"] == "return", "amount"].sum()), 2),
        "adjustments": round(float(lines.loc[lines["kind"].isin(["adjustment", "fee"]), "amount"].sum()), 2),
        "orders": orders,
        "customers": lines.loc[counted & (lines["customer"] != ""), "customer"].nunique(),
        # Half away from zero, as invoices round: exact decimals, not binary floats.
        "average_order_value": float((Decimal(str(net)) / orders).quantize(Decimal("0.01"), ROUND_HALF_UP))
        if orders else None,
    }


def run(engine: Engine, path: Path, choices: ImportChoices = ImportChoices(), **options):  # noqa: ANN003, ANN201
    messages: list[str] = []
    outcome = import_file(engine, path, options.pop("overrides", {}), mode=options.pop("mode", "append"),
                          skip_invalid=options.pop("skip_invalid", False), dry_run=False,
                          report_dir=path.parent / "reports", echo=messages.append, choices=choices, **options)
    return outcome, "\n".join(messages)


def assert_kpis(engine: Engine, lines: pd.DataFrame, filters: Filters = Filters()) -> None:
    expected = expected_kpis(lines)
    with engine.connect() as conn:
        got = kpis(conn, filters)
    for name, value in expected.items():
        assert got[name]["value"] == (pytest.approx(value, abs=0.005) if value is not None else None), name


def write(tmp_path: Path, name: str, rows: list[str], header: str = HEADER, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(("\n".join([header, *rows]) + "\n").encode(encoding))
    return path


def test_returns_and_cancellations_are_netted_not_dropped(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "returns.csv", [
        "1,2024-03-01,Lamp,2,15.50,C1,North",
        "2,2024-03-02,Chair,1,900.00,C2,South",      # the largest sale, cancelled the same day
        "C2,2024-03-02,Chair,-1,900.00,C2,South",
        "3,2024-03-03,Lamp,1,15.50,C1,North",
        "4,2024-03-04,Lamp,-1,15.50,C1,North",        # a return without its order: counted where recorded
    ])
    outcome, printed = run(engine, path)
    assert (outcome.rows_in, outcome.written, outcome.rejected) == (5, 5, 0), printed
    assert_kpis(engine, ledger(("1", "C1", 31.0, 0, "sale"), ("2", "C2", 900.0, 0, "sale"),
                               ("C2", "C2", -900.0, 0, "return"), ("3", "C1", 15.5, 0, "sale"),
                               ("4", "C1", -15.5, 0, "return")))
    with engine.connect() as conn:
        from bi_app.analytics import products

        top = products(conn, Filters())["products"]
    assert top.iloc[0]["product"] == "Lamp" and top.set_index("product").loc["Chair", "revenue"] == 0


def test_full_and_partial_refunds_net_the_refunded_amount(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "refunds.csv", [
        "1,2024-03-01,Lamp,1,100.00,C1,North,paid,",
        "2,2024-03-02,Lamp,1,100.00,C2,North,refunded,",           # refunded in full
        "3,2024-03-03,Lamp,2,50.00,C3,North,partially_refunded,30",  # 30 of 100 refunded
        "3,2024-03-03,Bulb,1,20.00,C3,North,partially_refunded,",    # the order's refund sits on its first line
    ], header=HEADER + ",Status,Refunded Amount")
    outcome, printed = run(engine, path)
    assert (outcome.written, outcome.rejected) == (4, 0), printed
    # Order 3's refund of 30 is spread over its lines in proportion: 25 on the lamps, 5 on the bulb.
    lines = ledger(("1", "C1", 100.0, 0, "sale"), ("2", "C2", 100.0, 100.0, "sale"), ("3", "C3", 100.0, 25.0, "sale"),
                   ("3", "C3", 20.0, 5.0, "sale"))
    assert_kpis(engine, lines)
    with engine.connect() as conn:
        assert kpis(conn, Filters(products=("Bulb",)))["revenue"]["value"] == pytest.approx(15.0)


def test_each_status_class_and_an_unknown_status_answered(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "statuses.csv", [
        "1,2024-03-01,Lamp,1,10.00,C1,North,Completed",
        "2,2024-03-01,Lamp,1,20.00,C2,North,voided",
        "3,2024-03-01,Lamp,1,30.00,C3,North,pending",
        "4,2024-03-01,Lamp,1,40.00,C4,North,failed",
        "5,2024-03-01,Lamp,1,50.00,C5,North,chargeback",
        "6,2024-03-01,Lamp,1,60.00,C6,North,wc-cancelled",
        "7,2024-03-01,Lamp,1,70.00,C7,North,Awaiting pickup",
    ], header=HEADER + ",Status")
    outcome, printed = run(engine, path)
    assert outcome.failed and outcome.written == 0 and [q.setting for q in outcome.questions] == ["status"]
    assert "'Awaiting pickup' (1 line)" in printed
    with engine.connect() as conn:
        assert data_version(conn) is None  # nothing written

    outcome, printed = run(engine, path, ImportChoices(statuses={"Awaiting pickup": "counted"}))
    assert (outcome.rows_in, outcome.written, outcome.rejected) == (7, 4, 3), printed
    assert "status 'voided': not counted" in printed
    assert_kpis(engine, ledger(("1", "C1", 10.0, 0, "sale"), ("5", "C5", 50.0, 50.0, "sale"),
                               ("6", "C6", 60.0, 60.0, "sale"), ("7", "C7", 70.0, 0, "sale")))


def test_a_file_whose_every_status_is_unknown_is_asked_about(engine: Engine, tmp_path: Path) -> None:
    """No status the vocabulary knows (a column of Mexican states named Estado, say): a question, not a crash."""
    path = write(tmp_path, "unknown.csv", ["1,2024-03-01,Lamp,1,10.00,C1,North,Jalisco",
                                           "2,2024-03-02,Desk,1,20.00,C2,North,Jalisco"], header=HEADER + ",Status")
    outcome, printed = run(engine, path)
    assert outcome.failed and outcome.written == 0 and [q.setting for q in outcome.questions] == ["status"], printed
    assert "'Jalisco' (2 lines)" in printed
    outcome, printed = run(engine, path, ImportChoices(statuses={"Jalisco": "counted"}))
    assert (outcome.rows_in, outcome.written, outcome.rejected) == (2, 2, 0), printed
    assert_kpis(engine, ledger(("1", "C1", 10.0, 0, "sale"), ("2", "C2", 20.0, 0, "sale")))


def test_reimporting_an_order_as_refunded_or_voided_in_upsert_mode_updates_it(engine: Engine, tmp_path: Path) -> None:
    first = write(tmp_path, "first.csv", ["1,2024-03-01,Lamp,1,100.00,C1,North,paid",
                                          "2,2024-03-02,Desk,1,300.00,C2,North,paid"], header=HEADER + ",Status")
    run(engine, first)
    later = write(tmp_path, "later.csv", ["1,2024-03-01,Lamp,1,100.00,C1,North,refunded",
                                          "2,2024-03-02,Desk,1,300.00,C2,North,voided"], header=HEADER + ",Status")
    outcome, printed = run(engine, later, mode="upsert")
    assert "nothing changed" not in printed, printed
    assert_kpis(engine, ledger(("1", "C1", 100.0, 100.0, "sale")))


def test_an_adjustment_pair_and_a_fee_count_on_both_sides(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "adjust.csv", [
        "1,2024-03-01,Lamp,1,40.00,C1,North",
        "1,2024-03-01,POSTAGE,1,5.00,C1,North",
        "A2,2024-03-02,Adjust bad debt,1,11.00,,North",
        "A3,2024-03-02,Adjust bad debt,1,-11.00,,North",
        "4,2024-03-03,Manual,1,-3.00,C1,North",
    ])
    outcome, printed = run(engine, path)
    assert (outcome.written, outcome.rejected) == (5, 0), printed
    assert_kpis(engine, ledger(("1", "C1", 40.0, 0, "sale"), ("1", "C1", 5.0, 0, "fee"), ("A2", "", 11.0, 0, "adjustment"),
                               ("A3", "", -11.0, 0, "adjustment"), ("4", "C1", -3.0, 0, "adjustment")))
    with engine.connect() as conn:
        kinds = dict(conn.execute(text("SELECT line_type, count(*) FROM advanced_sales_data GROUP BY 1")).all())
    assert kinds == {"sale": 1, "fee": 1, "adjustment": 3}


def test_letters_mark_adjustments_and_cancellations_only_among_numbered_orders(engine: Engine, tmp_path: Path) -> None:
    """UCI-style "A563185"/"C536379" ids are marks only where the shop's ids are plain numbers; a shop
    numbering every order A1001, C2002, ... sells in all of them."""
    lettered = write(tmp_path, "lettered.csv", [
        "A1001,2024-03-01,Lamp,1,40.00,K1,North",
        "C2002,2024-03-02,Desk,1,100.00,K2,North",
        "A1003,2024-03-03,Lamp,2,40.00,K1,North",
    ])
    outcome, printed = run(engine, lettered, mode="replace")
    assert outcome.written == 3, printed
    assert "read as adjustments" not in printed and "read as cancellations" not in printed
    assert_kpis(engine, ledger(("A1001", "K1", 40.0, 0, "sale"), ("C2002", "K2", 100.0, 0, "sale"),
                               ("A1003", "K1", 80.0, 0, "sale")))
    numbered = write(tmp_path, "numbered.csv", [
        "536365,2024-03-01,Lamp,1,40.00,K1,North",
        "C536365,2024-03-02,Lamp,-1,40.00,K1,North",
        "A536370,2024-03-02,Bad debt,1,-12.00,,North",
    ])
    outcome, printed = run(engine, numbered, mode="replace")
    assert outcome.written == 3, printed
    assert "ids of 'C' and digits read as cancellations (returns)" in printed
    assert_kpis(engine, ledger(("536365", "K1", 40.0, 0, "sale"), ("C536365", "K1", -40.0, 0, "return"),
                               ("A536370", "", -12.0, 0, "adjustment")))


def test_a_line_type_column_decides_instead_of_the_names(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "types.csv", [
        "1,2024-03-01,Lamp,1,40.00,C1,North,Sale",
        "1,2024-03-01,Gift wrap,1,2.50,C1,North,Fee",
        "2,2024-03-02,Lamp,1,40.00,C1,North,Refund",
        "3,2024-03-02,POSTAGE,1,6.00,C2,North,sale",
    ], header=HEADER + ",Line Type")
    outcome, printed = run(engine, path)
    assert (outcome.written, outcome.rejected) == (4, 0), printed
    assert_kpis(engine, ledger(("1", "C1", 40.0, 0, "sale"), ("1", "C1", 2.5, 0, "fee"), ("2", "C1", -40.0, 0, "return"),
                               ("3", "C2", 6.0, 0, "sale")))


def test_orders_of_zero_value_lines_only_are_no_orders(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "zero.csv", [
        "1,2024-03-01,Lamp,1,40.00,C1,North",
        "2,2024-03-01,Free sample,1,0.00,C2,North",
        "3,2024-03-02,,2,0,C3,North",                 # a blank product on a zero-value line: "Unknown"
        "4,2024-03-02,Lamp,1,40.00,C1,North",
        "4,2024-03-02,Free sample,1,0.00,C1,North",
    ])
    outcome, printed = run(engine, path)
    assert (outcome.written, outcome.rejected) == (5, 0), printed
    assert_kpis(engine, ledger(("1", "C1", 40.0, 0, "sale"), ("2", "C2", 0.0, 0, "sale"), ("3", "C3", 0.0, 0, "sale"),
                               ("4", "C1", 40.0, 0, "sale"), ("4", "C1", 0.0, 0, "sale")))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM advanced_sales_data WHERE product = 'Unknown'")).scalar_one() == 1


def test_identical_lines_are_kept_unless_they_share_a_line_id(engine: Engine, tmp_path: Path) -> None:
    rows = ["1,2024-03-01,Mug,1,8.00,C1,North", "1,2024-03-01,Mug,1,8.00,C1,North", "2,2024-03-02,Mug,1,8.00,C2,North"]
    plain = write(tmp_path, "no-line-id.csv", rows)
    outcome, printed = run(engine, plain)
    assert (outcome.written, outcome.rejected) == (3, 0) and "1 identical line kept" in printed
    assert_kpis(engine, ledger(("1", "C1", 8.0, 0, "sale"), ("1", "C1", 8.0, 0, "sale"), ("2", "C2", 8.0, 0, "sale")))

    with_ids = write(tmp_path, "line-ids.csv", [f"{row},{line_id}" for row, line_id in zip(rows, ["L1", "L1", "L2"])],
                     header=HEADER + ",Line Id")
    outcome, printed = run(engine, with_ids, mode="replace")
    assert (outcome.written, outcome.rejected) == (2, 1) and "same line id as line 2" in printed
    assert_kpis(engine, ledger(("1", "C1", 8.0, 0, "sale"), ("2", "C2", 8.0, 0, "sale")))


@pytest.mark.parametrize("dates, choices, expected", [
    (["31/12/2024", "01/03/2024"], ImportChoices(), ["2024-12-31", "2024-03-01"]),        # evidence: day first
    (["12/31/2024", "01/03/2024"], ImportChoices(), ["2024-12-31", "2024-01-03"]),        # evidence: month first
    (["01.03.2024", "02.03.2024"], ImportChoices(), ["2024-03-01", "2024-03-02"]),        # dots: day first
    (["01/03/2024", "02/03/2024"], ImportChoices(), None),                                # no evidence: a question
    (["01/03/2024", "02/03/2024"], ImportChoices(date_order="mdy"), ["2024-01-03", "2024-02-03"]),
    (["1/3/24 14:05", "2/3/24 09:00"], ImportChoices(date_order="dmy"), ["2024-03-01", "2024-03-02"]),
], ids=["slashed-day-first", "slashed-month-first", "dotted", "slashed-no-evidence", "answered", "short-year-time"])
def test_dates_are_read_from_their_evidence_or_asked(engine: Engine, tmp_path: Path, dates: list[str],
                                                     choices: ImportChoices, expected: list[str] | None) -> None:
    path = write(tmp_path, "dates.csv", [f"{i},{day},Lamp,1,10.00,C{i},North" for i, day in enumerate(dates, 1)])
    outcome, printed = run(engine, path, choices)
    if expected is None:
        assert outcome.failed and [q.setting for q in outcome.questions] == ["date_order"]
        assert "day-first as month-first" in printed and "--date-order" not in printed  # the CLI adds the flag
        return
    assert outcome.written == len(dates), printed
    assert "date order (Date):" in printed
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT order_id, order_date FROM advanced_sales_data")).all())
    assert [str(stored[str(i)])[:10] for i in range(1, len(dates) + 1)] == expected


@pytest.mark.parametrize("timezone, expected", [(None, ["2024-04-01", "2024-03-31"]),
                                                ("UTC", ["2024-03-31", "2024-04-01"])])
def test_timestamps_with_offsets_from_two_zones(engine: Engine, tmp_path: Path, timezone: str | None,
                                               expected: list[str]) -> None:
    path = write(tmp_path, "offsets.csv", ["1,2024-04-01T00:30:00+02:00,Lamp,1,10.00,C1,North",
                                           "2,2024-03-31T23:30:00-05:00,Lamp,1,10.00,C2,North"])
    outcome, printed = run(engine, path, ImportChoices(timezone=timezone))
    assert outcome.written == 2, printed
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT order_id, order_date FROM advanced_sales_data")).all())
    assert [str(stored["1"])[:10], str(stored["2"])[:10]] == expected


@pytest.mark.parametrize("delimiter, prices, expected", [
    (",", ['"12,50"', '"1.234,56"'], [12.50, 1234.56]),
    ("\t", ["12,50", "3,00"], [12.50, 3.00]),
    (";", ["1.234,56", "0,99"], [1234.56, 0.99]),
    (";", ["€ 12,50", "€ 7,00"], [12.50, 7.00]),
    (",", ['"1,234.56"', "(12.00)"], [1234.56, -12.00]),
], ids=["comma-file", "tab-file", "semicolon-file", "euro-signs", "thousands-and-parentheses"])
def test_decimal_marks_come_from_the_values_whatever_the_delimiter(engine: Engine, tmp_path: Path, delimiter: str,
                                                                   prices: list[str], expected: list[float]) -> None:
    rows = [delimiter.join([str(i), "2024-03-01", "Lamp", "1", price, f"C{i}", "North"]) for i, price in
            enumerate(prices, 1)]
    path = write(tmp_path, "numbers.csv", rows, header=HEADER.replace(",", delimiter))
    outcome, printed = run(engine, path)
    assert outcome.written == 2, printed
    kinds = ["sale" if value >= 0 else "return" for value in expected]
    assert_kpis(engine, ledger(*[(str(i), f"C{i}", value, 0, kind)
                                 for i, (value, kind) in enumerate(zip(expected, kinds), 1)]))


def test_an_ambiguous_number_column_is_asked_about(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "ambiguous.csv", ["1,2024-03-01,Lamp,1,\"1,234\",C1,North",
                                             "2,2024-03-01,Lamp,1,\"2,500\",C2,North"])
    outcome, printed = run(engine, path)
    assert outcome.failed and [q.setting for q in outcome.questions] == ["decimal"]
    outcome, printed = run(engine, path, ImportChoices(decimal=","))
    assert outcome.written == 2, printed
    assert_kpis(engine, ledger(("1", "C1", 1.234, 0, "sale"), ("2", "C2", 2.5, 0, "sale")))


def test_a_windows_code_page_file_keeps_its_euro_signs_and_dashes(engine: Engine, tmp_path: Path) -> None:
    names = ["Mug – large", "Gift card 10 €", "Café crème"]
    path = write(tmp_path, "cp1252.csv", [f"{i},2024-03-01,{name},1,10.00,C{i},North" for i, name in enumerate(names, 1)],
                 encoding="cp1252")
    outcome, printed = run(engine, path)
    assert outcome.written == 3 and "encoding: windows-1252" in printed, printed
    with engine.connect() as conn:
        stored = sorted(v for (v,) in conn.execute(text("SELECT product FROM advanced_sales_data")))
    assert stored == sorted(names)
    assert_kpis(engine, ledger(("2", "C2", 10.0, 0, "sale")), Filters(products=("Gift card 10 €",)))


def test_long_names_are_stored_whole(engine: Engine, tmp_path: Path) -> None:
    product = "Organic cotton crew-neck T-shirt, garment-dyed, relaxed fit, with a reinforced collar and " \
              "double-stitched hems, in forest green (size M)"
    product = (product + " " + "x" * 150)[:150]
    regions = ["Provence-Alpes-Côte d'Azur", "Provence-Alpes-Côte d'Azu2"]
    assert len(product) == 150 and all(len(r) >= 25 for r in regions)
    path = write(tmp_path, "long.csv", [f'1,2024-03-01,"{product}",1,10.00,C1,{regions[0]}',
                                        f'2,2024-03-01,Lamp,1,20.00,C2,{regions[1]}'])
    outcome, printed = run(engine, path)
    assert outcome.written == 2, printed
    with engine.connect() as conn:
        assert conn.execute(text("SELECT product FROM advanced_sales_data WHERE order_id = '1'")).scalar_one() == product
        assert sorted(v for (v,) in conn.execute(text("SELECT DISTINCT region FROM advanced_sales_data"))) == sorted(regions)
    assert_kpis(engine, ledger(("2", "C2", 20.0, 0, "sale")), Filters(regions=(regions[1],)))
    assert_kpis(engine, ledger(("1", "C1", 10.0, 0, "sale")), Filters(products=(product,)))


def test_a_currency_column_is_stored_with_the_data_and_mixed_currencies_are_refused(engine: Engine,
                                                                                  tmp_path: Path) -> None:
    from data_layer.importer import FileImportError

    path = write(tmp_path, "gbp.csv", ["1,2024-03-01,Lamp,1,10.00,C1,North,GBP", "2,2024-03-01,Lamp,1,10.00,C2,North,gbp"],
                 header=HEADER + ",Currency")
    outcome, printed = run(engine, path)
    assert outcome.written == 2 and "currency: GBP" in printed
    with engine.connect() as conn:
        assert data_currency(conn) == "GBP"
    mixed = write(tmp_path, "mixed.csv", ["3,2024-03-01,Lamp,1,10.00,C1,North,GBP",
                                          "4,2024-03-01,Lamp,1,10.00,C2,North,EUR"], header=HEADER + ",Currency")
    with pytest.raises(FileImportError, match="mixes currencies: GBP \\(1 line\\), EUR \\(1 line\\)"):
        run(engine, mixed)
    euros = write(tmp_path, "eur.csv", ["5,2024-03-01,Lamp,1,10.00,C1,North,EUR"], header=HEADER + ",Currency")
    from data_layer.loader import LoadError

    with pytest.raises(LoadError, match="stored orders are in GBP"):
        run(engine, euros)
    assert_kpis(engine, ledger(("1", "C1", 10.0, 0, "sale"), ("2", "C2", 10.0, 0, "sale")))


def test_unit_prices_of_fractions_of_a_cent_are_kept(engine: Engine, tmp_path: Path) -> None:
    """Wholesale prices such as 0.065 a piece: the line's amount is quantity x price in cents."""
    path = write(tmp_path, "wholesale.csv", ["1,2024-03-01,Teacup,12,0.065,C1,North", "2,2024-03-01,Pad,1,0.001,C2,North",
                                             "3,2024-03-01,Bell,24,1.245,C3,North", "C4,2024-03-02,Bell,-20,2.555,C3,North"])
    outcome, printed = run(engine, path)
    assert (outcome.written, outcome.rejected) == (4, 0), printed
    amounts = [round(q * p, 2) for q, p in ((12, 0.065), (1, 0.001), (24, 1.245), (-20, 2.555))]
    assert_kpis(engine, ledger(("1", "C1", amounts[0], 0, "sale"), ("2", "C2", amounts[1], 0, "sale"),
                               ("3", "C3", amounts[2], 0, "sale"), ("C4", "C3", amounts[3], 0, "return")))
    with engine.connect() as conn:
        prices = dict(conn.execute(text("SELECT order_id, unit_price FROM advanced_sales_data")).all())
    assert {k: float(v) for k, v in prices.items()} == {"1": 0.065, "2": 0.001, "3": 1.245, "C4": 2.555}


def test_files_that_are_not_what_their_name_says_and_floating_ids(engine: Engine, tmp_path: Path) -> None:
    """A workbook named .csv is read as a workbook; UTF-16 without a byte-order mark is recognised; binary
    data is refused in words; customer ids written as 17850.0 are the whole numbers they are; a row with
    an unquoted delimiter is rejected, not read shifted."""
    from openpyxl import Workbook

    from data_layer.importer import FileImportError

    workbook = Workbook()
    workbook.active.append(["Order", "Date", "Product", "Qty", "Price", "Customer", "Region"])
    workbook.active.append(["1", "2024-03-01", "Mug", 2, 4.5, "17850.0", "North"])
    workbook.save(tmp_path / "book.csv")
    outcome, printed = run(engine, tmp_path / "book.csv")
    assert outcome.written == 1 and "format: Excel workbook" in printed, printed

    wide = tmp_path / "wide.csv"
    wide.write_bytes(("\n".join([HEADER, "2,2024-03-02,Café,1,5.00,17850.0,North", "3,2024-03-02,Mug,1,5.00,,North"])
                      + "\n").encode("utf-16-le"))
    outcome, printed = run(engine, wide)
    assert outcome.written == 2 and "encoding: utf-16-le" in printed, printed
    assert_kpis(engine, ledger(("1", "17850", 9.0, 0, "sale"), ("2", "17850", 5.0, 0, "sale"), ("3", "", 5.0, 0, "sale")))

    binary = tmp_path / "photo.csv"
    binary.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(FileImportError, match="not a text file of orders"):
        run(engine, binary)

    shifted = write(tmp_path, "shifted.csv", ["4,2024-03-03,Box,6,2,10.00,C9,North", "5,2024-03-03,Mug,1,5.00,C9,North"])
    outcome, printed = run(engine, shifted)
    assert outcome.failed and "line 2, Order: 8 values where the header has 7" in printed, printed


def test_the_report_cannot_be_written_is_an_error_line_and_nothing_is_written(engine: Engine, tmp_path: Path) -> None:
    from data_layer.importer import FileImportError

    path = write(tmp_path, "orders.2024-01.csv", ["1,2024-03-01,Mug,1,5.00,C1,North"])
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(FileImportError, match="cannot write the import report"):
        import_file(engine, path, {}, mode="append", skip_invalid=False, dry_run=False,
                    report_dir=tmp_path / "blocker" / "reports", echo=lambda _line: None)
    with engine.connect() as conn:
        assert data_version(conn) is None
    outcome, _ = run(engine, path)
    assert outcome.report.name == "orders.2024-01.import-report.csv"


def test_currencies_that_cannot_be_told_apart_are_refused(engine: Engine, tmp_path: Path) -> None:
    from data_layer.importer import FileImportError
    from data_layer.loader import LoadError

    run(engine, write(tmp_path, "plain.csv", ["1,2024-03-01,Mug,1,5.00,C1,North"]))  # no currency recorded
    with pytest.raises(LoadError, match="no recorded currency"):
        run(engine, write(tmp_path, "gbp.csv", ["2,2024-03-01,Mug,1,5.00,C1,North,GBP"], header=HEADER + ",Currency"))
    with pytest.raises(FileImportError, match="'£' in the currency column is not an ISO 4217"):
        run(engine, write(tmp_path, "sign.csv", ["3,2024-03-01,Mug,1,5.00,C1,North,£"], header=HEADER + ",Currency"))


def test_the_datas_currency_reaches_the_api_the_pages_and_the_report(engine: Engine, tmp_path: Path, client,  # noqa: ANN001
                                                                   app, point_app_at) -> None:  # noqa: ANN001
    import io

    import openpyxl

    from bi_app import figures, service
    from pages.overview import kpi_cards

    path = write(tmp_path, "gbp.csv", ["1,2024-03-01,Mug,2,1250.00,C1,North,GBP", "C1,2024-03-02,Mug,-1,1250.00,C1,North,GBP"],
                 header=HEADER + ",Currency")
    run(engine, path)
    point_app_at(engine.url.render_as_string(hide_password=False))
    answer = client.get("/api/v1/kpis").get_json()
    assert answer["currency"] == "GBP" and answer["data"]["revenue"]["value"] == 1250.0
    with app.server.test_request_context():
        money = service.money_format()
        cards = str(kpi_cards(service.run("kpis", Filters()), money))
        trend = figures.trend(service.run("trend", Filters())["monthly"], money)
    assert money.currency == "GBP"
    assert "£1,250.00" in cards and "£2,500.00 gross − £1,250.00 returns" in cards and "$" not in cards
    assert trend.layout.yaxis.tickprefix == "£" and "£" in trend.data[0].hovertemplate
    report = openpyxl.load_workbook(io.BytesIO(client.get("/export/report.xlsx").data))["Summary"]
    rows = {row[0].value: row for row in report.iter_rows() if row[0].value}
    assert rows["Currency"][1].value == "GBP" and "£" in rows["revenue"][1].number_format


def test_half_cents_round_up_as_invoices_do(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "half.csv", ["1,2024-03-01,Screw,1,0.125,C1,North", "2,2024-03-01,Nut,3,0.335,C2,North",
                                        "3,2024-03-01,Bolt,1,2.675,C3,North", "C4,2024-03-02,Screw,-1,0.125,C1,North",
                                        "5,2024-03-02,Washer,2,0.03125,C4,North"])
    outcome, printed = run(engine, path)
    assert (outcome.written, outcome.rejected) == (5, 0), printed
    # Half a cent and more rounds away from zero: 0.125 -> 0.13, 1.005 -> 1.01, 2.675 -> 2.68, 0.0625 -> 0.06.
    assert_kpis(engine, ledger(("1", "C1", 0.13, 0, "sale"), ("2", "C2", 1.01, 0, "sale"), ("3", "C3", 2.68, 0, "sale"),
                               ("C4", "C1", -0.13, 0, "return"), ("5", "C4", 0.06, 0, "sale")))
    with engine.connect() as conn:
        assert float(conn.execute(text("SELECT unit_price FROM advanced_sales_data WHERE order_id = '5'")).scalar_one()) \
            == 0.03125


def half_up(written: str, places: str = "0.01") -> float:
    """A figure as written, rounded half away from zero with exact decimals."""
    return float(Decimal(written).quantize(Decimal(places), ROUND_HALF_UP))


def test_given_totals_and_prices_at_a_half_round_up_as_written(engine: Engine, tmp_path: Path) -> None:
    """Totals a file gives at half a cent (0.125, 1.005, 2.675), with or without quantity and price, and a unit
    price at half a millionth: stored as the written figure rounds, not rejected as amounts that do not add up
    and not a cent low with a made-up discount (numpy's rounding and binary floats did both)."""
    totals = ["0.125", "1.005", "2.675", "-2.675", "1234567.005", "653.825"]
    only_totals = write(tmp_path, "totals.csv", [f"{i},2024-03-01,Item {i},{total}" for i, total in enumerate(totals)],
                        header="Order,Date,Product,Total")
    outcome, printed = run(engine, only_totals, mode="replace")
    assert (outcome.written, outcome.rejected) == (len(totals), 0), printed
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT order_id, total_amount, discount_amount, shipping_cost "
                                   "FROM advanced_sales_data")).all()
    assert {row[0]: float(row[1]) for row in stored} == {str(i): half_up(t) for i, t in enumerate(totals)}
    assert all(float(row[2]) == 0 and float(row[3]) == 0 for row in stored)

    lines = [("1", "1", "1.005", "1.005"), ("2", "1", "0.125", "0.125"), ("3", "2", "326.9125", "653.825"),
             ("4", "1", "24.0070345", "24.01"), ("5", "3000", "0.0004184", "1.2552"), ("6", "-3000", "0.0004115", "-1.2345")]
    given = write(tmp_path, "given.csv", [f"{o},2024-03-01,Item {o},{q},{p},{t}" for o, q, p, t in lines],
                  header="Order,Date,Product,Qty,Price,Total")
    outcome, printed = run(engine, given, mode="replace")
    assert (outcome.written, outcome.rejected) == (len(lines), 0), printed
    with engine.connect() as conn:
        stored = {row[0]: row[1:] for row in conn.execute(text(
            "SELECT order_id, unit_price, total_amount, discount_amount, shipping_cost, subtotal "
            "FROM advanced_sales_data")).all()}
    for order, _, price, total in lines:
        assert float(stored[order][0]) == half_up(price, "0.000001"), order
        assert float(stored[order][1]) == half_up(total), order
        # No cent of discount or shipping made up (the line's amount is quantity x the price as written).
        assert (float(stored[order][2]), float(stored[order][3])) == (0, 0), order
        assert float(stored[order][4]) == half_up(total), order

    prices = [("7", "1000", "0.0012345"), ("8", "3", "0.335")]  # no total: quantity x price as written
    worked_out = write(tmp_path, "prices.csv", [f"{o},2024-03-01,Item {o},{q},{p}" for o, q, p in prices],
                       header="Order,Date,Product,Qty,Price")
    outcome, printed = run(engine, worked_out, mode="replace")
    assert (outcome.written, outcome.rejected) == (len(prices), 0), printed
    with engine.connect() as conn:
        totals = dict(conn.execute(text("SELECT order_id, total_amount FROM advanced_sales_data")).all())
    assert {order: float(total) for order, total in totals.items()} == {
        o: float((Decimal(q) * Decimal(p)).quantize(Decimal("0.01"), ROUND_HALF_UP)) for o, q, p in prices}


def test_amounts_and_quantities_beyond_their_columns_are_rejected_with_their_lines(engine: Engine,
                                                                                    tmp_path: Path) -> None:
    """Figures no line can hold (the database would refuse the whole load, naming no line) are invalid rows of
    the report; the other lines load with --skip-invalid and what was stored stays otherwise."""
    rows = ["1,2024-03-01,Ok,1,10.00,10.00,0", "2,2024-03-01,Huge,1,123456789012.34,123456789012.34,0",
            "3,2024-03-01,Many,-5000000000,0.00001,-50000.00,0", "4,2024-03-01,Endless,1,inf,inf,0",
            "5,2024-03-01,Twice,2,60000000.00,120000000.00,0", "6,2024-03-01,Far,1,5.00,100000005.00,100000000",
            "7,2024-03-01,Worked out,2,60000000.00,,0"]
    path = write(tmp_path, "huge.csv", rows, header="Order,Date,Product,Qty,Price,Total,Shipping")
    outcome, printed = run(engine, path, mode="replace")
    assert (outcome.written, outcome.rejected) == (0, len(rows)), printed
    assert f"{len(rows) - 1} invalid" in printed, printed
    for said in ("line 3, Price: unit price '123456789012.34' is beyond what a line can hold "
                 "(-99,999,999.999999 to 99,999,999.999999)",
                 "line 4, Qty: quantity '-5000000000' is beyond what a line can hold (-2,147,483,648 to 2,147,483,647)",
                 "line 5, Price: unit price 'inf' is beyond",
                 "line 6, Total: total amount '120000000.00' is beyond what a line can hold "
                 "(-99,999,999.99 to 99,999,999.99)",
                 "line 7, Shipping: shipping cost '100000000' is beyond",
                 "line 8, Total: subtotal 120,000,000.00 is beyond"):  # worked out: under the total's column
        assert said in printed, (said, printed)
    report = pd.read_csv(outcome.report)
    assert sorted(report["line"].dropna().astype(int)) == list(range(3, len(rows) + 2)), report
    outcome, printed = run(engine, path, mode="replace", skip_invalid=True)
    assert (outcome.written, outcome.rejected) == (1, len(rows) - 1), printed
    with engine.connect() as conn:
        assert conn.execute(text("SELECT order_id FROM advanced_sales_data")).scalars().all() == ["1"]


def test_a_file_without_a_currency_takes_the_stored_one_and_the_configured_currency_counts(engine: Engine,
                                                                                        tmp_path: Path) -> None:
    gbp = write(tmp_path, "gbp.csv", ["1,2024-03-01,Mug,1,5.00,C1,North,GBP"], header=HEADER + ",Currency")
    run(engine, gbp)
    outcome, printed = run(engine, write(tmp_path, "plain.csv", ["2,2024-03-01,Mug,1,5.00,C1,North"]))
    assert outcome.written == 1 and "currency: GBP (no currency column: the stored orders')" in printed
    with engine.connect() as conn:
        assert data_currency(conn) == "GBP"

    # Data with no recorded currency is shown in the configured one: a file in that currency may join it.
    run(engine, write(tmp_path, "again.csv", ["3,2024-03-01,Mug,1,5.00,C1,North"]), mode="replace")
    outcome, printed = run(engine, write(tmp_path, "gbp2.csv", ["4,2024-03-01,Mug,1,5.00,C1,North,GBP"],
                                         header=HEADER + ",Currency"), ImportChoices(currency="GBP"))
    assert outcome.written == 1, printed


def test_statuses_and_their_classes_are_in_the_report_and_a_gzip_named_csv_is_read(engine: Engine,
                                                                                  tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "packed.csv"
    path.write_bytes(gzip.compress(("\n".join([HEADER + ",Status", "1,2024-03-01,Mug,1,5.00,C1,North,paid",
                                               "2,2024-03-01,Mug,1,5.00,C2,North,Awaiting pickup"]) + "\n").encode()))
    outcome, printed = run(engine, path, ImportChoices(statuses={"awaiting pickup": "excluded"}))
    assert (outcome.written, outcome.rejected) == (1, 1), printed
    report = pd.read_csv(outcome.report)
    decided = report.loc[report["kind"] == "decision", "reason"].tolist()
    assert "status: 'paid' counted (1 line; the status vocabulary)" in decided
    assert "status: 'Awaiting pickup' excluded (1 line; as asked)" in decided


def test_the_data_page_says_when_a_file_is_in_another_currency_than_the_stored_orders(
        engine: Engine, tmp_path: Path, app, point_app_at) -> None:  # noqa: ANN001
    import uuid

    from bi_app.importing import upload_folder
    from data_layer.importer import FIELDS, auto_mapping
    from pages.data import check_file

    run(engine, write(tmp_path, "gbp.csv", ["1,2024-03-01,Mug,1,5.00,C1,North,GBP"], header=HEADER + ",Currency"))
    point_app_at(engine.url.render_as_string(hide_password=False))
    upload = {"id": uuid.uuid4().hex, "file": "eur.csv"}
    with app.server.test_request_context():
        folder = upload_folder(upload["id"])
        folder.mkdir(parents=True)
        (folder / "eur.csv").write_text(HEADER + ",Currency\n2,2024-03-02,Mug,1,5.00,C1,North,EUR\n")
        mapping = auto_mapping([*HEADER.split(","), "Currency"])
        ids = [{"type": "data-map", "field": name} for name in FIELDS]
        shown, disabled, _decisions = check_file([mapping.get(i["field"]) for i in ids], None, None, None, False,
                                                 [], ids, [], upload)
    assert "in EUR and the stored orders in GBP: it can only replace all stored orders" in str(shown)


def test_names_with_commas_quotes_and_line_breaks_reach_the_columnar_snapshot(engine: Engine, tmp_path: Path) -> None:
    from data_layer.columnar import ColumnarReplica

    names = ["Lamp, desk", 'The "Big" mug', "Two\nlines", "Plain"]
    path = tmp_path / "tricky.csv"
    path.write_text(HEADER + "\n" + "".join(
        f'{i},2024-03-0{i},"{name.replace(chr(34), chr(34) * 2)}",1,{i}.00,C{i},North\n'
        for i, name in enumerate(names, 1)))
    outcome, printed = run(engine, path)
    assert outcome.written == 4, printed
    with engine.connect() as conn:
        version = data_version(conn)
    replica = ColumnarReplica(engine, tmp_path / "columnar")
    replica.build(version)
    snapshot = replica.engine_for(version)
    assert snapshot is not None
    with snapshot.connect() as conn:
        for i, name in enumerate(names, 1):
            assert kpis(conn, Filters(products=(name,)))["revenue"]["value"] == float(i), name
    replica.close()


def test_an_imported_shop_gets_no_demo_catalog_margins_nor_cross_sell_without_categories(engine: Engine,
                                                                                          tmp_path: Path) -> None:
    """A shop selling a "Lamp" is not the demo's Lamp: no margin from the demo catalog; without
    categories, nobody is a one-category customer to cross-sell to."""
    from bi_app.analytics import products
    from bi_app.ml import strategy
    from bi_app.ml.models import train_models

    path = write(tmp_path, "lamps.csv", ["1,2024-03-01,Lamp,2,40.00,C1,North", "2,2024-03-02,Desk,1,99.00,C2,North"])
    outcome, printed = run(engine, path)
    assert outcome.written == 2, printed
    with engine.connect() as conn:
        table = products(conn, Filters())["products"]
        cross_sell = strategy.recommendations(conn, Filters(), train_models(engine))["cross_sell"]
    assert table["estimated_margin"].isna().all()
    assert not cross_sell["available"] and cross_sell["finding"] == "this data has no product categories"



def test_a_region_of_one_big_customer_leads_nothing(engine: Engine, tmp_path: Path) -> None:
    from bi_app.ml import strategy

    rows = [f"N{i},2024-03-01,Lamp,1,{20 + i}.00,N{i},North" for i in range(12)]
    rows += [f"S{i},2024-03-01,Lamp,1,{10 + i}.00,S{i},South" for i in range(10)]
    rows += ["M1,2024-03-01,Lamp,1,5000.00,M1,Isle of Man"]
    outcome, printed = run(engine, write(tmp_path, "regions.csv", rows))
    assert outcome.written == len(rows), printed
    with engine.connect() as conn:
        regional = strategy.regional_numbers(conn, Filters())
    north, south = sum(20 + i for i in range(12)) / 12, sum(10 + i for i in range(10)) / 10
    assert (regional["leader"], regional["laggard"]) == ("North", "South")
    assert regional["gap_per_customer"] == pytest.approx(north - south)


def test_a_few_huge_orders_share_an_overflow_bin(engine: Engine, tmp_path: Path) -> None:
    """Orders of 10 to 209 and two near 50,000: the bins stop at the 99th percentile (208.99), and the
    orders above it (209 and the two huge ones) share the last."""
    amounts = [10 + i for i in range(200)] + [50_000, 48_000]
    path = tmp_path / "huge.csv"
    path.write_text("Order,Date,Product,Amount\n" + "".join(
        f"O{i},2024-01-{i % 28 + 1:02d},Mug,{amount}\n" for i, amount in enumerate(amounts)))
    run(engine, path)
    with engine.connect() as conn:
        got = distribution(conn, Filters())
    counts, starts, overflow = expected_histogram(pd.Series(amounts, dtype=float))
    assert overflow and counts[-1] == 3
    assert [b["orders"] for b in got["histogram"]] == counts
    assert [b["bin_start"] for b in got["histogram"]] == pytest.approx(starts)
    assert got["histogram"][-1] == {"bin_start": pytest.approx(starts[-1]), "bin_end": 50_000, "orders": 3,
                                    "overflow": True}


def test_a_sum_that_is_zero_but_for_float_noise_is_written_as_zero() -> None:
    from bi_app.money import MoneyFormat

    noise = sum([0.1, 0.2, -0.3])  # 5.55e-17 in binary floats
    assert MoneyFormat()(noise) == MoneyFormat()(-noise) == "$0.00"
    assert MoneyFormat()(-0.01) == "−$0.01" and MoneyFormat("GBP", "en_GB")(-1e-12, whole=True) == "£0"
