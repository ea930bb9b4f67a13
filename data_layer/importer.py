"""Importing a shop's own orders from CSV or XLSX: read, map columns, validate, normalise.

The pipeline is plain functions: :func:`read_table` (any common delimiter,
UTF-8 with or without BOM or Latin-1, ``.gz``, or the first sheet of an
XLSX) -> :func:`auto_mapping` (source columns to our fields by name) ->
:func:`validate` (every row either becomes an order line or is rejected with
its line number, column and reason) -> :func:`data_layer.loader.load_orders`.

Rules (also in the README):

- Required: order id, order date, product, and either an amount or quantity
  and unit price. Several lines with one order id are one order.
- A line without a customer id is a guest checkout: counted in revenue and
  orders, never as a customer.
- Missing region, segment or category become "Unknown"; missing satisfaction
  stays empty; missing discount and shipping are 0; subtotal, weekday, month,
  quarter, weekend and holiday season are computed.
- Returns and cancellations (a negative quantity or amount, an order id
  starting with "C" followed by a digit, as in UCI-style exports, or a status
  of cancelled/returned/refunded) are not revenue: they are left out and listed
  in the report, without failing the import. So are exact duplicate rows.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from data_layer.schema import SALES_COLUMNS

#: Fields a source column can be mapped to; the first four groups are required.
FIELDS = (
    "order_id", "order_date", "product", "customer_id", "quantity", "unit_price", "total_amount", "subtotal",
    "category", "region", "customer_segment", "satisfaction_rating", "discount_rate", "discount_amount",
    "shipping_cost", "status",
)
#: Names (lower case, letters and digits only) recognised for each field.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "order_id": ("orderid", "invoiceno", "invoice", "invoiceid", "invoicenumber", "ordernumber", "orderno", "order"),
    "order_date": ("orderdate", "invoicedate", "date", "purchasedate", "orderdatetime", "createdat", "datetime"),
    "product": ("product", "productname", "description", "item", "itemname", "itemdescription", "title"),
    "customer_id": ("customerid", "customer", "customerno", "customernumber", "clientid", "buyerid", "userid"),
    "quantity": ("quantity", "qty", "units", "count"),
    "unit_price": ("unitprice", "price", "itemprice", "priceeach", "unitcost"),
    "total_amount": ("totalamount", "total", "amount", "linetotal", "revenue", "sales", "totalprice", "value"),
    "subtotal": ("subtotal",),
    "category": ("category", "productcategory", "department", "productline", "productgroup"),
    "region": ("region", "country", "state", "area", "territory", "market"),
    "customer_segment": ("customersegment", "segment", "customertype", "tier"),
    "satisfaction_rating": ("satisfactionrating", "satisfaction", "rating", "reviewscore", "score"),
    "discount_rate": ("discountrate", "discountpercent", "discountpct"),
    "discount_amount": ("discountamount", "discount"),
    "shipping_cost": ("shippingcost", "shipping", "freight", "delivery"),
    "status": ("status", "orderstatus", "state_"),
}
DELIMITERS = ",;\t|"
UNKNOWN = "Unknown"
#: Longest text each field may hold (the table's column sizes).
MAX_LENGTH = {"order_id": 20, "customer_id": 20, "product": 50, "category": 50, "region": 20,
              "customer_segment": 20}
CANCELLED = re.compile(r"cancel|return|refund", re.I)
EARLIEST = date(1990, 1, 1)


class ImportError_(ValueError):
    """The file cannot be imported at all (unreadable, or a required field has no column)."""


@dataclass
class SourceTable:
    """A file's rows as text (cells stripped), with the line of the file each row starts on."""

    frame: pd.DataFrame
    line_numbers: np.ndarray
    encoding: str
    delimiter: str | None

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)

    @property
    def row_count(self) -> int:
        return len(self.frame)

    def rows_at(self, lines: Iterable[int]) -> dict[int, list[str]]:
        """The cells of the rows starting on ``lines``."""
        position = {int(line): i for i, line in enumerate(self.line_numbers)}
        return {line: self.frame.iloc[position[line]].tolist() for line in lines}


@dataclass
class Rejected:
    """One row left out: its line in the file, the column at fault and why."""

    line: int
    column: str
    reason: str
    blocking: bool = True  # an error (the file fails without --skip-invalid), not a rule like returns


@dataclass
class Validation:
    """The outcome of validating a file: the order lines to write and every rejected row."""

    lines: pd.DataFrame
    rejected: list[Rejected] = field(default_factory=list)
    rows_in: int = 0

    @property
    def errors(self) -> list[Rejected]:
        return [r for r in self.rejected if r.blocking]

    @property
    def guests(self) -> int:
        return int(self.lines["customer_id"].isna().sum()) if len(self.lines) else 0

    def summary(self) -> str:
        """One sentence: rows in, valid, invalid, left out by rule, guest lines."""
        errors = len(self.errors)
        return (f"{self.rows_in:,} rows: {len(self.lines):,} valid, {errors:,} invalid, "
                f"{len(self.rejected) - errors:,} left out by rule (returns, cancellations, duplicates); "
                f"{self.guests:,} guest lines (no customer id)")

    def to_arrow(self) -> pa.Table:
        """The lines as the loader takes them."""
        frame = self.lines[list(SALES_COLUMNS)]
        table = pa.Table.from_pandas(frame, preserve_index=False)
        return table.set_column(table.schema.get_field_index("order_date"), "order_date",
                                pc.cast(table.column("order_date"), pa.date32()))


def read_table(path: Path) -> SourceTable:
    """The rows of a CSV (optionally gzipped) or the first sheet of an XLSX file, as text."""
    name = path.name.lower()
    if name.endswith((".xlsx", ".xlsm")):
        return _read_xlsx(path)
    try:
        raw = gzip.open(path, "rb").read() if name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise ImportError_(f"cannot read {path.name}: {exc}") from None
    encoding = "utf-8"
    try:
        text = raw.decode("utf-8-sig")
        data = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
    except UnicodeDecodeError:
        encoding, text = "latin-1", raw.decode("latin-1")  # every byte is a Latin-1 character
        data = text.encode("utf-8")
    if not text.strip():
        raise ImportError_("the file is empty")
    sample = text[:65536]
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        delimiter = max(DELIMITERS, key=lambda d: sample.split("\n", 1)[0].count(d))
    fast = _read_with_arrow(data, delimiter)
    frame, lines = fast if fast is not None else _read_with_csv_module(text, delimiter)
    return SourceTable(frame, lines, encoding, delimiter)


def _read_with_arrow(data: bytes, delimiter: str) -> tuple[pd.DataFrame, np.ndarray] | None:
    """Arrow's CSV reader (fast), or None when its rows cannot be tied to lines of the file:
    a value holding a line break, or a row with more or fewer cells than the header."""
    lines = non_blank_lines(data)
    if not len(lines):
        return None
    first_line = data[: _line_end(data)].decode("utf-8")
    header = next(csv.reader([first_line], delimiter=delimiter), [])
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            # Every cell as text: inferring types would turn an id such as 007 into 7.
            convert_options=pacsv.ConvertOptions(strings_can_be_null=False, quoted_strings_can_be_null=False,
                                                 column_types={name: pa.string() for name in header},
                                                 auto_dict_encode=False),
            read_options=pacsv.ReadOptions(autogenerate_column_names=False, block_size=1 << 24),
        )
    except pa.ArrowInvalid:
        return None
    # A value holding a line break spreads its row over two or more non-blank lines (its opening
    # and its closing quote), so rows are the non-blank lines after the header exactly when
    # there are as many of them.
    if len(lines) - 1 != table.num_rows or not all(pa.types.is_string(c.type) for c in table.columns):
        return None
    columns = [pc.utf8_trim_whitespace(column) for column in table.columns]
    names = _unique([name.strip() for name in table.column_names])
    frame = pa.table(columns, names=names).to_pandas(types_mapper=lambda t: pd.StringDtype("pyarrow"))
    return frame, lines[1:]


def non_blank_lines(data: bytes) -> np.ndarray:
    r"""1-based numbers of the lines of ``data`` holding more than spaces and control characters
    (a line ends at \n, \r\n or a lone \r, as Python's csv module counts them)."""
    octets = np.frombuffer(data, dtype=np.uint8)
    if not len(octets):
        return np.zeros(0, dtype=np.int64)
    if data.count(b"\r") == data.count(b"\r\n"):  # no lone \r: lines end at \n (the common case, faster)
        ends = np.flatnonzero(octets == 10)
    else:
        newline, carriage = octets == 10, octets == 13
        line_end = newline.copy()
        line_end[:-1] |= carriage[:-1] & ~newline[1:]
        ends = np.flatnonzero(line_end)
    starts = np.concatenate(([0], ends + 1))
    starts = starts[starts < len(octets)]
    content = octets > 32  # not a space, tab, line end or other control character
    # Every segment holds at least one byte (its line end), so reduceat sees each line whole.
    filled = np.logical_or.reduceat(content, starts)
    return np.flatnonzero(filled) + 1


def _line_end(data: bytes) -> int:
    ends = [i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0]
    return min(ends) if ends else len(data)


def _read_with_csv_module(text: str, delimiter: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Python's csv reader: slower, but it knows where a row with a line break in a value starts."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows, lines = [], []
    start = 1
    for record in reader:
        if not any(cell.strip() for cell in record):  # blank line
            start = reader.line_num + 1
            continue
        if header is None:
            header = [cell.strip() for cell in record]
        else:
            rows.append([cell.strip() for cell in record])
            lines.append(start)
        start = reader.line_num + 1
    if header is None:
        raise ImportError_("the file is empty")
    width = len(header)
    rows = [row[:width] + [""] * (width - len(row)) for row in rows]
    frame = pd.DataFrame(rows, columns=_unique(header), dtype=pd.StringDtype("pyarrow"))
    return frame, np.asarray(lines, dtype=np.int64)


def _read_xlsx(path: Path) -> SourceTable:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable workbook
        raise ImportError_(f"not a readable XLSX file ({exc})") from None
    sheet = workbook.worksheets[0]
    header: list[str] | None = None
    rows, lines = [], []
    for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
        cells = ["" if v is None else _cell_text(v) for v in values]
        if not any(c.strip() for c in cells):
            continue
        if header is None:
            header = [c.strip() for c in cells]
        else:
            rows.append([c.strip() for c in cells[: len(header)]] + [""] * max(0, len(header) - len(cells)))
            lines.append(number)
    workbook.close()
    if header is None:
        raise ImportError_("the first sheet is empty")
    frame = pd.DataFrame(rows, columns=_unique(header), dtype=pd.StringDtype("pyarrow"))
    return SourceTable(frame, np.asarray(lines, dtype=np.int64), "xlsx", None)


def _cell_text(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for index, name in enumerate(names):
        name = name or f"column_{index + 1}"
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def auto_mapping(columns: Iterable[str]) -> dict[str, str]:
    """Our field -> source column, matched by name (each column used once, exact names first)."""
    columns = list(columns)
    mapping: dict[str, str] = {}
    for field_name in FIELDS:
        for synonym in (_key(field_name), *SYNONYMS[field_name]):
            match = next((c for c in columns if _key(c) == synonym and c not in mapping.values()), None)
            if match:
                mapping[field_name] = match
                break
    return mapping


def check_mapping(mapping: dict[str, str], columns: Iterable[str]) -> None:
    """Raise :class:`ImportError_` naming what is missing or unknown in ``mapping``."""
    columns = set(columns)
    unknown_fields = sorted(set(mapping) - set(FIELDS))
    if unknown_fields:
        raise ImportError_(f"unknown field(s) {', '.join(unknown_fields)}; fields: {', '.join(FIELDS)}")
    missing_columns = sorted(c for c in mapping.values() if c not in columns)
    if missing_columns:
        raise ImportError_(f"no column {', '.join(map(repr, missing_columns))} in the file; "
                           f"columns: {', '.join(sorted(columns))}")
    required = [f for f in ("order_id", "order_date", "product") if f not in mapping]
    if "total_amount" not in mapping and not {"quantity", "unit_price"} <= set(mapping):
        required.append("total_amount (or quantity and unit_price)")
    if required:
        raise ImportError_(f"no column for {', '.join(required)}; map one with --map COLUMN=FIELD")


def validate(source: SourceTable, mapping: dict[str, str], *, latest: date | None = None) -> Validation:
    """Turn the mapped rows into order lines; reject each row that cannot be one, saying why."""
    check_mapping(mapping, source.columns)
    frame = source.frame
    n = len(frame)
    line = source.line_numbers
    latest = latest or date.today().replace(year=date.today().year + 1)
    out = _Outcome(n, line, mapping)

    blank = pd.Series("", index=frame.index, dtype=pd.StringDtype("pyarrow"))

    def text(name: str) -> pd.Series:  # cells come stripped from read_table
        return frame[mapping[name]].fillna("") if name in mapping else blank

    order_id, product, customer = text("order_id"), text("product"), text("customer_id")
    out.reject(order_id == "", "order_id", "missing order id")
    out.reject(product == "", "product", "missing product")
    for name, values in (("order_id", order_id), ("product", product), ("customer_id", customer)):
        out.reject(values.str.len() > MAX_LENGTH[name], name, f"longer than {MAX_LENGTH[name]} characters")

    raw_dates = text("order_date")
    when = parse_dates(raw_dates)
    out.reject(raw_dates == "", "order_date", "missing order date")
    out.reject(when.isna() & (raw_dates != ""), "order_date", lambda i: f"unparseable date {raw_dates.iloc[i]!r}")
    out.reject((when < pd.Timestamp(EARLIEST)) | (when > pd.Timestamp(latest)), "order_date",
               lambda i: f"date {raw_dates.iloc[i]!r} outside {EARLIEST} .. {latest}")

    numbers = {}
    for name in ("quantity", "unit_price", "total_amount", "subtotal", "satisfaction_rating", "discount_rate",
                 "discount_amount", "shipping_cost"):
        if name not in mapping:
            numbers[name] = pd.Series(np.nan, index=frame.index)
            continue
        raw = text(name)
        parsed = parse_numbers(raw, decimal_comma=source.delimiter == ";", percent=name == "discount_rate")
        out.reject(parsed.isna() & (raw != ""), name, lambda i, raw=raw, name=name: f"non-numeric {name} {raw.iloc[i]!r}")
        numbers[name] = parsed
    quantity = numbers["quantity"] if "quantity" in mapping else pd.Series(np.ones(n))
    out.reject(quantity.notna() & (quantity != quantity.round()), "quantity", "quantity must be a whole number")
    status = text("status")
    is_return = ((quantity < 0) | (numbers["total_amount"] < 0) | order_id.str.match(r"^[Cc]\d")
                 | status.str.contains(CANCELLED))
    out.exclude(is_return, "order_id", "return or cancellation: kept out of revenue")
    out.reject(quantity == 0, "quantity", "quantity is 0")
    amount_given = numbers["total_amount"].notna() | (numbers["unit_price"].notna() & quantity.notna())
    out.reject(~amount_given, mapping.get("total_amount", "total_amount"), "no amount (nor quantity and unit price)")
    rating = numbers["satisfaction_rating"]
    out.reject((rating < 1) | (rating > 5), "satisfaction_rating", "satisfaction outside 1..5")
    rate = numbers["discount_rate"]
    out.reject((rate < 0) | (rate >= 1), "discount_rate", "discount rate outside 0..100%")
    for name in ("unit_price", "subtotal", "discount_amount", "shipping_cost"):
        out.reject(numbers[name] < 0, name, f"negative {name}")

    # Only lines of an order id that repeats can be copies, or need a line number beyond 1.
    repeated = order_id.duplicated(keep=False)
    copies = _earlier_copies(frame[repeated], [mapping["order_id"], mapping["product"]])
    if len(copies):
        out.exclude(pd.Series(frame.index.isin(copies.index), index=frame.index), "order_id",
                    lambda i: f"duplicate of line {line[copies[i]]}")

    amounts = resolve_amounts(quantity, numbers)
    out.reject(amounts["inconsistent"], mapping.get("total_amount", "total_amount"),
               "amounts do not add up (total = quantity x unit price - discount + shipping)")
    keep = ~out.dropped
    lines = _order_lines(keep, order_id, customer, product, when, amounts, numbers, text,
                         several_lines=bool(repeated.any()))
    return Validation(lines=lines, rejected=sorted(out.rejected, key=lambda r: r.line), rows_in=n)


def _earlier_copies(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """For each row equal in every cell to an earlier row of ``frame``: the position of the first such row.

    Only rows whose ``keys`` cells repeat together can be copies, so the cell-by-cell
    comparison runs on those alone (few, even with many lines per order).
    """
    if frame.empty:
        return pd.Series(dtype=np.int64)
    candidates = frame[frame[keys].duplicated(keep=False)]
    if candidates.empty:
        return pd.Series(dtype=np.int64)
    group = candidates.groupby(list(candidates.columns), sort=False, dropna=False).ngroup()
    first = pd.Series(candidates.index, index=candidates.index).groupby(group).transform("first")
    return first[first != first.index]


class _Outcome:
    """Which rows are dropped so far, and why (each row is reported once, for its first fault)."""

    def __init__(self, n: int, line: np.ndarray, mapping: dict[str, str]) -> None:
        self.dropped = pd.Series(np.zeros(n, dtype=bool))
        self.line = line
        self.mapping = mapping
        self.rejected: list[Rejected] = []

    def reject(self, mask: pd.Series, field_name: str, reason, blocking: bool = True) -> None:  # noqa: ANN001
        new = mask.fillna(False).astype(bool) & ~self.dropped
        column = self.mapping.get(field_name, field_name)
        for i in np.flatnonzero(new.to_numpy()):
            self.rejected.append(Rejected(int(self.line[i]), column, reason(i) if callable(reason) else reason, blocking))
        self.dropped |= new

    def exclude(self, mask: pd.Series, field_name: str, reason) -> None:  # noqa: ANN001
        self.reject(mask, field_name, reason, blocking=False)


def resolve_amounts(quantity: pd.Series, numbers: dict[str, pd.Series]) -> pd.DataFrame:
    """Quantity, unit price, subtotal, discount (and rate), shipping and total of each line, each
    from its column or, when the file has none, from the others.

    With an amount and quantity x unit price but no discount or shipping column, the
    difference is a discount (amount below) or shipping (amount above). A line whose given
    amounts cannot add up is marked ``inconsistent``.
    """
    q = quantity.fillna(1.0)
    price, given_subtotal, total = numbers["unit_price"], numbers["subtotal"], numbers["total_amount"]
    rate, discount, shipping = numbers["discount_rate"], numbers["discount_amount"], numbers["shipping_cost"]
    subtotal = given_subtotal.fillna((q * price).round(2))
    discount = discount.fillna((subtotal * rate).round(2))
    only_total = subtotal.isna()
    subtotal = subtotal.fillna((total + discount.fillna(0.0) - shipping.fillna(0.0)).round(2))
    gap = (subtotal - total).round(2)  # = discount - shipping, where both amounts are known
    both_unknown = discount.isna() & shipping.isna() & total.notna() & ~only_total
    discount = discount.where(~both_unknown, gap.clip(lower=0))
    shipping = shipping.where(~both_unknown, (-gap).clip(lower=0))
    discount = discount.fillna((gap + shipping).where(total.notna())).fillna(0.0)
    shipping = shipping.fillna((discount - gap).where(total.notna())).fillna(0.0)
    total = total.fillna(subtotal - discount + shipping).round(2)
    rate = rate.fillna((discount / subtotal.where(subtotal > 0)).fillna(0.0)).round(4)
    price = price.fillna((subtotal / q).round(2))
    inconsistent = ((total - (subtotal - discount + shipping)).abs() > 0.005) | (discount < -0.005) \
        | (shipping < -0.005) | ((discount - subtotal * rate).abs() > 0.015 + subtotal.abs() * 0.00005) \
        | ((subtotal - q * price).abs() > 0.005 * q.abs())
    return pd.DataFrame({"quantity": q, "unit_price": price.round(2), "subtotal": subtotal.round(2),
                         "discount_rate": rate, "discount_amount": discount.round(2),
                         "shipping_cost": shipping.round(2), "total_amount": total,
                         "inconsistent": inconsistent.fillna(False)})


def _order_lines(keep, order_id, customer, product, when, amounts, numbers, text, *,  # noqa: ANN001
                 several_lines: bool) -> pd.DataFrame:
    kept = amounts[keep]
    day = when[keep]
    month = day.dt.month
    frame = pd.DataFrame({
        "order_id": order_id[keep],
        "customer_id": customer[keep].replace("", None),
        "order_date": day,  # midnight of the day; a date in to_arrow
        "category": text("category")[keep].replace("", UNKNOWN),
        "product": product[keep],
        "quantity": kept["quantity"].astype(np.int64),
        "unit_price": kept["unit_price"],
        "subtotal": kept["subtotal"],
        "discount_rate": kept["discount_rate"],
        "discount_amount": kept["discount_amount"],
        "shipping_cost": kept["shipping_cost"],
        "total_amount": kept["total_amount"],
        "region": text("region")[keep].replace("", UNKNOWN).str.slice(0, MAX_LENGTH["region"]),
        "customer_segment": text("customer_segment")[keep].replace("", UNKNOWN).str.slice(0, 20),
        "satisfaction_rating": numbers["satisfaction_rating"][keep].round(1),
        "day_of_week": day.dt.day_name(),
        "month": month.astype(np.int64),
        "quarter": "Q" + ((month - 1) // 3 + 1).astype(str),
        "is_weekend": (day.dt.day_of_week >= 5).astype(np.int64),
        "is_holiday_season": (month >= 11).astype(np.int64),
    })
    frame["line_number"] = frame.groupby("order_id", sort=False).cumcount() + 1 if several_lines else 1
    return frame.reset_index(drop=True)


def parse_dates(values: pd.Series) -> pd.Series:
    """Dates in ISO form or day/month/year or month/day/year, with or without a time.

    Day-first when some date in the file can only be read that way (a first
    number above 12); otherwise month-first, as US exports write them.
    """
    parsed = pd.to_datetime(values, format="ISO8601", errors="coerce")
    rest = parsed.isna() & (values != "")
    if rest.any():
        others = values[rest]
        first = pd.to_numeric(others.str.extract(r"^(\d{1,2})[/.\-]")[0], errors="coerce")
        parsed[rest] = pd.to_datetime(others, format="mixed", dayfirst=bool((first > 12).any()), errors="coerce")
    return parsed.dt.normalize()


def parse_numbers(values: pd.Series, *, decimal_comma: bool = False, percent: bool = False) -> pd.Series:
    """Numbers written as shops write them: $1,234.50, 1.234,50 (with ;-separated files), (12.00), 15%."""
    numbers = _plain_numbers(values)
    messy = numbers.isna() & (values != "")
    if messy.any():
        cleaned = values[messy].str.replace(r"[\s$€£¥]", "", regex=True)
        negative = cleaned.str.match(r"^\(.*\)$")
        cleaned = cleaned.str.strip("()")
        is_percent = cleaned.str.endswith("%")
        cleaned = cleaned.str.rstrip("%")
        if decimal_comma:
            cleaned = cleaned.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        else:
            cleaned = cleaned.str.replace(",", "", regex=False)
        fixed = pd.to_numeric(cleaned.replace("", None), errors="coerce").astype(float)
        fixed = fixed.where(~negative, -fixed)
        if percent:
            fixed = fixed.where(~is_percent, fixed / 100)
        numbers[messy] = fixed
    if percent:  # 15 means 15%; 0.15 stays
        numbers = numbers.where(~(numbers > 1), numbers / 100)
    return numbers


def _plain_numbers(values: pd.Series) -> pd.Series:
    """Plain numbers (1234.5, -3, 1e3) as floats, NaN for anything else: Arrow's cast when every
    cell is one (the common case, about 20x faster), pandas' otherwise."""
    cells = pa.array(values, type=pa.string(), from_pandas=True)
    try:
        parsed = pc.cast(pc.if_else(pc.equal(cells, ""), pa.scalar(None, pa.string()), cells), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.to_numeric(values, errors="coerce").astype(float)
    return pd.Series(parsed.to_numpy(zero_copy_only=False), index=values.index, dtype=float)
