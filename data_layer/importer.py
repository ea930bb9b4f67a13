"""Importing a shop's own orders from CSV or XLSX: read, map columns, validate, normalise.

The pipeline is plain functions: :func:`read_table` (any common delimiter and
encoding, ``.gz``, or the first sheet of an XLSX) -> :func:`auto_mapping`
(source columns to our fields by name) -> :func:`validate` (every row either
becomes an order line or is rejected with its line number, column and reason;
what the values cannot tell becomes a question) -> :func:`data_layer.loader.load_orders`.

Rules (also in the README, "Measures" and "Importing your own orders", and docs/MEASURES.md):

- Required: order id, order date, product, and either an amount or quantity
  and unit price. Several lines with one order id are one order.
- A line without a customer id is a guest checkout: counted in revenue and
  orders, never as a customer.
- Missing product, region, segment or category become "Unknown"; missing
  satisfaction stays empty; missing discount and shipping are 0; subtotal,
  weekday, month, quarter, weekend and holiday season are computed. Text is
  never cut: a value longer than the column holds rejects its row.
- Every line is kept with its sign (:data:`data_layer.schema.LINE_TYPES`):
  a negative quantity or amount, or an order id of "C" and digits among ids that
  are plain numbers (UCI-style cancellations), is a *return* of merchandise;
  lines named as adjustments or fees (:data:`ADJUSTMENT_NAMES`, :data:`FEE_NAMES`,
  order ids of "A" and digits among plain numbers) are *adjustments* or *fees*
  of either sign; a ``line_type`` column,
  when mapped, decides instead. Other lines are *sales*.
- A status decides whether a line counts (:data:`STATUSES`): counted,
  excluded (pending, voided, failed: left out and listed), or refunded (the
  refund is netted: the refunded amount column, or the whole line). Statuses
  the vocabulary does not know stop the import with a question.
- Identical lines are kept (a shop may sell the same item twice in a day) and
  counted in the report; dropping them is an option. Lines sharing a line id
  are copies: the later ones are left out.
- Dates and numbers are read as :mod:`data_layer.parsing` decides from all of a
  column's values, and the encoding from the bytes; each decision is reported.
- One currency per data set: a ``currency`` column, else the stored orders' (or
  ``BI_CURRENCY`` for a new data set).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Numeric

from data_layer.parsing import (
    DECIMAL_NAMES,
    DateOrder,
    Decision,
    EncodingError,
    Question,
    decode,
    looks_binary,
    read_dates,
    read_numbers,
)
from data_layer.schema import ID_LIMIT, LINE_TYPES, PRICE_DECIMALS, SALES_COLUMNS, TEXT_LIMIT, half_away, sales
from data_layer.stopping import checkpoint

#: Fields a source column can be mapped to; the first four groups are required.
FIELDS = (
    "order_id", "order_date", "product", "customer_id", "quantity", "unit_price", "total_amount", "subtotal",
    "category", "region", "customer_segment", "satisfaction_rating", "discount_rate", "discount_amount",
    "shipping_cost", "status", "refunded_amount", "line_type", "line_id", "currency",
)
#: Names (lower case, letters and digits only, accents dropped) recognised for each field: English, then the
#: German, French, Spanish, Italian and Dutch words shop exports use. The first name a column has wins: a
#: specific name ("einzelpreis", unit price) comes before a general one ("preis", which may be a line's total).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "order_id": ("orderid", "invoiceno", "invoice", "invoiceid", "invoicenumber", "ordernumber", "orderno", "order",
                 "bestellnummer", "bestellnr", "bestellung", "auftragsnummer", "rechnungsnummer", "rechnungsnr",
                 "numerodecommande", "commande", "numerodefacture", "numerodepedido", "pedido", "numeroordine",
                 "ordine", "bestelnummer", "ordernummer"),
    "order_date": ("orderdate", "invoicedate", "date", "purchasedate", "orderdatetime", "createdat", "datetime",
                   "paidat", "datum", "bestelldatum", "rechnungsdatum", "datedecommande", "fecha", "fechadepedido",
                   "dataordine", "data", "besteldatum"),
    "product": ("product", "productname", "description", "item", "itemname", "itemdescription", "title",
                "lineitemname", "artikelbezeichnung", "artikelname", "bezeichnung", "produkt", "artikel", "produit",
                "designation", "producto", "articulo", "prodotto", "articolo", "productnaam", "omschrijving"),
    "customer_id": ("customerid", "customer", "customerno", "customernumber", "clientid", "buyerid", "userid",
                    "kundennummer", "kundennr", "kunde", "numeroclient", "client", "cliente", "klantnummer",
                    "klant"),
    "quantity": ("quantity", "qty", "units", "count", "lineitemquantity", "menge", "anzahl", "stuck", "quantite",
                 "cantidad", "quantita", "aantal"),
    "unit_price": ("unitprice", "price", "itemprice", "priceeach", "unitcost", "lineitemprice", "einzelpreis",
                   "stuckpreis", "preis", "prixunitaire", "prix", "preciounitario", "precio", "prezzounitario",
                   "prezzo", "prijs", "stukprijs"),
    "total_amount": ("totalamount", "total", "amount", "linetotal", "revenue", "sales", "totalprice", "value",
                     "betrag", "gesamt", "gesamtbetrag", "gesamtpreis", "umsatz", "montant", "montanttotal",
                     "importe", "importetotal", "importo", "totale", "bedrag", "totaal"),
    "subtotal": ("subtotal", "zwischensumme", "soustotal"),
    "category": ("category", "productcategory", "department", "productline", "productgroup", "kategorie",
                 "warengruppe", "categorie", "categoria"),
    "region": ("region", "country", "state", "area", "territory", "market", "land", "bundesland", "pays",
               "pais", "paese", "regione"),
    "customer_segment": ("customersegment", "segment", "customertype", "tier", "kundengruppe", "segmento"),
    "satisfaction_rating": ("satisfactionrating", "satisfaction", "rating", "reviewscore", "score", "bewertung"),
    "discount_rate": ("discountrate", "discountpercent", "discountpct"),
    "discount_amount": ("discountamount", "discount", "rabatt", "remise", "descuento", "sconto", "korting"),
    "shipping_cost": ("shippingcost", "shipping", "freight", "delivery", "versand", "versandkosten",
                      "fraisdeport", "livraison", "envio", "spedizione", "verzendkosten"),
    "status": ("status", "orderstatus", "financialstatus", "paymentstatus", "state_", "bestellstatus", "statut",
               "estado", "stato"),
    "refunded_amount": ("refundedamount", "refundamount", "amountrefunded", "refunded", "refund", "orderrefundamount",
                        "erstattung", "erstattungsbetrag", "remboursement", "reembolso", "rimborso"),
    "line_type": ("linetype", "lineitemtype", "transactiontype"),
    "line_id": ("lineid", "lineitemid", "orderlineid", "itemid"),
    "currency": ("currency", "currencycode", "wahrung", "devise", "moneda", "valuta"),
}
DELIMITERS = ",;\t|"
#: Rows of a workbook read between two looks at whether the import must stop (:mod:`data_layer.stopping`).
CHECK_EVERY_ROWS = 10_000
UNKNOWN = "Unknown"
#: Longest text each field may hold (the table's column sizes): longer values reject their row.
MAX_LENGTH = {"order_id": ID_LIMIT, "customer_id": ID_LIMIT, "product": TEXT_LIMIT, "category": TEXT_LIMIT,
              "region": TEXT_LIMIT, "customer_segment": TEXT_LIMIT}
EARLIEST = date(1990, 1, 1)

#: What a status means: ``counted`` (a sale), ``excluded`` (no sale happened: left out and
#: listed), ``refunded`` (a sale refunded in full unless a refunded amount is given) or
#: ``partially_refunded`` (a refunded amount is needed). Compared in lower case with spaces
#: and dashes as underscores and a "wc_" prefix (WooCommerce) dropped. Shopify, WooCommerce,
#: Magento, BigCommerce, PrestaShop and marketplace exports use these words.
STATUSES: dict[str, str] = {
    **dict.fromkeys((
        "", "paid", "complete", "completed", "fulfilled", "partially_fulfilled", "unfulfilled", "shipped",
        "partially_shipped", "delivered", "processing", "closed", "success", "successful", "succeeded", "captured",
        "settled", "approved", "confirmed", "invoiced", "open", "sale", "sold", "authorized", "partially_paid",
        "awaiting_fulfillment", "awaiting_shipment", "ready_to_ship", "in_transit", "payment_accepted", "ok"),
        "counted"),
    **dict.fromkeys((
        "pending", "pending_payment", "awaiting_payment", "on_hold", "voided", "void", "failed", "declined",
        "abandoned", "draft", "expired", "trash", "checkout_draft", "payment_error", "unpaid", "incomplete"),
        "excluded"),
    **dict.fromkeys((
        "refunded", "returned", "cancelled", "canceled", "chargeback", "charged_back", "reversed", "refund",
        "cancellation", "return", "disputed_lost"), "refunded"),
    **dict.fromkeys(("partially_refunded", "partially_returned", "partial_refund"), "partially_refunded"),
}
#: The classes a user can give a status (``--status-map STATUS=CLASS``).
STATUS_CLASSES = ("counted", "excluded", "refunded")
#: Words of a ``line_type`` column, by the line type they mean.
LINE_TYPE_WORDS: dict[str, str] = {
    **dict.fromkeys(("", "sale", "sales", "product", "item", "line", "lineitem", "merchandise", "purchase", "order"),
                    "sale"),
    **dict.fromkeys(("return", "returns", "refund", "cancellation", "cancel", "cancelled", "canceled",
                     "creditnote"), "return"),
    **dict.fromkeys(("adjustment", "adjust", "discount", "credit", "correction", "writeoff", "baddebt", "manual",
                     "coupon", "voucher"), "adjustment"),
    **dict.fromkeys(("fee", "fees", "shipping", "postage", "delivery", "surcharge", "handling", "charge",
                     "commission", "servicefee"), "fee"),
}
#: Product names of adjustment lines (lower case, as in UCI-style exports: "Manual", "Discount", "Adjust bad debt").
ADJUSTMENT_NAMES = ("manual", "discount", "adjust bad debt", "adjustment", "bad debt", "cruk commission", "samples")
#: Product names of fee lines ("POSTAGE", "Bank Charges", "AMAZON FEE", ...).
FEE_NAMES = ("postage", "dotcom postage", "carriage", "bank charges", "amazon fee", "shipping", "shipping fee",
             "delivery", "delivery charge", "handling fee", "service fee", "transaction fee")


def normal_status(value: str) -> str:
    """A status as the vocabulary spells it: lower case, spaces and dashes as underscores, no "wc_"."""
    key = re.sub(r"[\s\-]+", "_", value.strip().lower())
    return key[3:] if key.startswith("wc_") else key


def status_class(value: str, given: Mapping[str, str] | None = None) -> str | None:
    """The class of a status: the user's (``given``, keyed by :func:`normal_status`), else the
    vocabulary's; None for a status neither knows."""
    key = normal_status(value)
    return (given or {}).get(key, STATUSES.get(key))


def unknown_statuses(values: pd.Series) -> dict[str, int]:
    """The statuses of ``values`` the vocabulary does not know, with their line counts."""
    return {str(value): int(count) for value, count in values.value_counts().items() if status_class(value) is None}


@dataclass(frozen=True)
class ImportChoices:
    """What the user decided about a file; each value left None is decided from the file and reported."""

    date_order: DateOrder | None = None
    decimal: str | None = None
    encoding: str | None = None
    #: Status (as in the file) -> ``counted``, ``excluded`` or ``refunded``, on top of :data:`STATUSES`.
    statuses: Mapping[str, str] = field(default_factory=dict)
    drop_identical: bool = False
    #: An IANA zone (``BI_TIMEZONE``) timestamps with an offset are put on their day in.
    timezone: str | None = None
    #: The configured currency (``BI_CURRENCY``): a new data set's when the file has no currency column.
    currency: str | None = None


class FileImportError(ValueError):
    """The file cannot be imported at all (unreadable, or a required field has no column)."""


class MissingColumnsError(FileImportError):
    """A required field has no column (the mapping must say which holds it)."""


@dataclass
class SourceTable:
    """A file's rows as text (cells stripped), with the line of the file each row starts on."""

    frame: pd.DataFrame
    line_numbers: np.ndarray
    encoding: str
    delimiter: str | None
    decisions: list[Decision] = field(default_factory=list)
    #: Rows (by position) with more cells than the header: a value holding an unquoted delimiter.
    overlong: dict[int, int] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)

    @property
    def row_count(self) -> int:
        return len(self.frame)

    @property
    def is_workbook(self) -> bool:
        return self.delimiter is None

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
    blocking: bool = True  # an error (the file fails without --skip-invalid), not a rule like voided statuses


@dataclass
class Validation:
    """The outcome of validating a file: the order lines to write, every rejected row, how each
    column was read (``decisions``) and what the values could not tell (``questions``)."""

    lines: pd.DataFrame
    rejected: list[Rejected] = field(default_factory=list)
    rows_in: int = 0
    decisions: list[Decision] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    #: Lines equal in every cell to an earlier line, kept (or left out with ``drop_identical``).
    identical: int = 0
    #: The file's currency (ISO 4217), when it has a currency column.
    currency: str | None = None
    #: Order ids whose every line was left out by its status (an upsert removes their stored lines).
    excluded_orders: tuple[str, ...] = ()
    dropped_identical: bool = False

    @property
    def errors(self) -> list[Rejected]:
        return [r for r in self.rejected if r.blocking]

    @property
    def guests(self) -> int:
        return int(self.lines["customer_id"].isna().sum()) if len(self.lines) else 0

    @property
    def orders(self) -> int:
        """Orders: order ids with a sale line of non-zero value."""
        if not len(self.lines):
            return 0
        counted = (self.lines["line_type"] == "sale") & (self.lines["total_amount"] != 0)
        return int(self.lines.loc[counted, "order_id"].nunique())

    def line_types(self) -> dict[str, int]:
        """Lines to write per line type."""
        if not len(self.lines):
            return {}
        counts = self.lines["line_type"].astype(str).value_counts()
        return {str(k): int(v) for k, v in sorted(counts.items()) if v}

    def summary(self) -> str:
        """One sentence: rows in, valid, invalid, left out by rule, line types, identical and guest lines."""
        errors = len(self.errors)
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in self.line_types().items())
        refunded = int((self.lines["refunded_amount"] > 0).sum()) if len(self.lines) else 0
        return (f"{_lines(self.rows_in, 'row')}: {len(self.lines):,} valid ({kinds or 'none'}"
                f"{f'; {refunded:,} with a refund' if refunded else ''}), {errors:,} invalid, "
                f"{len(self.rejected) - errors:,} left out by rule (statuses not counted, copies); "
                f"{_lines(self.identical, 'identical line')} {'left out' if self.dropped_identical else 'kept'}; "
                f"{_lines(self.guests, 'guest line')} (no customer id)")

    def to_arrow(self) -> pa.Table:
        """The lines as the loader takes them (KeyError for a ``check_only`` validation's)."""
        frame = self.lines[list(SALES_COLUMNS)]
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.set_column(table.schema.get_field_index("line_type"), "line_type",
                                 pc.cast(table.column("line_type"), pa.string()))
        return table.set_column(table.schema.get_field_index("order_date"), "order_date",
                                pc.cast(table.column("order_date"), pa.date32()))


@dataclass(frozen=True)
class ReadLimits:
    """How much of a file an import reads at most (``BI_IMPORT_MAX_ROWS``, ``BI_IMPORT_MAX_COLUMNS``): a file
    past them is refused with the reason, never read on for minutes. A sheet's run of
    ``empty_rows_after_data`` empty rows ends its data (spreadsheets keep formatted empty rows by the million)."""

    max_rows: int = 10_000_000
    max_columns: int = 1_000
    empty_rows_after_data: int = 1_000


_CUT_SHORT = ("{name} is compressed, but the file stops before the end of its data: it was cut short (a download "
              "or copy that did not finish). Send the whole file again")


def read_table(path: Path, encoding: str | None = None, limits: ReadLimits = ReadLimits()) -> SourceTable:
    """The rows of a CSV (optionally gzipped) or the first sheet of an XLSX file, as text, within ``limits``.

    The encoding is ``encoding``, or detected (:func:`data_layer.parsing.decode`) and reported.
    :class:`FileImportError` for a file that cannot be read, or is past the limits.
    """
    name = path.name.lower()
    if name.endswith((".xlsx", ".xlsm")):
        return _read_xlsx(path, limits)
    try:
        if name.endswith(".gz"):
            with gzip.open(path, "rb") as packed:
                raw = packed.read()
        else:
            raw = path.read_bytes()
    except EOFError:
        raise FileImportError(_CUT_SHORT.format(name=path.name)) from None
    except OSError as exc:
        raise FileImportError(f"cannot read {path.name}: {exc}") from None
    if raw.startswith(b"\x1f\x8b") and not name.endswith(".gz"):  # gzip whose name does not say so
        try:
            raw = gzip.decompress(raw)
        except EOFError:
            raise FileImportError(_CUT_SHORT.format(name=path.name)) from None
        except OSError as exc:
            raise FileImportError(f"cannot read {path.name}: {exc}") from None
    checkpoint()
    if raw.startswith(b"PK\x03\x04"):  # a zip: a workbook whose name does not say so
        table = _read_xlsx(path, limits)
        table.decisions.append(Decision("format", None, "Excel workbook", "the file is a workbook, whatever its "
                                                                           "name says"))
        return table
    try:
        text, decision = decode(raw, encoding)
    except EncodingError as exc:
        raise FileImportError(str(exc)) from None
    if looks_binary(text):
        raise FileImportError(f"{path.name} is not a text file of orders (CSV or XLSX): it holds binary data")
    text = text.lstrip("\ufeff")
    if not text or text.isspace():
        raise FileImportError("the file is empty")
    sample = text[:65536]
    data = raw.removeprefix(b"\xef\xbb\xbf") if decision.choice == "utf-8" else text.encode("utf-8")
    del text, raw  # read from the UTF-8 bytes on: a 50 MB file is held once, not three times
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        delimiter = max(DELIMITERS, key=lambda d: sample.split("\n", 1)[0].count(d))
    # Before reading: the header's width, and the lines after it (an upper bound of the rows).
    header_end = _line_end(data)
    _check_size(path.name, len(next(csv.reader([data[:header_end].decode("utf-8")], delimiter=delimiter), [])),
                data.count(b"\n", header_end + 1) + (not data.endswith(b"\n")), limits)
    checkpoint()
    fast = _read_with_arrow(data, delimiter)
    frame, lines, overlong = (*fast, {}) if fast is not None else _read_with_csv_module(data.decode("utf-8"),
                                                                                          delimiter)
    pa.default_memory_pool().release_unused()  # what reading freed goes back to the system now, not later
    checkpoint()
    return SourceTable(frame, lines, decision.choice, delimiter, [decision], overlong)


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
            # Without a quote in the file no value can hold a line break, and Arrow splits the work on any
            # line end (0.5 s instead of 0.85 s for 75 MB).
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=b'"' in data),
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
    names = _unique([name.strip() for name in table.column_names])
    columns = [_trimmed(column) for column in table.columns]
    del table
    frame = pa.table(columns, names=names).to_pandas(types_mapper=lambda t: pd.StringDtype("pyarrow"))
    return frame, lines[1:]


def _trimmed(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """``column`` without white space (Unicode's) around its values; itself when none has any."""
    trimmed = pc.utf8_trim_whitespace(column)
    # Three times quicker than looking for the spaces first with a regular expression.
    unchanged = pc.all(pc.equal(pc.binary_length(trimmed), pc.binary_length(column))).as_py() is not False
    return column if unchanged else trimmed


def non_blank_lines(data: bytes) -> np.ndarray:
    r"""1-based numbers of the lines of ``data`` holding more than spaces and control characters
    (a line ends at \n, \r\n or a lone \r, as Python's csv module counts them)."""
    octets = np.frombuffer(data, dtype=np.uint8)
    if not len(octets):
        return np.zeros(0, dtype=np.int64)
    if data.count(b"\r") == data.count(b"\r\n"):  # no lone \r: lines end at \n (the common case, faster)
        ends = np.concatenate([np.flatnonzero(octets[at:at + _BLOCK] == 10) + at  # a block at a time: the
                               for at in range(0, len(octets), _BLOCK)])          # masks stay small
    else:
        newline, carriage = octets == 10, octets == 13
        line_end = newline.copy()
        line_end[:-1] |= carriage[:-1] & ~newline[1:]
        ends = np.flatnonzero(line_end)
    starts = np.concatenate(([0], ends + 1))
    starts = starts[starts < len(octets)]
    filled = np.zeros(len(starts), dtype=bool)
    # Whole lines a block at a time (each block starts where a line does).
    firsts = np.unique(np.searchsorted(starts, np.arange(0, len(octets), _BLOCK), side="right") - 1)
    for first, after in zip(firsts, [*firsts[1:], len(starts)], strict=True):
        begin, end = starts[first], (starts[after] if after < len(starts) else len(octets))
        content = octets[begin:end] > 32  # not a space, tab, line end or other control character
        # Every segment holds at least one byte (its line end), so reduceat sees each line whole.
        filled[first:after] = np.logical_or.reduceat(content, starts[first:after] - begin)
    return np.flatnonzero(filled) + 1


#: Bytes of a file looked at in one piece by :func:`non_blank_lines`.
_BLOCK = 1 << 23


def _line_end(data: bytes) -> int:
    ends = [i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0]
    return min(ends) if ends else len(data)


def _read_with_csv_module(text: str, delimiter: str) -> tuple[pd.DataFrame, np.ndarray, dict[int, int]]:
    """Python's csv reader: slower, but it knows where a row with a line break in a value starts.
    Also gives the rows with more (non-empty) cells than the header, and how many."""
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
        raise FileImportError("the file is empty")
    width = len(header)
    overlong = {i: len(row) for i, row in enumerate(rows) if len(row) > width and any(row[width:])}
    rows = [row[:width] + [""] * (width - len(row)) for row in rows]
    frame = pd.DataFrame(rows, columns=_unique(header), dtype=pd.StringDtype("pyarrow"))
    return frame, np.asarray(lines, dtype=np.int64), overlong


def _check_size(name: str, columns: int, rows: int, limits: ReadLimits) -> None:
    """:class:`FileImportError` for a file of more columns or rows than ``limits`` take (``rows`` may count
    lines that are not rows: blank ones, or values broken over lines; a file of nearly the limit with many
    of those is refused a little early)."""
    if columns > limits.max_columns:
        raise FileImportError(f"{name} has {columns:,} columns: an import reads at most {limits.max_columns:,}. "
                              "Keep the order columns and leave the others out")
    if rows > limits.max_rows:
        raise FileImportError(f"{name} has more than {limits.max_rows:,} rows, the most an import reads: split it "
                              "into several files and import them one after the other (append)")


def _read_xlsx(path: Path, limits: ReadLimits) -> SourceTable:
    from openpyxl import load_workbook

    try:
        # From bytes: openpyxl refuses a path whose name does not end in .xlsx.
        workbook = load_workbook(io.BytesIO(path.read_bytes()), read_only=True, data_only=True)
    except Exception:  # noqa: BLE001 - any unreadable workbook
        raise FileImportError(f"{path.name} is not an Excel workbook (.xlsx) that can be read: save it again from "
                           "the spreadsheet program, or export it as CSV") from None
    sheet = workbook.worksheets[0]
    decisions = [Decision("sheet", None, repr(sheet.title), f"the first of {len(workbook.worksheets)} sheets; "
                          "move the orders' sheet first to read another")] if len(workbook.worksheets) > 1 else []
    # The cells the sheet holds, not the size it declares (a 2 kB file may declare 16,384 x 1,048,576).
    sheet.reset_dimensions()
    header: list[str] | None = None
    rows, lines = [], []
    empty_run = 0
    # No max_col: openpyxl would pad every row to it. Each row is as long as its last cell, cut here.
    for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
        if number % CHECK_EVERY_ROWS == 0:
            checkpoint()
        cells = ["" if v is None else _cell_text(v) for v in values[: limits.max_columns + 1]]
        if not any(c.strip() for c in cells):
            empty_run += 1
            if header is not None and empty_run >= limits.empty_rows_after_data:
                decisions.append(Decision("rows", None, f"up to row {number - empty_run:,}",
                                          f"{empty_run:,} empty rows in a row end the sheet's data"))
                break
            continue
        empty_run = 0
        if header is None:
            header = [c.strip() for c in cells]
            while header and not header[-1]:
                header.pop()
            _check_size(path.name, len(header), 0, limits)
        else:
            rows.append([c.strip() for c in cells[: len(header)]] + [""] * max(0, len(header) - len(cells)))
            lines.append(number)
            if len(rows) > limits.max_rows:
                _check_size(path.name, len(header), len(rows), limits)
    workbook.close()
    if header is None:
        raise FileImportError("the first sheet is empty")
    frame = pd.DataFrame(rows, columns=_unique(header), dtype=pd.StringDtype("pyarrow"))
    return SourceTable(frame, np.asarray(lines, dtype=np.int64), "xlsx", None, decisions)


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
    """A column name as :data:`SYNONYMS` holds it: lower case, accents dropped, letters and digits only."""
    unaccented = unicodedata.normalize("NFKD", name.lower()).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", unaccented)


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
    """Raise :class:`FileImportError` naming what is missing or unknown in ``mapping``."""
    columns = set(columns)
    unknown_fields = sorted(set(mapping) - set(FIELDS))
    if unknown_fields:
        raise FileImportError(f"unknown field(s) {', '.join(unknown_fields)}; fields: {', '.join(FIELDS)}")
    missing_columns = sorted(c for c in mapping.values() if c not in columns)
    if missing_columns:
        raise FileImportError(f"no column {', '.join(map(repr, missing_columns))} in the file; "
                           f"columns: {', '.join(sorted(columns))}")
    required = [f for f in ("order_id", "order_date", "product") if f not in mapping]
    if "total_amount" not in mapping and not {"quantity", "unit_price"} <= set(mapping):
        required.append("total_amount (or quantity and unit_price)")
    if required:
        raise MissingColumnsError(f"no column for {', '.join(required)}: say which column of the file holds it")


_MONEY_FIELDS = ("unit_price", "total_amount", "subtotal", "discount_amount", "shipping_cost", "refunded_amount")
_NUMBER_FIELDS = ("quantity", *_MONEY_FIELDS, "satisfaction_rating", "discount_rate")


def validate(source: SourceTable, mapping: dict[str, str], choices: ImportChoices = ImportChoices(), *,
             latest: date | None = None, check_only: bool = False) -> Validation:
    """Turn the mapped rows into order lines; reject each row that cannot be one, saying why.

    ``check_only``: the lines keep only the columns the counts need (order and customer id, line type,
    total and refunded amount), not
    all those a load writes: a check of a large file on the Data page holds far less.

    Raises :class:`FileImportError` for what no row can fix (a missing required column,
    mixed currencies). What the values cannot tell (date order, decimal mark, unknown
    statuses) comes back as ``questions``, with no lines: answer them in ``choices``.
    """
    try:
        check_mapping(mapping, source.columns)
    except MissingColumnsError as exc:
        sheet = next((d for d in source.decisions if d.topic == "sheet"), None)
        if sheet is None:
            raise
        raise MissingColumnsError(f"{exc} (read from sheet {sheet.choice}, {sheet.reason})") from None
    frame = source.frame
    n = len(frame)
    line = source.line_numbers
    latest = latest or date.today().replace(year=date.today().year + 1)
    out = _Outcome(n, line, mapping)
    decisions = list(source.decisions)
    questions: list[Question] = []

    blank = pd.Series("", index=frame.index, dtype=pd.StringDtype("pyarrow"))

    def text(name: str) -> pd.Series:  # cells come stripped from read_table
        return frame[mapping[name]].fillna("") if name in mapping else blank

    currency = _currency(text("currency")) if "currency" in mapping else None
    if currency:
        decisions.append(Decision("currency", None, currency, "the file's currency column"))
    if source.overlong:
        cells = len(source.columns)
        out.reject(pd.Series(np.isin(np.arange(n), list(source.overlong))), "order_id",
                   lambda i: f"{source.overlong[i]} values where the header has {cells}: a value holding the "
                   f"delimiter {source.delimiter!r} without quotes?")
    order_id, customer = text("order_id"), _whole_number_ids(text("customer_id"), mapping.get("customer_id"),
                                                            decisions)
    product = text("product").replace("", UNKNOWN)
    out.reject(order_id == "", "order_id", "missing order id")
    for name in MAX_LENGTH:
        values = product if name == "product" else text(name)
        out.reject(values.str.len() > MAX_LENGTH[name], name,
                   lambda i, values=values, name=name: f"{name} of {len(values.iloc[i]):,} characters: "
                   f"longer than the {MAX_LENGTH[name]} stored")

    raw_dates = text("order_date")
    dates = read_dates(raw_dates, mapping["order_date"], order=choices.date_order, timezone=choices.timezone,
                       serials=source.is_workbook)
    decisions += dates.decisions
    if dates.question:
        questions.append(dates.question)
    when = dates.days
    checkpoint()
    out.reject(raw_dates == "", "order_date", "missing order date")
    out.reject(when.isna() & (raw_dates != ""), "order_date", lambda i: f"unreadable date {raw_dates.iloc[i]!r}"
               + (f" (read {choices.date_order})" if choices.date_order else ""))
    out.reject((when < pd.Timestamp(EARLIEST)) | (when > pd.Timestamp(latest)), "order_date",
               lambda i: f"date {raw_dates.iloc[i]!r} outside {EARLIEST} .. {latest}")

    numbers = _read_number_columns(text, mapping, choices, decisions, questions, out)
    checkpoint()
    quantity = numbers["quantity"] if "quantity" in mapping else pd.Series(np.ones(n))
    out.reject(quantity.notna() & (quantity != quantity.round()), "quantity", "quantity must be a whole number")
    out.reject(quantity == 0, "quantity", "quantity is 0")
    amount_given = numbers["total_amount"].notna() | (numbers["unit_price"].notna() & quantity.notna())
    out.reject(~amount_given, mapping.get("total_amount", "total_amount"), "no amount (nor quantity and unit price)")
    rating = numbers["satisfaction_rating"]
    out.reject((rating < 1) | (rating > 5), "satisfaction_rating", "satisfaction outside 1..5")
    rate = numbers["discount_rate"]
    out.reject((rate < 0) | (rate >= 1), "discount_rate", "discount rate outside 0..100%")
    out.reject(numbers["refunded_amount"] < 0, "refunded_amount", "negative refunded amount")

    checkpoint()
    line_type, sign = _line_types(text, order_id, product, quantity, numbers, mapping, decisions, out)
    status_class = _status_classes(text("status"), choices, questions, decisions, out) if "status" in mapping \
        else None

    repeated = _repeated(order_id)
    copies = _copies(frame, repeated, text, mapping, choices, out)
    checkpoint()
    amounts = resolve_amounts(quantity.abs(), {name: numbers[name].abs() if name in _MONEY_FIELDS else numbers[name]
                                               for name in numbers})
    out.reject(amounts["inconsistent"], mapping.get("total_amount", "total_amount"),
               "amounts do not add up (total = quantity x unit price - discount + shipping)")
    _reject_beyond_columns(text, numbers | {"quantity": quantity}, amounts, mapping, out)
    refunded = _refunds(amounts["total_amount"], sign, numbers["refunded_amount"], order_id, status_class, mapping,
                        out)
    if questions:  # rows are judged once the file's questions are answered (an unread date is no fault)
        return Validation(lines=_empty_lines(), rows_in=n, decisions=decisions, questions=questions,
                          currency=currency)
    checkpoint()
    keep = ~out.dropped
    excluded = out.excluded_by_status
    excluded_orders = tuple(sorted(set(order_id[excluded]) - set(order_id[keep]))) if excluded.any() else ()
    if check_only:
        lines = pd.DataFrame({"order_id": order_id[keep], "customer_id": customer[keep].replace("", None),
                              "line_type": line_type[keep], "total_amount": amounts["total_amount"][keep] * sign[keep],
                              "refunded_amount": refunded[keep]}).reset_index(drop=True)
    else:
        lines = _order_lines(keep, order_id, customer, product, when, amounts, sign, line_type, refunded, numbers,
                             text, several_lines=bool(repeated.any()))
    return Validation(lines=lines, rejected=sorted(out.rejected, key=lambda r: r.line), rows_in=n,
                      decisions=decisions, identical=copies, currency=currency,
                      dropped_identical=choices.drop_identical,
                      excluded_orders=excluded_orders)


def _read_number_columns(text, mapping: dict[str, str], choices: ImportChoices, decisions: list[Decision],  # noqa: ANN001
                         questions: list[Question], out: _Outcome) -> dict[str, pd.Series]:
    """Each mapped number column, read with the decimal mark its values show (else the file's)."""
    readings = {}
    pending = []
    for name in _NUMBER_FIELDS:
        if name not in mapping:
            continue
        reading = read_numbers(text(name), mapping[name], decimal=choices.decimal, percent=name == "discount_rate")
        readings[name] = reading
        if reading.question is not None:
            pending.append(name)
    marks = {r.mark for r in readings.values() if r.mark and r.question is None}
    file_mark = marks.pop() if len(marks) == 1 else None
    for name in pending:  # a column whose values cannot tell takes the mark of the file's other columns
        if file_mark:
            readings[name] = read_numbers(text(name), mapping[name], fallback=file_mark,
                                          percent=name == "discount_rate")
        elif (question := readings[name].question) is not None:
            questions.append(question)
    for name, reading in readings.items():
        if reading.mark:
            decisions.append(Decision("decimal mark", mapping[name], DECIMAL_NAMES[reading.mark], reading.reason))
    numbers = {}
    for name in _NUMBER_FIELDS:
        if name not in readings:
            numbers[name] = pd.Series(np.nan, index=out.dropped.index)
            continue
        raw, parsed = text(name), readings[name].numbers
        if readings[name].question is None:
            out.reject(parsed.isna() & (raw != ""), name,
                       lambda i, raw=raw, name=name: f"not a number: {name} {raw.iloc[i]!r}")
        numbers[name] = parsed
    return numbers


def _whole_number_ids(ids: pd.Series, column: str | None, decisions: list[Decision]) -> pd.Series:
    """Ids written as floats (17850.0, as pandas and spreadsheet programs write a numeric id column with
    blanks) read as the whole numbers they are, when every id is written so; else as they stand."""
    cells = pa.array(ids, type=pa.string(), from_pandas=True)
    filled = pc.not_equal(cells, "")
    if not pc.any(filled).as_py():
        return ids
    floats = pc.match_substring_regex(cells, r"^\d+\.0+$")
    if not pc.all(pc.or_(floats, pc.invert(filled))).as_py():
        return ids
    example = cells.filter(filled)[0].as_py()
    decisions.append(Decision("ids", column, f"{example!r} read as {example.split('.')[0]}",
                              "every id is a whole number written with decimals"))
    return ids.str.replace(r"\.0+$", "", regex=True)


def _currency(values: pd.Series) -> str | None:
    """The one currency of a currency column (ISO 4217, e.g. GBP), or :class:`FileImportError`."""
    from babel.numbers import list_currencies

    codes = values.str.upper()
    counts = codes[codes != ""].value_counts()
    if counts.empty:
        return None
    known = set(list_currencies())
    unknown = [str(code) for code in counts.index if code not in known]
    if unknown:
        raise FileImportError(f"{unknown[0]!r} in the currency column is not an ISO 4217 currency code (such as EUR, "
                           "GBP or USD)")
    if len(counts) > 1:
        listed = ", ".join(f"{code} ({_lines(count)})" for code, count in counts.items())
        raise FileImportError(f"the file mixes currencies: {listed}. One data set holds one currency: "
                           "import each currency as its own data set")
    return str(counts.index[0])


def _line_types(text, order_id: pd.Series, product: pd.Series, quantity: pd.Series,  # noqa: ANN001
                numbers: dict[str, pd.Series], mapping: dict[str, str], decisions: list[Decision], out: _Outcome
                ) -> tuple[pd.Series, pd.Series]:
    """Each line's type and the sign of its amounts (see the module's rules)."""
    negative = (quantity < 0) | (numbers["total_amount"] < 0) | (numbers["unit_price"] < 0) \
        | (numbers["subtotal"] < 0)
    if "line_type" in mapping:
        words = text("line_type").str.lower().str.replace(r"[^a-z]", "", regex=True)
        kind = words.map(LINE_TYPE_WORDS)
        out.reject(kind.isna(), "line_type", lambda i: f"unknown line type {text('line_type').iloc[i]!r}; "
                   "use sale, return, adjustment or fee")
        kind = kind.fillna("sale")
        code = kind.map({name: i for i, name in enumerate(LINE_TYPES)}).to_numpy(dtype=np.int8)
    else:  # Arrow's kernels: a million lines in milliseconds, not Python strings
        names = pc.utf8_lower(pa.array(product, type=pa.string(), from_pandas=True))
        adjusted_id, cancelled = _marked_ids(order_id, mapping.get("order_id", "order_id"), decisions)
        adjustment = pc.is_in(names, value_set=pa.array(ADJUSTMENT_NAMES)).to_numpy(zero_copy_only=False) \
            | adjusted_id
        fee = pc.is_in(names, value_set=pa.array(FEE_NAMES)).to_numpy(zero_copy_only=False)
        code = np.select([fee, adjustment, cancelled], [LINE_TYPES.index(k) for k in ("fee", "adjustment", "return")],
                         LINE_TYPES.index("sale")).astype(np.int8)
    sale, returned = LINE_TYPES.index("sale"), LINE_TYPES.index("return")
    negative = negative.to_numpy()
    code[(code == sale) & negative] = returned
    sign = pd.Series(np.where(negative | (code == returned), -1.0, 1.0), index=product.index)
    # Categorical: a million lines hold four labels without a million Python strings.
    return pd.Series(pd.Categorical.from_codes(code, categories=LINE_TYPES), index=product.index), sign


def _marked_ids(order_id: pd.Series, column: str, decisions: list[Decision]) -> tuple[np.ndarray, np.ndarray]:
    """Which order ids mark adjustments ("A" and digits) and cancellations ("C" and digits), UCI-style.

    Only where other order ids are plain numbers, so the letter marks a few ids among the
    shop's numbering: a shop whose every id starts with a letter has no such marks. Reported.
    """
    ids = pa.array(order_id, type=pa.string(), from_pandas=True)
    marks = [pc.match_substring_regex(ids, rf"^[{letter}{letter.lower()}]\d+$").to_numpy(zero_copy_only=False)
             for letter in "AC"]
    # The costlier look at the other ids only when some id has a mark (a file that has none, most
    # of them, costs what it did before).
    if not any(marked.any() for marked in marks) or not pc.any(pc.match_substring_regex(ids, r"^\d+$")).as_py():
        nothing = np.zeros(len(order_id), dtype=bool)
        return nothing, nothing
    for letter, meaning, marked in (("A", "adjustments", marks[0]), ("C", "cancellations (returns)", marks[1])):
        if marked.any():
            decisions.append(Decision("line types", column, f"ids of {letter!r} and digits read as {meaning}",
                                      f"{_lines(int(marked.sum()))}, among order ids that are plain numbers"))
    return marks[0], marks[1]


def _status_classes(status: pd.Series, choices: ImportChoices, questions: list[Question], decisions: list[Decision],
                    out: _Outcome) -> pd.Series:
    """Each line's status class (each status's reported); lines of an excluded status are left out (listed),
    unknown ones asked."""
    given = {normal_status(k): v for k, v in choices.statuses.items()}
    counts = status.value_counts()
    classes = {value: status_class(value, given) for value in counts.index}
    for value, kind in classes.items():
        if kind is not None and value != "":
            decisions.append(Decision("status", out.mapping.get("status"), f"{value!r} {kind.replace('_', ' ')}",
                                      f"{_lines(int(counts[value]))}; "
                                      + ("as asked" if normal_status(value) in given else "the status vocabulary")))
    unknown = {value: int(counts[value]) for value, kind in classes.items() if kind is None}
    if unknown:
        listed = ", ".join(f"{value!r} ({_lines(count)})" for value, count in unknown.items())
        questions.append(Question(
            "status", out.mapping.get("status"), f"The vocabulary does not know these statuses: {listed}. "
            "Say for each whether its orders count as sales (counted), are left out (excluded: never paid, "
            "voided) or were refunded (refunded).", tuple(unknown)))
    # An unknown status is asked about above (the import stops there): counted until it is answered.
    kind = status.map({value: found or "counted" for value, found in classes.items()}).fillna("counted").astype(str)
    excluded = kind == "excluded"
    out.exclude(excluded, "status", lambda i: f"status {status.iloc[i]!r}: not counted")
    out.excluded_by_status = excluded.to_numpy() & out.rule_dropped.to_numpy()
    return kind


def _repeated(order_id: pd.Series) -> pd.Series:
    """Lines whose order id another line shares. Arrow counts the distinct ids first: a file of one
    line per order (the common export) then needs no hashing of its ids into pandas' codes."""
    if len(pc.unique(pa.array(order_id, type=pa.string(), from_pandas=True))) == len(order_id):
        return pd.Series(False, index=order_id.index)
    return order_id.duplicated(keep=False)


def _copies(frame: pd.DataFrame, repeated: pd.Series, text, mapping: dict[str, str],  # noqa: ANN001
            choices: ImportChoices, out: _Outcome) -> int:
    """Leave out lines that share a line id with an earlier line; count (or, asked to, leave out)
    lines identical in every cell to an earlier one (only lines whose order id repeats can be).
    Returns how many identical lines there are."""
    if "line_id" in mapping:
        line_id = text("line_id")
        first = pd.Series(np.arange(len(frame)), index=frame.index).groupby(line_id.to_numpy()).transform("first")
        shared = (line_id != "") & (first != np.arange(len(frame)))
        out.exclude(shared, "line_id", lambda i: f"same line id as line {out.line[first.iloc[i]]}: a copy")
        return 0
    numbers = [mapping[name] for name in ("total_amount", "quantity", "unit_price") if name in mapping]
    order = [*numbers, *(column for column in frame.columns if column not in numbers)]  # amounts tell most apart
    copies = _earlier_copies(frame[order] if repeated.all() else frame.loc[repeated, order],
                             [mapping["order_id"], mapping["product"]])
    if len(copies) and choices.drop_identical:
        out.exclude(pd.Series(frame.index.isin(copies.index), index=frame.index), "order_id",
                    lambda i: f"identical to line {out.line[copies[i]]}")
    return len(copies)


def _refunds(total: pd.Series, sign: pd.Series, given: pd.Series, order_id: pd.Series,
             status_class: pd.Series | None, mapping: dict[str, str], out: _Outcome) -> pd.Series:
    """The refunded part of each sale line (``total``: the lines' amounts, unsigned).

    A refunded amount on every line of an order is each line's own; on some lines only
    (exports that give an order's refund on its first line) it is the order's refund,
    spread over its lines in proportion to their amounts. Without an amount, a refunded
    status refunds the whole line and a partially refunded one is rejected.
    """
    column = "refunded_amount"
    sale = sign > 0
    given = given.where(sale)
    if given.notna().any():
        has = given.notna()
        by_order = has.groupby(order_id.to_numpy())
        every, some = by_order.transform("all"), by_order.transform("any")
        order_refund = given.groupby(order_id.to_numpy()).transform("sum")
        order_total = total.where(sale, 0.0).groupby(order_id.to_numpy()).transform("sum")
        spread = half_away(order_refund * total / order_total.where(order_total > 0))
        given = given.where(every, spread.where(some & sale))
    refunded = given
    if status_class is not None:
        refunded = refunded.where(~((status_class == "refunded") & refunded.isna() & sale), total)
        out.reject((status_class == "partially_refunded") & refunded.isna() & sale,
                   column if column in mapping else "status",
                   "partially refunded, but no line of the order gives the refunded amount" if column in mapping
                   else "partially refunded, but the file has no refunded amount column to say how much")
    refunded = refunded.fillna(0.0).where(sale, 0.0)
    out.reject(refunded > total + 0.005, column, "refunded amount larger than the line's amount")
    return half_away(refunded)


def _empty_lines() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=object) for name in SALES_COLUMNS})


def _earlier_copies(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """For each row equal in every cell to an earlier row of ``frame``: the position of the first such row.

    Only rows whose ``keys`` cells repeat together can be copies; the other columns then narrow them
    one at a time, in ``frame``'s order, each compared on the rows still alike: few are left after a
    column or two, where selecting every column of the candidates and grouping by all of them took 0.7 s
    per million lines of five-line orders.
    """
    empty = pd.Series(dtype=np.int64)
    rows = np.arange(len(frame))
    codes = np.zeros(len(frame), dtype=np.int64)
    for name in [*keys, *(column for column in frame.columns if column not in keys)]:
        if not len(rows):
            return empty
        cells, values = pd.factorize(frame[name].iloc[rows] if len(rows) < len(frame) else frame[name],
                                     use_na_sentinel=False)
        codes = pd.factorize(codes * len(values) + cells)[0]
        still = pd.Series(codes).duplicated(keep=False).to_numpy()
        rows, codes = rows[still], pd.factorize(codes[still])[0]
    if not len(rows):
        return empty
    labels = frame.index[rows]
    first = pd.Series(labels, index=labels).groupby(codes).transform("first")
    return first[first != first.index]


class _Outcome:
    """Which rows are dropped so far, and why (each row is reported once, for its first fault)."""

    def __init__(self, n: int, line: np.ndarray, mapping: dict[str, str]) -> None:
        self.dropped = pd.Series(np.zeros(n, dtype=bool))
        self.rule_dropped = pd.Series(np.zeros(n, dtype=bool))
        self.excluded_by_status = np.zeros(n, dtype=bool)
        self.line = line
        self.mapping = mapping
        self.rejected: list[Rejected] = []

    def reject(self, mask: pd.Series, field_name: str, reason, blocking: bool = True) -> None:  # noqa: ANN001
        new = pd.Series(np.asarray(mask.fillna(False), dtype=bool)) & ~self.dropped
        column = self.mapping.get(field_name, field_name)
        for i in np.flatnonzero(new.to_numpy()):
            said = reason(i) if callable(reason) else reason
            self.rejected.append(Rejected(int(self.line[i]), column, said, blocking))
        self.dropped |= new
        if not blocking:
            self.rule_dropped |= new

    def exclude(self, mask: pd.Series, field_name: str, reason) -> None:  # noqa: ANN001
        self.reject(mask, field_name, reason, blocking=False)


#: The database's integer column (quantity): 32 bits.
_LARGEST_QUANTITY = 2**31 - 1


def _reject_beyond_columns(text, numbers: dict[str, pd.Series], amounts: pd.DataFrame,  # noqa: ANN001
                           mapping: dict[str, str], out: _Outcome) -> None:
    """Lines with a quantity or an amount larger than its column holds (99,999,999.99 for a line's money),
    said with the line, not by the database refusing the whole load: a figure the file gives, as written
    and under its own column first; then one worked out from them (2 x 60,000,000), under the total's."""
    limits: dict[str, tuple[float, float, int]] = {"quantity": (-(_LARGEST_QUANTITY + 1.0), _LARGEST_QUANTITY, 0)}
    for name in ("unit_price", "discount_amount", "shipping_cost", "subtotal", "total_amount"):
        kind = sales.c[name].type
        assert isinstance(kind, Numeric) and kind.precision is not None and kind.scale is not None, name
        largest = 10.0 ** (kind.precision - kind.scale) - 10.0 ** -kind.scale
        limits[name] = (-largest, largest, kind.scale)

    def beyond(said: str, lowest: float, largest: float, places: int) -> str:
        return f"{said} is beyond what a line can hold ({lowest:,.{places}f} to {largest:,.{places}f})"

    for name, (lowest, largest, places) in limits.items():
        if name in mapping:
            values, written = numbers[name], text(name)
            out.reject((values < lowest) | (values > largest), name,
                       lambda i, name=name, written=written, limit=(lowest, largest, places):
                       beyond(f"{name.replace('_', ' ')} {written.iloc[i]!r}", *limit))
    for name, (lowest, largest, places) in limits.items():
        values = amounts[name]
        out.reject((values < lowest) | (values > largest), "total_amount",
                   lambda i, name=name, values=values, limit=(lowest, largest, places):
                   beyond(f"{name.replace('_', ' ')} {values.iloc[i]:,.{limit[2]}f}", *limit)
                   if np.isfinite(values.iloc[i]) else f"{name.replace('_', ' ')} is not a finite number")


def resolve_amounts(quantity: pd.Series, numbers: dict[str, pd.Series]) -> pd.DataFrame:
    """Quantity, unit price, subtotal, discount (and rate), shipping and total of each line, each
    from its column or, when the file has none, from the others.

    With an amount and quantity x unit price but no discount or shipping column, the
    difference is a discount (amount below) or shipping (amount above). A line whose given
    amounts cannot add up is marked ``inconsistent``.
    """
    q = quantity.fillna(1.0)
    # Given amounts in cents are rounded as their columns keep them first, as the file's figures read
    # (numpy's own rounding goes to the even cent, 0.125 -> 0.12, and a binary 1.005 falls below the half).
    # A unit price and a rate enter the arithmetic as written and are rounded as stored at the end:
    # 3,000 x 0.0004184 is 1.26, where the stored price's 0.000418 would make it 1.25.
    price, rate = numbers["unit_price"], numbers["discount_rate"]
    given_subtotal, total = half_away(numbers["subtotal"]), half_away(numbers["total_amount"])
    discount, shipping = half_away(numbers["discount_amount"]), half_away(numbers["shipping_cost"])
    subtotal = given_subtotal.fillna(half_away(q * price))
    discount = discount.fillna(half_away(subtotal * rate))
    only_total = subtotal.isna()
    subtotal = subtotal.fillna(half_away(total + discount.fillna(0.0) - shipping.fillna(0.0)))
    gap = half_away(subtotal - total)  # = discount - shipping, where both amounts are known
    both_unknown = discount.isna() & shipping.isna() & total.notna() & ~only_total
    discount = discount.where(~both_unknown, gap.clip(lower=0))
    shipping = shipping.where(~both_unknown, (-gap).clip(lower=0))
    discount = discount.fillna((gap + shipping).where(total.notna())).fillna(0.0)
    shipping = shipping.fillna((discount - gap).where(total.notna())).fillna(0.0)
    total = half_away(total.fillna(subtotal - discount + shipping))
    rate = half_away(rate.fillna((discount / subtotal.where(subtotal > 0)).fillna(0.0)), 4)
    price = price.fillna(subtotal / q)
    inconsistent = ((total - (subtotal - discount + shipping)).abs() > 0.005) | (discount < -0.005) \
        | (shipping < -0.005) | ((discount - subtotal * rate).abs() > 0.015 + subtotal.abs() * 0.00005) \
        | ((subtotal - q * price).abs() > 0.005 * q.abs() + 1e-9)
    return pd.DataFrame({"quantity": q, "unit_price": half_away(price, PRICE_DECIMALS),
                         "subtotal": half_away(subtotal), "discount_rate": rate, "discount_amount": half_away(discount),
                         "shipping_cost": half_away(shipping), "total_amount": total,
                         "inconsistent": inconsistent.fillna(False)}, copy=False)  # see _order_lines


def _order_lines(keep, order_id, customer, product, when, amounts, sign, line_type, refunded, numbers, text, *,  # noqa: ANN001, PLR0913 - the columns read
                 several_lines: bool) -> pd.DataFrame:
    kept = amounts[keep]
    signed = sign[keep]
    day = when[keep]
    month = day.dt.month
    frame = pd.DataFrame({
        "order_id": order_id[keep],
        "customer_id": customer[keep].replace("", None),
        "order_date": day,  # midnight of the day; a date in to_arrow
        "category": text("category")[keep].replace("", UNKNOWN),
        "product": product[keep],
        "quantity": (kept["quantity"] * signed).astype(np.int64),
        "unit_price": kept["unit_price"],
        "subtotal": kept["subtotal"] * signed,
        "discount_rate": kept["discount_rate"],
        "discount_amount": kept["discount_amount"] * signed,
        "shipping_cost": kept["shipping_cost"] * signed,
        "total_amount": kept["total_amount"] * signed,
        "region": text("region")[keep].replace("", UNKNOWN),
        "customer_segment": text("customer_segment")[keep].replace("", UNKNOWN),
        "satisfaction_rating": half_away(numbers["satisfaction_rating"][keep], 1),
        # Labels from a list of the few there are: one string object each, not one per line.
        "day_of_week": _DAY_NAMES[day.dt.day_of_week.to_numpy()],
        "month": month.astype(np.int64),
        "quarter": _QUARTERS[((month - 1) // 3).to_numpy()],
        "is_weekend": (day.dt.day_of_week >= 5).astype(np.int64),
        "is_holiday_season": (month >= 11).astype(np.int64),
        "line_type": line_type[keep],
        "refunded_amount": refunded[keep],
    }, copy=False)  # columns as they are: copying them into one block took a third of a second per million lines
    frame["line_number"] = frame.groupby("order_id", sort=False).cumcount() + 1 if several_lines else 1
    return frame.reset_index(drop=True)


_DAY_NAMES = np.array(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"], dtype=object)
_QUARTERS = np.array(["Q1", "Q2", "Q3", "Q4"], dtype=object)


def _lines(n: int, noun: str = "line") -> str:
    return f"1 {noun}" if n == 1 else f"{n:,} {noun}s"
