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
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pandas as pd
from flask import Blueprint, Response, g, jsonify, request, send_file, stream_with_context
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from sqlalchemy import Numeric
from sqlalchemy.exc import SQLAlchemyError

from bi_app import auth, service, summary
from bi_app.analytics.orders import KPI_NAMES, span_text
from bi_app.auth import message_page
from bi_app.busy import RETRY_AFTER_S, BusyError, WorkStopped, heavy_work
from bi_app.context import current_engine
from bi_app.errors import database_error_response, error_response
from bi_app.importing import upload_folder
from bi_app.incidents import reference_for
from bi_app.ml import strategy
from bi_app.money import DEFAULT_FORMAT, MoneyFormat
from bi_app.prepared import PreparedFile
from data_layer.engine import is_timeout
from data_layer.filters import FilterError, Filters
from data_layer.measures import order_line_batches, totals
from data_layer.meta import data_version, note_database_slow, stored_columns
from data_layer.schema import MONEY_COLUMNS, sales
from data_layer.stopping import checkpoint

log = logging.getLogger(__name__)

exports = Blueprint("exports", __name__, url_prefix="/export")

EXCEL_MAX_DATA_ROWS = 1_048_576 - 1  # one row of the sheet is the header
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
STREAM_BATCH_ROWS = 5_000
#: Rows written between two looks at whether the request must stop (:mod:`data_layer.stopping`).
CHECK_EVERY_ROWS = 10_000
_SCALES = {c.name: c.type.scale for c in sales.columns if isinstance(c.type, Numeric)}


@exports.errorhandler(FilterError)
def _bad_filter(exc: FilterError):  # noqa: ANN202
    return error_response(exc.status, "bad_parameter" if exc.status == 400 else "forbidden", exc.message,
                          parameter=exc.parameter)


@exports.errorhandler(BusyError)
def _busy(exc: BusyError):  # noqa: ANN202
    if _from_a_browser():
        return message_page(f"This download cannot start now: {exc}.", title="Busy", status=503)
    response, status = error_response(503, "busy", str(exc))
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response, status


@exports.errorhandler(WorkStopped)
def _stopped(exc: WorkStopped):  # noqa: ANN202 - its client may have gone: then no one reads this
    message = f"This download was stopped: {exc}. Narrow the filters, or try again when the server is less busy."
    if _from_a_browser():
        return message_page(message, title="Download stopped", status=503)
    return error_response(503, "stopped", message)


@exports.errorhandler(SQLAlchemyError)
def _database_down(exc: SQLAlchemyError):  # noqa: ANN202
    reference = reference_for(log, "Export: database error", exc)
    if is_timeout(exc):
        note_database_slow(current_engine())
    if _from_a_browser():
        what = "is too slow to answer right now" if is_timeout(exc) else "cannot be reached right now"
        return message_page(f"This download could not be made: the database {what}. Try again in a minute "
                            f"(reference {reference}: the details are in the server's log).",
                            title="Download not made", status=503)
    return database_error_response(exc, reference)


def _from_a_browser() -> bool:
    """A browser following a download link (it asks for HTML): it gets a page, not JSON."""
    return "text/html" in request.headers.get("Accept", "")


@exports.after_request
def _audit_download(response: Response) -> Response:
    """Record each download with its row count (the streamed orders CSV records itself once sent)."""
    if response.status_code == 200 and "download_rows" in g:
        auth.record("download", rows=g.download_rows)
    return response


@exports.get("/orders.csv")
def orders_csv() -> Response:
    """The filtered orders as CSV, streamed."""
    filters, _ = service.parse_request(request.args.to_dict(flat=False))
    columns, rows = _stream_orders(filters)
    first = next(rows)  # run the query now, so a database error is a 503, not a cut-off file

    def body() -> Iterator[str]:
        buffer = io.StringIO()
        buffer.write(BOM)
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        sent, complete = 0, False
        try:
            for batch in _chain(first, rows):
                writer.writerows(_formatted(columns, row) for row in batch)
                sent += len(batch)
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
            yield buffer.getvalue()
            complete = True
        finally:
            auth.record("download", rows=sent, detail="" if complete else "cut off: the client left")

    return Response(
        stream_with_context(body()),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="orders.csv"'},
    )


@exports.get("/customers.csv")
@heavy_work("downloads")
def customers_csv() -> Response:
    """Every matching customer with their cluster, RFM segment and churn probability, as CSV."""
    filters, _ = service.parse_request(request.args.to_dict(flat=False))
    return _csv(service.customer_list(filters), "customers.csv")


@exports.get("/customers.xlsx")
@heavy_work("downloads")
def customers_xlsx() -> Response | tuple[Response, int]:
    """The same customers as an Excel sheet (422 beyond a sheet's rows)."""
    filters, _ = service.parse_request(request.args.to_dict(flat=False))
    frame = service.customer_list(filters)
    if len(frame) > EXCEL_MAX_DATA_ROWS:
        return error_response(422, "too_many_rows", f"{len(frame):,} customers match, but an Excel sheet holds at "
                              f"most {EXCEL_MAX_DATA_ROWS:,} rows. Narrow the filters, or download CSV.")
    g.download_rows = len(frame)
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Customers")
    cells = _row_cells(sheet, frame.columns, service.money_format())
    sheet.append(list(frame.columns))
    for number, record in enumerate(frame.itertuples(index=False)):
        if number % CHECK_EVERY_ROWS == 0:
            checkpoint()
        sheet.append(cells(record))
    return _send_workbook(workbook, "customers.xlsx")


@exports.get("/targets/<name>.csv")
@heavy_work("downloads")
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
    g.download_rows = None
    # Absolute: Flask resolves a relative path against the app's package, not the working directory.
    return send_file(found[0].resolve(), mimetype="text/csv", as_attachment=True, download_name=f"import-{kind}.csv")


def _csv(frame: pd.DataFrame, filename: str) -> Response:
    g.download_rows = len(frame)
    safe = frame.copy()
    for name in frame.select_dtypes(include=["object", "string"]).columns:
        safe[name] = frame[name].map(csv_text)
    for name in frame.select_dtypes(include="float").columns:
        safe[name] = frame[name] + 0.0  # -0.0 (a rounded tiny negative) is written 0.0
    return Response(BOM + safe.to_csv(index=False), mimetype="text/csv",
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


#: Orders up to this many are written while the request waits (seconds); more are prepared in the background
#: and the browser comes back for the file (a million lines took 226 s to write: past any proxy's timeout).
XLSX_AT_ONCE_ORDERS = 20_000
#: Lines of an orders workbook written per second here: what the waiting page announces.
XLSX_LINES_PER_S = 4_400
#: Seconds between two looks of the waiting page (and an API client's Retry-After).
PREPARING_RETRY_S = 5


@exports.get("/orders.xlsx")
def orders_xlsx() -> Response | tuple[Response, int] | tuple[str, int]:
    """The filtered orders as one Excel sheet, or 422 when they do not fit in one. A large one is prepared in
    the background: 202 and a page that looks again every few seconds (``wait=1``), then offers the file;
    the same address serves it once it is ready."""
    query = request.args.to_dict(flat=False)
    waiting = query.pop("wait", None) is not None
    filters, _ = service.parse_request(query)
    with current_engine().connect() as conn:
        matching = int(totals(conn, filters, ("orders",))["orders"])
        version = data_version(conn)
    if matching > EXCEL_MAX_DATA_ROWS:
        return error_response(
            422,
            "too_many_rows",
            f"{matching:,} orders match, but an Excel sheet holds at most {EXCEL_MAX_DATA_ROWS:,} rows. "
            "Narrow the filters, or download CSV (/export/orders.csv), which has no limit.",
        )
    if matching <= XLSX_AT_ONCE_ORDERS:
        with heavy_work("downloads"):
            spool = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115 - send_file closes it
            g.download_rows = write_orders_workbook(filters, spool)
            spool.seek(0)
        return send_file(spool, mimetype=XLSX_TYPE, as_attachment=True, download_name="orders.xlsx")
    prepared = PreparedFile.of("orders.xlsx", version, filters.cache_key())
    address = f"{request.path}?{urlencode([(k, v) for k, values in query.items() for v in values])}"
    rows = prepared.rows()
    if rows is not None and waiting:
        return message_page(f"orders.xlsx is ready: {rows:,} lines.", title="Download ready",
                            link=(address, "Download orders.xlsx"))
    if rows is not None:
        g.download_rows = rows
        return send_file(prepared.path, mimetype=XLSX_TYPE, as_attachment=True, download_name="orders.xlsx")
    if waiting and prepared.failure() and not prepared.building():
        return message_page(f"orders.xlsx could not be prepared (reference {prepared.failure()}: the details are "
                            "in the server's log). Try again, or download the same orders as CSV, which streams "
                            "at once.", title="Download failed", status=500,
                            link=(address.replace("/orders.xlsx", "/orders.csv", 1), "Download orders.csv"))
    if not prepared.building():
        prepared.start(lambda path: write_orders_workbook(filters, path))
    seconds = matching * 1.2 / XLSX_LINES_PER_S  # about 1.2 lines an order in the shops we saw
    expected = "less than a minute" if seconds < 60 else f"about {max(1, round(seconds / 60))} minutes"
    if _from_a_browser():
        return message_page(f"Preparing orders.xlsx: {matching:,} orders, {expected}. This page looks again every "
                            "few seconds and offers the file when it is ready; you may leave it and come back by the "
                            "same link.", title="Preparing the download", status=202,
                            refresh=(PREPARING_RETRY_S, f"{address}&wait=1"))
    response = jsonify(status="preparing", orders=matching, retry_after_s=PREPARING_RETRY_S,
                       message=f"orders.xlsx is being prepared ({matching:,} orders, {expected}); ask the same address "
                               "again after Retry-After seconds: it answers 200 with the file once it is ready")
    response.headers["Retry-After"] = str(PREPARING_RETRY_S)
    return response, 202


def write_orders_workbook(filters: Filters, target: Any) -> int:
    """The orders of ``filters`` as one Excel sheet (streamed from the database, written as they come) into
    ``target`` (a path or a binary file); the number of lines written."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Orders")
    columns, batches = _stream_orders(filters)
    cells = _row_cells(sheet, columns, service.money_format())
    sheet.append(list(columns))
    written = 0
    for batch in batches:
        checkpoint()
        for row in batch:
            sheet.append(cells(row))
        written += len(batch)
    workbook.save(target)
    return written


@exports.get("/summary.pdf")
@heavy_work("downloads")
def summary_pdf() -> Response:
    """The executive summary of the filters (within the user's scope) as a one-page A4 PDF."""
    filters, _ = service.parse_request(request.args.to_dict(flat=False))
    made = summary.executive_summary(filters)
    page = summary.summary_html(made, summary.dashboard_link(filters, request.host_url))
    g.download_rows = None  # a page of summaries: no one count of rows
    with tempfile.TemporaryDirectory(prefix="bi-summary-") as folder:
        path = Path(folder) / "summary.pdf"
        summary.summary_pdf(page, path)
        content = io.BytesIO(path.read_bytes())
    return send_file(content, mimetype="application/pdf", as_attachment=True, download_name="summary.pdf")


@exports.errorhandler(summary.SummaryError)
def _not_printed(exc: summary.SummaryError):  # noqa: ANN202
    reference = reference_for(log, "Summary not printed", exc)
    message = (f"The summary could not be made as a PDF on this server (reference {reference}: the details are in "
               "the server's log). The Overview shows the same figures.")
    if _from_a_browser():
        return message_page(message, title="Summary not made", status=503)
    return error_response(503, "not_printed", message)


@exports.get("/report.xlsx")
@heavy_work("downloads")
def report_xlsx() -> Response:
    """Every analysis for the filters as a formatted workbook."""
    filters, _ = service.parse_request(request.args.to_dict(flat=False))
    results = {}
    for name in REPORT_ANALYSES:
        checkpoint()
        results[name] = service.run(name, filters)
    with current_engine().connect() as conn:
        version = data_version(conn)
    workbook = build_report(filters, results, version, service.money_format())
    g.download_rows = None  # a workbook of summaries: no one count of rows
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
    summary.append(["Generated", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")])
    summary.append(["Data version", version or "(not loaded by bi-app)"])
    summary.append(["Currency", money.currency])
    for label, value in filters.describe():
        summary.append([label, _xlsx_cell(summary, value)])
    summary.append([])
    kpis = results["kpis"]
    period = kpis["period"]
    summary.append(["Period", span_text(period["start"], period["end"])
                    + (f" (partial: the data ends on {period['through']})" if period["partial"] else "")])
    for label, span in (("Previous period", kpis["previous_period"]),
                        ("Same period last year", kpis["same_period_last_year"])):
        summary.append([label, span_text(span["start"], span["end"]) if span else "—"])
    summary.append(["Metric", "Value", "Previous period", "Change", "Same period last year", "Change vs last year"])
    _bold(summary[summary.max_row])
    for name in KPI_NAMES:  # named as in the API; "revenue" is net revenue (see the README's Measures)
        figure = dict(kpis[name])
        for span, value, change in (("previous", "previous", "change"), ("last_year", "last_year", "change_last_year")):
            if not kpis["orders"][span]:  # no orders then: nothing to compare, as the page says
                figure[value] = figure[change] = "—"
        value_format, change_format = number_format(name, money), number_format("change", money)
        summary.append([name, *(_xlsx_cell(summary, figure[key], f) for key, f in (
            ("value", value_format), ("previous", value_format), ("change", change_format),
            ("last_year", value_format), ("change_last_year", change_format)))])
    _fit_columns(summary)

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
        _fit_columns(sheet)
    return workbook


#: Figures written in the data's currency.
_MONEY = {"revenue", "average_spend", "revenue_per_customer", "guest_revenue", "average_price", "estimated_margin",
          "moving_average_3", "bin_start", "bin_end", "gross_sales", "returns", "adjustments", "average_order_value",
          "total_spent", "total_discounts", "average_spent", "revenue_at_risk",
          *MONEY_COLUMNS,
          # order-value statistics (the Distribution sheet)
          "mean", "std", "min", "max", "q1", "median", "q3", "q95"}
_PERCENT = {"growth", "retention", "change", "change_last_year", "q4_vs_q1"}
_COUNTS = {"orders", "customers", "units", "pairs", "cohort_size", "months_since_first", "churn_days", "order_count",
           "total_items", "cluster", "r_score", "f_score", "m_score", "quantity", "line_number"}
_RATIOS = {"correlation", "skewness", "kurtosis", "discount_order_size_correlation", "pc1", "pc2"}


def number_format(name: str, money: MoneyFormat) -> str:
    """The Excel number format of a figure named ``name`` (a column, or a metric in a name/value table):
    money in ``money``'s currency, shares and changes as percentages, counts as whole numbers."""
    if name in _PERCENT or name.endswith(("_rate", "_share", "_probability")):
        return "0.0%"
    if name in _MONEY:
        return money.excel()
    if name in _COUNTS or name.endswith(("_customers", "_orders")):
        return "#,##0"
    if name.endswith("_days"):
        return "#,##0.0"
    if name in _RATIOS:
        return "0.000"
    return "#,##0.00"


#: What a spreadsheet reads as the start of a formula (OWASP's list for CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: A UTF-8 byte-order mark: CSVs start with it, so that Excel reads accented names as UTF-8
#: (pandas, Python's csv with ``utf-8-sig``, and bi-app import skip it).
BOM = "\ufeff"


def csv_text(value: Any) -> Any:
    """A CSV field: text that a spreadsheet would run as a formula is led by an apostrophe (as OWASP
    advises), so it shows as text; anything else as it is."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def _xlsx_cell(sheet, value: Any, number_format: str | None = None) -> Any:  # noqa: ANN001
    """A sheet cell's content: text always a text cell (never a formula) without the control characters
    a sheet cannot hold, numbers in ``number_format``, empty for None and NaN."""
    value = _plain(value)
    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
        if not value.startswith("="):  # openpyxl reads "=..." as a formula; anything else stays text
            return value
        cell = WriteOnlyCell(sheet, value=value)
        cell.data_type = "s"
        return cell
    if number_format and isinstance(value, (int, float)) and not isinstance(value, bool):
        cell = WriteOnlyCell(sheet, value=value)
        cell.number_format = number_format
        return cell
    return value


def _append_frame(sheet, frame: pd.DataFrame, money: MoneyFormat, *, percent_values: bool = False  # noqa: ANN001
                  ) -> None:
    """``frame`` under a bold header; each column in its number format (a name/value table: each row
    in its name's; the cohort matrix: percentages)."""
    sheet.append([str(c) for c in frame.columns])
    _bold(sheet[sheet.max_row])
    keyed = list(frame.columns)[1:] == ["value"]
    formats = [None if i == 0 else "0.0%" if percent_values else number_format(str(c), money)
               for i, c in enumerate(frame.columns)]
    for record in frame.itertuples(index=False):
        row_formats = [None, number_format(str(record[0]), money)] if keyed else formats
        sheet.append([_xlsx_cell(sheet, v, f) for v, f in zip(record, row_formats, strict=True)])


def _bold(cells) -> None:  # noqa: ANN001
    for cell in cells:
        cell.font = Font(bold=True)


def _fit_columns(sheet) -> None:  # noqa: ANN001
    for column_cells in sheet.columns:
        width = max(len(str(c.value)) if c.value is not None else 0 for c in column_cells)
        sheet.column_dimensions[column_cells[0].column_letter].width = min(max(10, width + 2), 60)


def _row_cells(sheet, columns: Iterable[str], money: MoneyFormat) -> Callable[[Iterable], list]:  # noqa: ANN001
    """A function that turns a row of the orders or customers sheet into its cells: money in ``money``'s
    currency, rates and shares as percentages, text never a formula. The sheet (write-only: set before its
    first row) keeps its header in view and gives each column room for its name."""
    columns = list(columns)
    sheet.freeze_panes = "A2"
    for index, name in enumerate(columns, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = max(12, len(name) + 2)
    formats = [number_format(name, money) if name in _MONEY or name.endswith(("_probability", "_rate", "_share"))
               else None for name in columns]
    return lambda values: [_xlsx_cell(sheet, v, f) for v, f in zip(values, formats, strict=True)]


def _plain(value: Any) -> Any:
    """A Python value for a cell: numpy scalars as numbers, Decimal as float, NaN as None."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (dict, list)):
        return str(value)
    return value


def _stream_orders(filters: Filters) -> tuple[tuple[str, ...], Iterator[Sequence[Any]]]:
    """The stored order columns, and batches of matching rows from a server-side cursor."""
    with current_engine().connect() as conn:
        columns = stored_columns(conn)
    return columns, _batches(filters, columns)


def _batches(filters: Filters, columns: tuple[str, ...]) -> Iterator[Sequence[Any]]:
    with current_engine().connect() as conn:
        yielded = False
        for batch in order_line_batches(conn, filters, columns, STREAM_BATCH_ROWS):
            yielded = True
            yield batch
        if not yielded:
            yield []


def _chain(first: Sequence[Any], rest: Iterator[Sequence[Any]]) -> Iterator[Sequence[Any]]:
    yield first
    yield from rest


def _formatted(columns: tuple[str, ...], row: tuple) -> list[Any]:
    values = []
    for name, value in zip(columns, row, strict=True):
        scale = _SCALES.get(name)
        if value is None:
            values.append("")
        elif scale is not None:
            values.append(_decimal_text(float(value), scale))
        elif hasattr(value, "isoformat"):
            values.append(value.isoformat()[:10] if name == "order_date" else value.isoformat())
        else:
            values.append(csv_text(value))
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
    spool = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115 - send_file closes it
    workbook.save(spool)
    spool.seek(0)
    return send_file(spool, mimetype=XLSX_TYPE, as_attachment=True, download_name=filename)
