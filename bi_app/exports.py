"""Downloads as plain HTTP endpoints under /export/, the same the pages' buttons use.

- ``orders.csv``: the filtered orders, streamed from a server-side cursor in
  constant memory, whatever their number.
- ``orders.xlsx``: the same as an Excel sheet, refused with a clear message
  beyond Excel's 1,048,576-row limit.
- ``report.xlsx``: a formatted multi-sheet summary of every analysis, with the
  filters on the first sheet.
- ``customers.csv`` / ``.xlsx``: every matching customer, scored (cluster, RFM, churn);
  ``targets/<recommendation>.csv``: the customers a recommendation targets.
- ``<table>.csv``: the table a page shows (segments, regions, clusters, rfm, ...).
"""

from __future__ import annotations

import csv
import io
import logging
import tempfile
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator

import pandas as pd
from flask import Blueprint, Response, request, send_file, stream_with_context
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from sqlalchemy import Numeric, select
from sqlalchemy.exc import SQLAlchemyError

from bi_app import service
from bi_app.analytics.orders import span_text
from bi_app.importing import upload_folder
from bi_app.ml import strategy
from bi_app.api import error_response
from bi_app.analytics.orders import KPI_NAMES
from bi_app.context import current_engine
from bi_app.money import DEFAULT_FORMAT, MoneyFormat
from data_layer.engine import describe_error
from data_layer.filters import FilterError, Filters, conditions
from data_layer.meta import data_version, stored_columns
from data_layer.schema import MONEY_COLUMNS, sales
from data_layer.summaries import order_source

log = logging.getLogger(__name__)

exports = Blueprint("exports", __name__, url_prefix="/export")

EXCEL_MAX_DATA_ROWS = 1_048_576 - 1  # one row of the sheet is the header
STREAM_BATCH_ROWS = 5_000
_SCALES = {c.name: c.type.scale for c in sales.columns if isinstance(c.type, Numeric)}


@exports.errorhandler(FilterError)
def _bad_filter(exc: FilterError):  # noqa: ANN202
    return error_response(400, "bad_parameter", exc.message, parameter=exc.parameter)


@exports.errorhandler(SQLAlchemyError)
def _database_down(exc: SQLAlchemyError):  # noqa: ANN202
    log.warning("Export: database error: %s", describe_error(exc))
    return error_response(503, "database_unavailable", describe_error(exc))


@exports.get("/orders.csv")
def orders_csv() -> Response:
    """The filtered orders as CSV, streamed."""
    filters, _ = service.parse_request(request.args.to_dict(flat=False))
    columns, rows = _stream_orders(filters)
    first = next(rows)  # run the query now, so a database error is a 503, not a cut-off file

    def body() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for batch in _chain(first, rows):
            writer.writerows(_formatted(columns, row) for row in batch)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    return Response(
        stream_with_context(body()),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="orders.csv"'},
    )


@exports.get("/customers.csv")
def customers_csv() -> Response:
    """Every matching customer with their cluster, RFM segment and churn probability, as CSV."""
    filters, _ = service.parse_request(request.args.to_dict(flat=False))
    return _csv(service.customer_list(filters), "customers.csv")


@exports.get("/customers.xlsx")
def customers_xlsx() -> Response | tuple[Response, int]:
    """The same customers as an Excel sheet (422 beyond a sheet's rows)."""
    filters, _ = service.parse_request(request.args.to_dict(flat=False))
    frame = service.customer_list(filters)
    if len(frame) > EXCEL_MAX_DATA_ROWS:
        return error_response(422, "too_many_rows", f"{len(frame):,} customers match, but an Excel sheet holds at "
                              f"most {EXCEL_MAX_DATA_ROWS:,} rows. Narrow the filters, or download CSV.")
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Customers")
    sheet.append(list(frame.columns))
    money = _money_cells(sheet, frame.columns, service.money_format())
    for record in frame.itertuples(index=False):
        sheet.append(money([_cell(v) for v in record]))
    return _send_workbook(workbook, "customers.xlsx")


@exports.get("/targets/<name>.csv")
def targets_csv(name: str) -> Response | tuple[Response, int]:
    """The customers recommendation ``name`` targets, under the filters and assumptions in the query."""
    if name not in strategy.TITLES:
        return error_response(404, "not_found", f"no recommendation {name!r}; "
                              f"recommendations: {', '.join(strategy.TITLES)}")
    filters, assumptions = service.parse_request(request.args.to_dict(flat=False),
                                                 service.ANALYSES["recommendations"].parameters)
    return _csv(service.customer_list(filters, name, **assumptions), f"{name}-customers.csv")


@exports.get("/imports/<upload_id>/<kind>.csv")
def import_report(upload_id: str, kind: str) -> Response | tuple[Response, int]:
    """The report or the rejected rows of an import made on the Data page."""
    if kind not in ("report", "rejects"):
        return error_response(404, "not_found", "ask for report.csv or rejects.csv")
    try:
        folder = upload_folder(upload_id)
    except ValueError:
        return error_response(404, "not_found", "no such import")
    suffix = ".import-report.csv" if kind == "report" else ".rejects.csv"
    found = sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []
    if not found:
        return error_response(404, "not_found", f"this import has no {kind}")
    # Absolute: Flask resolves a relative path against the app's package, not the working directory.
    return send_file(found[0].resolve(), mimetype="text/csv", as_attachment=True, download_name=f"import-{kind}.csv")


def _csv(frame: pd.DataFrame, filename: str) -> Response:
    return Response(frame.to_csv(index=False), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


#: Analyses whose answer is one table, downloadable as CSV (``/export/<name>.csv``).
TABLES = {
    "segments": lambda result: result,
    "regions": lambda result: result,
    "products": lambda result: result["products"],
    "categories": lambda result: result["categories"],
    "trend": lambda result: result["monthly"],
    "correlations": lambda result: result,
    "cohorts": lambda result: result,
    "clusters": lambda result: result["profiles"] if result["available"] else pd.DataFrame(),
    "rfm": lambda result: result,
}
_TABLE_ANALYSIS = {"categories": "products"}


@exports.get("/<name>.csv")
def table_csv(name: str) -> Response | tuple[Response, int]:
    """The table of analysis ``name`` for the filters, as CSV (what a page shows)."""
    if name not in TABLES:
        return error_response(404, "not_found", f"no table {name!r}; tables: orders, {', '.join(TABLES)}")
    filters, _ = service.parse_request(request.args.to_dict(flat=False))
    return _csv(TABLES[name](service.run(_TABLE_ANALYSIS.get(name, name), filters)), f"{name}.csv")


@exports.get("/orders.xlsx")
def orders_xlsx() -> Response | tuple[Response, int]:
    """The filtered orders as one Excel sheet, or 422 when they do not fit in one."""
    filters, _ = service.parse_request(request.args.to_dict(flat=False))
    with current_engine().connect() as conn:
        matching = conn.execute(order_source(conn).select(filters, "orders")).scalar_one()
    if matching > EXCEL_MAX_DATA_ROWS:
        return error_response(
            422,
            "too_many_rows",
            f"{matching:,} orders match, but an Excel sheet holds at most {EXCEL_MAX_DATA_ROWS:,} rows. "
            "Narrow the filters, or download CSV (/export/orders.csv), which has no limit.",
        )
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Orders")
    columns, batches = _stream_orders(filters)
    sheet.append(list(columns))
    money = _money_cells(sheet, columns, service.money_format())
    for batch in batches:
        for row in batch:
            sheet.append(money(list(row)))
    return _send_workbook(workbook, "orders.xlsx")


@exports.get("/report.xlsx")
def report_xlsx() -> Response:
    """Every analysis for the filters as a formatted workbook."""
    filters, _ = service.parse_request(request.args.to_dict(flat=False))
    results = {name: service.run(name, filters) for name in REPORT_ANALYSES}
    with current_engine().connect() as conn:
        version = data_version(conn)
    workbook = build_report(filters, results, version, service.money_format())
    return _send_workbook(workbook, "report.xlsx")


REPORT_ANALYSES = ("kpis", "distribution", "segments", "regions", "products", "trend", "lifecycle", "cohorts",
                   "correlations")


def build_report(filters: Filters, results: dict[str, Any], version: str | None,
                 money: MoneyFormat = DEFAULT_FORMAT) -> Workbook:
    """The report workbook: Summary (filters, currency and KPIs: net revenue with its gross sales,
    returns and adjustments) first, then one sheet per analysis; money in ``money``'s currency."""
    workbook = Workbook()
    summary = workbook.active
    summary.title = "Summary"
    summary.append(["E-commerce BI report"])
    summary["A1"].font = Font(bold=True, size=14)
    summary.append(["Generated", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")])
    summary.append(["Data version", version or "(not loaded by bi-app)"])
    summary.append(["Currency", money.currency])
    for label, value in filters.describe():
        summary.append([label, value])
    summary.append([])
    kpis = results["kpis"]
    period = kpis["period"]
    summary.append(["Period", span_text(period["start"], period["end"])
                    + (f" (partial: the data ends on {period['through']})" if period["partial"] else "")])
    for label, span in (("Previous period", kpis["previous_period"]),
                        ("Same period last year", kpis["same_period_last_year"])):
        summary.append([label, span_text(span["start"], span["end"]) if span else "—"])
    summary.append(["Metric", "Value", "Previous period", "Change", "Same period last year", "Change vs last year"])
    header_row = summary.max_row
    money_rows = []
    for name in KPI_NAMES:  # named as in the API; "revenue" is net revenue (see the README's Measures)
        figure = kpis[name]
        summary.append([name, figure["value"], figure["previous"], figure["change"], figure["last_year"],
                        figure["change_last_year"]])
        if name in MONEY_KPIS:
            money_rows.append(summary.max_row)
    _style_table(summary, header_row, {"B": "#,##0.00", "C": "#,##0.00", "D": "0.0%", "E": "#,##0.00", "F": "0.0%"})
    for row in money_rows:
        for column in "BCE":
            summary[f"{column}{row}"].number_format = money.excel()

    distribution = results["distribution"]
    stats = pd.DataFrame(
        [(k, v) for k, v in distribution.items() if k != "histogram"], columns=["statistic", "value"]
    )
    trend = results["trend"]
    lifecycle = pd.DataFrame(list(results["lifecycle"].items()), columns=["metric", "value"])
    cohorts = results["cohorts"]
    matrix = (
        cohorts.pivot(index="cohort", columns="months_since_first", values="retention").reset_index()
        if not cohorts.empty
        else cohorts
    )
    sheets: list[tuple[str, list[pd.DataFrame]]] = [
        ("Distribution", [stats, pd.DataFrame(distribution["histogram"])]),
        ("Segments", [results["segments"]]),
        ("Regions", [results["regions"]]),
        ("Products", [results["products"]["products"]]),
        ("Categories", [results["products"]["categories"]]),
        ("Trend", [trend["monthly"], trend["quarterly"]]),
        ("Lifecycle", [lifecycle]),
        ("Cohorts", [matrix]),
        ("Correlations", [results["correlations"]]),
    ]
    for title, frames in sheets:
        sheet = workbook.create_sheet(title)
        for index, frame in enumerate(frames):
            if index:
                sheet.append([])
            _append_frame(sheet, frame, money, percent_values=title == "Cohorts")
    return workbook


_MONEY = {"revenue", "average_spend", "revenue_per_customer", "guest_revenue", "average_price", "estimated_margin",
          "moving_average_3", "bin_start", "bin_end", "gross_sales", "returns", "adjustments"}
#: Columns that mix money and other figures (the statistic/value and metric/value tables).
_NUMBERS = {"value", "previous"}
MONEY_KPIS = ("revenue", "gross_sales", "returns", "adjustments", "average_order_value")
_PERCENT = {"revenue_share", "customer_share", "growth", "retention", "change"}


def _append_frame(sheet, frame: pd.DataFrame, money: MoneyFormat, *, percent_values: bool = False  # noqa: ANN001
                  ) -> None:
    sheet.append([str(c) for c in frame.columns])
    header_row = sheet.max_row
    for record in frame.itertuples(index=False):
        sheet.append([_cell(v) for v in record])
    formats = {}
    for i, column in enumerate(frame.columns, start=1):
        letter = get_column_letter(i)
        if percent_values and i > 1 or column in _PERCENT:
            formats[letter] = "0.0%"
        elif column in _MONEY:
            formats[letter] = money.excel()
        elif column in _NUMBERS:
            formats[letter] = "#,##0.00"
    _style_table(sheet, header_row, formats)


def _style_table(sheet, header_row: int, formats: dict[str, str]) -> None:  # noqa: ANN001
    for cell in sheet[header_row]:
        cell.font = Font(bold=True)
    for letter, number_format in formats.items():
        for (cell,) in sheet[f"{letter}{header_row + 1}:{letter}{sheet.max_row}"]:
            if isinstance(cell.value, (int, float)):
                cell.number_format = number_format
    for column_cells in sheet.columns:
        width = max(len(str(c.value)) if c.value is not None else 0 for c in column_cells)
        sheet.column_dimensions[column_cells[0].column_letter].width = min(max(10, width + 2), 60)


#: Money columns of the orders and customers sheets (written with the data's currency format).
SHEET_MONEY = {*MONEY_COLUMNS, "total_spent", "average_order_value", "total_discounts"}


def _money_cells(sheet, columns: Iterable[str], money: MoneyFormat) -> Callable[[list], list]:  # noqa: ANN001
    """A function that turns a row's money values into cells formatted in ``money``'s currency."""
    positions = [i for i, name in enumerate(columns) if name in SHEET_MONEY]
    number_format = money.excel()

    def convert(values: list) -> list:
        for i in positions:
            if values[i] is not None:
                cell = WriteOnlyCell(sheet, value=float(values[i]))
                cell.number_format = number_format
                values[i] = cell
        return values

    return convert


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (dict, list)):
        return str(value)
    return value


def _stream_orders(filters: Filters) -> tuple[tuple[str, ...], Iterator[list[tuple]]]:
    """The stored order columns, and batches of matching rows from a server-side cursor."""
    with current_engine().connect() as conn:
        columns = stored_columns(conn)
    return columns, _batches(filters, columns)


def _batches(filters: Filters, columns: tuple[str, ...]) -> Iterator[list[tuple]]:
    key = [sales.c[name] for name in ("order_id", "line_number") if name in columns]
    with current_engine().connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=STREAM_BATCH_ROWS).execute(
            select(*[sales.c[name] for name in columns]).where(conditions(filters, sales)).order_by(*key)
        )
        yielded = False
        for batch in result.partitions():
            yielded = True
            yield batch
        if not yielded:
            yield []


def _chain(first: list[tuple], rest: Iterator[list[tuple]]) -> Iterator[list[tuple]]:
    yield first
    yield from rest


def _formatted(columns: tuple[str, ...], row: tuple) -> list[Any]:
    values = []
    for name, value in zip(columns, row):
        scale = _SCALES.get(name)
        if value is None:
            values.append("")
        elif scale is not None:
            values.append(_decimal_text(float(value), scale))
        elif hasattr(value, "isoformat"):
            values.append(value.isoformat()[:10] if name == "order_date" else value.isoformat())
        else:
            values.append(value)
    return values


def _decimal_text(value: float, scale: int) -> str:
    """``value`` with ``scale`` decimals, trailing zeros beyond the cents dropped (a price of 2.5500 is 2.55,
    one of 0.0650 is 0.065)."""
    text = f"{value:.{scale}f}"
    if scale <= 2:
        return text
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.rstrip('0').ljust(2, '0')}"


def _send_workbook(workbook: Workbook, filename: str) -> Response:
    spool = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)
    workbook.save(spool)
    spool.seek(0)
    return send_file(
        spool,
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        as_attachment=True,
        download_name=filename,
    )
