"""Reading text cells as dates, numbers and text without guessing silently.

Each reader looks at *all* the values of a column, decides how to read them
(day-first or month-first, decimal comma or point, the file's encoding) and
says why in a :class:`Decision`. Where the values cannot tell, it returns a
:class:`Question` for the user instead of a choice; the caller stops the import
until it is answered (``--date-order``, ``--decimal``, ``--encoding`` on the
command line, the same choices on the Data page).

Readers work on a column's distinct values, so a million lines of a few
thousand dates or prices cost a few thousand parses.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

DateOrder = Literal["dmy", "mdy", "ymd"]
DATE_ORDERS: tuple[DateOrder, ...] = ("dmy", "mdy", "ymd")


def date_order_of(value: str | None) -> DateOrder | None:
    """``value`` as a date order when it is one of :data:`DATE_ORDERS`; else None (decided from the file)."""
    return next((order for order in DATE_ORDERS if order == value), None)
DATE_ORDER_NAMES = {"dmy": "day first (31/12/2024)", "mdy": "month first (12/31/2024)",
                    "ymd": "year first (2024/12/31)"}
DECIMAL_MARKS = (".", ",")
DECIMAL_NAMES = {".": "decimal point (1,234.56)", ",": "decimal comma (1.234,56)"}


@dataclass(frozen=True)
class Decision:
    """How a column (or the file) is read, and why: shown in the import report."""

    topic: str  # "encoding", "date order", "decimal mark", "time zone"
    column: str | None
    choice: str
    reason: str

    def __str__(self) -> str:
        where = f" ({self.column})" if self.column else ""
        return f"{self.topic}{where}: {self.choice} ({self.reason})"


@dataclass(frozen=True)
class Question:
    """Something the values cannot tell: the import stops until the user answers it.

    ``setting`` names the answer (``date_order``, ``decimal``, ``status``); ``message`` says
    what was seen, in words that fit any place (the command line and the Data page add how
    to answer there and with what choices); ``examples`` are the values in question.
    """

    setting: str
    column: str | None
    message: str
    examples: tuple[str, ...] = ()


class EncodingError(ValueError):
    """The bytes cannot be decoded in the encoding asked for."""


# ---------------------------------------------------------------------------------------------- encodings

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def decode(raw: bytes, encoding: str | None = None) -> tuple[str, Decision]:
    """The text of ``raw`` and how it was decoded.

    ``encoding`` given: that one (an error names the first byte it cannot read).
    Otherwise: a byte-order mark decides (UTF-8, UTF-16, UTF-32); else UTF-8 when
    every byte sequence is valid UTF-8; else charset-normalizer's best match, whose
    candidates put the Windows code pages that spreadsheet programs write before
    Latin-1 (in which € and – would become control characters).
    """
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise EncodingError(f"unknown encoding {encoding!r}") from None
        try:
            return raw.decode(encoding), Decision("encoding", None, encoding, "as asked")
        except UnicodeDecodeError as exc:
            raise EncodingError(f"the file is not valid {encoding}: byte {raw[exc.start]:#04x} at "
                                f"position {exc.start:,}") from None
    for bom, name in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(name), Decision("encoding", None, name.replace("-sig", ""), "byte-order mark")
            except UnicodeDecodeError:
                break
    wide = _utf16_without_bom(raw)
    if wide:
        try:
            return raw.decode(wide), Decision("encoding", None, wide, "every other byte is 0: UTF-16 without a "
                                                                       "byte-order mark")
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("utf-8"), Decision("encoding", None, "utf-8", "every byte is valid UTF-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = list(from_bytes(raw[: 1 << 20], cp_isolation=_CANDIDATES, preemptive_behaviour=False))
    name = "cp1252"
    if matches:
        # Short samples leave several code pages equally plausible: then Western European, the
        # code page spreadsheet programs write in most shops, unless it reads worse.
        least = min(match.chaos for match in matches)
        plausible = [_codec_name(m.encoding) for m in matches if m.chaos <= least + 0.01]
        name = "cp1252" if "cp1252" in plausible else plausible[0]
    if name in ("latin_1", "iso8859_1") and _decodes(raw, "cp1252"):
        name = "cp1252"  # the same letters, and 0x80-0x9f are €, –, “ ” rather than control codes
    for candidate in (name, "cp1252", "latin_1"):
        try:
            text = raw.decode(candidate)
        except UnicodeDecodeError:
            continue
        shown = _SHOWN.get(candidate, candidate)
        return text, Decision("encoding", None, shown, "not UTF-8; detected by charset-normalizer")
    raise EncodingError("the file's encoding could not be detected")  # latin-1 decodes anything: unreachable


#: Single-byte encodings tried for a file that is not UTF-8 (Windows code pages first).
_CANDIDATES = ["cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1257", "iso8859_15", "latin_1", "utf_16",
               "mac_roman", "cp437"]
_SHOWN = {"cp1252": "windows-1252", "cp1250": "windows-1250", "cp1251": "windows-1251", "latin_1": "latin-1",
          "iso8859_15": "iso-8859-15"}


def _utf16_without_bom(raw: bytes) -> str | None:
    """utf-16-le or utf-16-be when the zero bytes of mostly-ASCII UTF-16 text show it."""
    sample = raw[:4096]
    half = len(sample) // 2
    if half < 4:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    if odd > 0.4 * half and even < 0.05 * half:
        return "utf-16-le"
    if even > 0.4 * half and odd < 0.05 * half:
        return "utf-16-be"
    return None


def looks_binary(text: str) -> bool:
    """Text with NUL bytes or many control characters is not a CSV file (an image, a program, ...)."""
    sample = text[:4096]
    if "\x00" in sample:
        return True
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\r\n")
    return controls > max(2, len(sample) // 100)


def _codec_name(name: str) -> str:
    return codecs.lookup(name).name.replace("-", "_")


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


# -------------------------------------------------------------------------------------------------- dates

_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?)?"
                  r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?$")
_NUMERIC = re.compile(r"^(\d{1,4})([/.\-])(\d{1,2})\2(\d{2,4})(?:[ T,]+(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?"
                      r"\s*([AaPp][Mm])?)?$")
_SERIAL = re.compile(r"^\d{5}(?:\.\d+)?$")
_EXCEL_EPOCH = pd.Timestamp("1899-12-30")


@dataclass
class DateReading:
    """Dates read from a column: midnight of each line's day (NaT where unreadable)."""

    days: pd.Series
    decisions: list[Decision] = field(default_factory=list)
    question: Question | None = None


def read_dates(values: pd.Series, column: str, *, order: DateOrder | None = None, timezone: str | None = None,
               serials: bool = False) -> DateReading:
    """Read dates written as ISO (with or without time, ``Z`` or an offset), d/m/y, m/d/y or y/m/d with
    slashes, dots or dashes (optionally a time), month names, or (``serials``, XLSX) Excel serial numbers.

    Day-first or month-first is decided from all the values: a first number above 12
    means day-first, a second above 12 month-first, dates written with dots are
    day-first by convention. ``order`` overrides it. When no value can tell, the
    reading has a :class:`Question` (and no days). A timestamp with an offset is put
    on its local calendar day (the date as written), or with ``timezone`` (an IANA
    name, ``BI_TIMEZONE``) converted to that zone first; one without an offset is taken
    as already in it.
    """
    text = _text(values)
    uniques = _uniques(text).to_numpy(dtype=object)
    reading = DateReading(days=pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]"))
    if not len(uniques):
        return reading
    fast = _iso_days_fast(uniques) if timezone is None else None
    if fast is not None:
        parsed = fast
    else:
        parsed = np.full(len(uniques), np.datetime64("NaT"), dtype="datetime64[ns]")
        ustr = pd.Series(uniques, dtype=object)
        iso = ustr.str.extract(_ISO)
        is_iso = iso[0].notna().to_numpy()
        if is_iso.any():
            parsed[is_iso] = _iso_days(iso[is_iso], timezone, reading)
        numeric = ustr.str.extract(_NUMERIC)
        is_numeric = numeric[0].notna().to_numpy() & ~is_iso
        if is_numeric.any():
            chosen = _decide_order(numeric[is_numeric], column, order, reading)
            if reading.question is not None:
                return reading
            parsed[is_numeric] = _numeric_days(numeric[is_numeric], chosen)
        rest = ~is_iso & ~is_numeric
        if serials:
            is_serial = rest & ustr.str.match(_SERIAL).to_numpy()
            if is_serial.any():
                days = pd.to_numeric(ustr[is_serial]).to_numpy()
                parsed[is_serial] = (_EXCEL_EPOCH + pd.to_timedelta(np.floor(days), unit="D")).to_numpy()
                reading.decisions.append(Decision("dates", column, "Excel serial numbers",
                                                  "numbers in a date column of a workbook"))
            rest &= ~is_serial
        if rest.any():  # month names and other spelled-out forms (no day/month ambiguity)
            others = pd.to_datetime(ustr[rest], format="mixed", dayfirst=order == "dmy", errors="coerce")
            parsed[rest] = others.dt.tz_localize(None).dt.normalize().to_numpy() if others.dt.tz is not None \
                else others.dt.normalize().to_numpy()
    positions = _positions(text, uniques)
    days = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[ns]")
    found = positions >= 0
    days[found] = parsed[positions[found]]
    reading.days = pd.Series(days, index=values.index)
    return reading


def _iso_days_fast(uniques: np.ndarray) -> np.ndarray | None:
    """Every value ``YYYY-MM-DD`` with an optional time and offset: the dates as written (Arrow)."""
    cells = pa.array(uniques, type=pa.string())
    if not pc.all(pc.match_substring_regex(cells, _ISO.pattern)).as_py():
        return None
    heads = pc.utf8_slice_codeunits(cells, 0, 10)
    if not pc.all(pc.match_substring_regex(heads, r"^\d{4}-\d{2}-\d{2}$")).as_py():
        return None
    days = pc.strptime(heads, format="%Y-%m-%d", unit="s", error_is_null=True)
    return days.to_numpy(zero_copy_only=False).astype("datetime64[ns]")


def _iso_days(parts: pd.DataFrame, timezone: str | None, reading: DateReading) -> np.ndarray:
    year, month, day = (pd.to_numeric(parts[i]) for i in (0, 1, 2))
    hour = pd.to_numeric(parts[3]).fillna(0)
    minute = pd.to_numeric(parts[4]).fillna(0)
    second = pd.to_numeric(parts[5]).fillna(0)
    valid_time = (hour < 24) & (minute < 60) & (second < 61)
    stamp = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": day}), errors="coerce")
    stamp = stamp.where(valid_time)
    if timezone is None:
        if parts[6].notna().any():
            reading.decisions.append(Decision("time zone", None, "local calendar day",
                                              "timestamps with an offset stay on the day they were written"))
        return stamp.to_numpy(dtype="datetime64[ns]")
    offset = parts[6].fillna("")
    sign = np.where(offset.str.startswith("-"), -1, 1)
    digits = offset.str.replace(r"[^0-9]", "", regex=True)
    offset_minutes = np.where(offset == "Z", 0, sign * (pd.to_numeric(digits.str[:2], errors="coerce").fillna(0) * 60
                                                       + pd.to_numeric(digits.str[2:4], errors="coerce").fillna(0)))
    moment = stamp + pd.to_timedelta(hour * 3600 + minute * 60 + second, unit="s")
    has_offset = (offset != "").to_numpy()
    local = moment.copy()
    if has_offset.any():
        utc = (moment[has_offset] - pd.to_timedelta(offset_minutes[has_offset], unit="m")).dt.tz_localize("UTC")
        local[has_offset] = utc.dt.tz_convert(timezone).dt.tz_localize(None)
        reading.decisions.append(Decision("time zone", None, timezone,
                                          "timestamps with an offset are put on their day in BI_TIMEZONE"))
    return local.dt.normalize().to_numpy(dtype="datetime64[ns]")


def _decide_order(parts: pd.DataFrame, column: str, order: DateOrder | None, reading: DateReading) -> DateOrder:
    first = pd.to_numeric(parts[0])
    second = pd.to_numeric(parts[2])
    if (parts[0].str.len() == 4).all():
        reading.decisions.append(Decision("date order", column, DATE_ORDER_NAMES["ymd"], "the year comes first"))
        return "ymd"
    def written(rows: pd.DataFrame) -> list[str]:
        return [f"{a}{s}{b}{s}{c}" for a, s, b, c in rows[[0, 1, 2, 3]].itertuples(index=False)]

    day_first, month_first = written(parts[first > 12]), written(parts[second > 12])
    if order is not None:
        reading.decisions.append(Decision("date order", column, DATE_ORDER_NAMES[order], "as asked"))
        return order
    if day_first and not month_first:
        reading.decisions.append(Decision("date order", column, DATE_ORDER_NAMES["dmy"],
                                          f"{_dates(len(day_first))} such as {day_first[0]} can only be day-first"))
        return "dmy"
    if month_first and not day_first:
        reading.decisions.append(Decision("date order", column, DATE_ORDER_NAMES["mdy"],
                                          f"{_dates(len(month_first))} such as {month_first[0]} can only be "
                                          "month-first"))
        return "mdy"
    examples = tuple(dict.fromkeys(written(parts)))[:3]
    if month_first and day_first:
        reading.question = Question(
            "date_order", column,
            f"The dates in {column!r} contradict each other: {day_first[0]} can only be day-first and "
            f"{month_first[0]} only month-first. Which order is the file written in? Dates that do not fit "
            "it will be listed as rejected rows.", (day_first[0], month_first[0]))
        return "dmy"
    if (parts[1] == ".").all():
        reading.decisions.append(Decision("date order", column, DATE_ORDER_NAMES["dmy"],
                                          "dates written with dots are day-first"))
        return "dmy"
    reading.question = Question(
        "date_order", column,
        f"Every date in {column!r} has a day of 12 or less (e.g. {', '.join(examples)}), so they read as well "
        "day-first as month-first. Which order is the file written in?", examples)
    return "dmy"


def _dates(n: int) -> str:
    return "1 date" if n == 1 else f"{n:,} dates"


def _numeric_days(parts: pd.DataFrame, order: DateOrder) -> np.ndarray:
    a, b, c = (pd.to_numeric(parts[i]) for i in (0, 2, 3))
    if order == "ymd":
        year, month, day = a, b, c
    elif order == "dmy":
        day, month, year = a, b, c
    else:
        month, day, year = a, b, c
    year = year.where(year >= 100, year + np.where(year < 70, 2000, 1900))
    hour = pd.to_numeric(parts[4]).fillna(0)
    minute = pd.to_numeric(parts[5]).fillna(0)
    valid_time = (hour < 24) & (minute < 60) & ~(parts[7].notna() & ((hour > 12) | (hour == 0)))
    stamp = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": day}), errors="coerce")
    return stamp.where(valid_time).to_numpy(dtype="datetime64[ns]")


# ------------------------------------------------------------------------------------------------ numbers

#: Currency signs and codes, spaces (including non-breaking and narrow ones) and apostrophes (Swiss grouping).
_NOISE = re.compile(r"[\s\u00a0\u202f$€£¥₹₽₩'’]|\b[A-Z]{3}\b|\b(?:CHF|Fr\.?|kr|zł|Kč|R\$)", re.UNICODE)
_GROUPED_POINT = re.compile(r"^[+-]?[1-9]\d{0,2}(?:\.\d{3})+$")  # 1.234 or 1.234.567: thousands with dots?
_GROUPED_COMMA = re.compile(r"^[+-]?[1-9]\d{0,2}(?:,\d{3})+$")  # 1,234 or 1,234,567: thousands with commas?


@dataclass
class NumberReading:
    """Numbers read from a column (NaN where unreadable), with the decimal mark and why."""

    numbers: pd.Series
    mark: str | None = None  # None: no value needed one
    reason: str = ""
    question: Question | None = None


def read_numbers(values: pd.Series, column: str, *, decimal: str | None = None, fallback: str | None = None,
                 percent: bool = False) -> NumberReading:
    """Read numbers as shops write them: ``12.50``, ``12,50``, ``1,234.56``, ``1.234,56``, ``$1,234.50``,
    ``€ 12,50``, ``(12.00)`` (negative), ``12.00-``, ``15%``.

    The decimal mark is decided from all the values, whatever the file's delimiter:
    both marks in one value (the last is the decimal), one comma or point followed by
    other than three digits (``12,50``, ``0.125``), or repeated marks (``1.234.567``).
    ``decimal`` overrides it; ``fallback`` (what the file's other columns use) decides a
    column whose values only hold forms such as ``1.234`` (1234 or 1.234). Without
    either, such a column gets a :class:`Question`, and a column whose values contradict
    each other too. ``percent``: 15 and 15% mean 0.15.
    """
    text = _text(values)
    plain = _plain_numbers(text)
    if plain is not None and decimal != ",":
        distinct = pc.unique(_arrow(text))  # Arrow's hash, once for both looks
        ambiguous = _matching(distinct, _GROUPED_POINT)
        example = _point_example(distinct)
        reading = NumberReading(plain)
        if ambiguous and not decimal and not example and fallback != ".":
            if fallback == ",":
                return _with_mark(text, ",", column, percent, "as the file's other columns")
            reading.question = _mark_question(column, ambiguous)
            return reading
        reading.mark = "." if (decimal or ambiguous or example) else None
        reading.reason = "as asked" if decimal else f"values such as {example!r}" if example else \
            "as the file's other columns"
        if percent:  # 15 means 15%; 0.15 stays
            reading.numbers = reading.numbers.where(~(reading.numbers > 1), reading.numbers / 100)
        return reading
    uniques = _uniques(text)
    if decimal:
        return _with_mark(text, decimal, column, percent, "as asked", uniques)
    cleaned = _clean(uniques)
    core = cleaned.str.replace(r"^[+-]|[+-]$|%$", "", regex=True)
    both = core.str.contains(",", regex=False) & core.str.contains(".", regex=False)
    last_comma = core.str.rfind(",") > core.str.rfind(".")
    one_comma = (core.str.count(",") == 1) & ~core.str.contains(".", regex=False)
    one_point = (core.str.count(r"\.") == 1) & ~core.str.contains(",", regex=False)
    comma_decimal = (both & last_comma) | (one_comma & ~core.str.match(_GROUPED_COMMA)) \
        | (~core.str.contains(",", regex=False) & (core.str.count(r"\.") > 1))
    point_decimal = (both & ~last_comma) | (one_point & ~core.str.match(_GROUPED_POINT)) \
        | (~core.str.contains(".", regex=False) & (core.str.count(",") > 1))
    ambiguous = tuple(uniques[(one_comma & core.str.match(_GROUPED_COMMA))
                              | (one_point & core.str.match(_GROUPED_POINT))].head(3))
    if comma_decimal.any() and point_decimal.any():
        examples = (uniques[comma_decimal].iloc[0], uniques[point_decimal].iloc[0])
        return NumberReading(pd.Series(np.nan, index=values.index), question=Question(
            "decimal", column, f"The numbers in {column!r} mix decimal marks: {examples[0]!r} reads with a decimal "
            f"comma and {examples[1]!r} with a decimal point. Which mark does the file use?", examples))
    if comma_decimal.any():
        example = uniques[comma_decimal].iloc[0]
        return _with_mark(text, ",", column, percent, f"values such as {example!r}", uniques)
    if point_decimal.any():
        example = uniques[point_decimal].iloc[0]
        return _with_mark(text, ".", column, percent, f"values such as {example!r}", uniques)
    if ambiguous:
        if fallback:
            return _with_mark(text, fallback, column, percent, "as the file's other columns", uniques)
        return NumberReading(pd.Series(np.nan, index=values.index), question=_mark_question(column, ambiguous))
    return _with_mark(text, ".", column, percent, "", uniques)


def _mark_question(column: str, examples: tuple[str, ...]) -> Question:
    return Question("decimal", column,
                    f"The numbers in {column!r} (e.g. {', '.join(repr(e) for e in examples)}) read as well with a "
                    "decimal comma as with a decimal point (the other mark then separating thousands). Which mark "
                    "does the file use?", examples)


def _with_mark(text: pd.Series, mark: str, column: str, percent: bool, reason: str,
               uniques: pd.Series | None = None) -> NumberReading:
    """``text`` read with decimal ``mark`` (``uniques``: its distinct cells, when already at hand)."""
    uniques = _uniques(text) if uniques is None else uniques
    cleaned = _clean(uniques)
    negative = cleaned.str.match(r"^\(.*\)$") | cleaned.str.endswith("-")
    cleaned = cleaned.str.strip("()").str.rstrip("-")
    is_percent = cleaned.str.endswith("%")
    cleaned = cleaned.str.rstrip("%")
    group = "," if mark == "." else "."
    cleaned = cleaned.str.replace(group, "", regex=False)
    if mark == ",":
        cleaned = cleaned.str.replace(",", ".", regex=False)
    shaped = cleaned.str.match(r"^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$", case=False)
    parsed = pd.to_numeric(cleaned.where(shaped), errors="coerce").astype(float)
    parsed = parsed.where(~negative, -parsed.abs())
    if percent:
        parsed = parsed.where(~is_percent, parsed / 100)
    positions = _positions(text, uniques.to_numpy(dtype=object))
    values = parsed.to_numpy(dtype=float)
    numbers = pd.Series(np.where(positions >= 0, values[np.maximum(positions, 0)] if len(values) else np.nan,
                                 np.nan), index=text.index)
    if percent:
        numbers = numbers.where(~(numbers > 1), numbers / 100)
    return NumberReading(numbers, mark if reason else None, reason)


def _clean(uniques: pd.Series) -> pd.Series:
    return uniques.astype(str).str.replace(_NOISE, "", regex=True)


def _matching(distinct: pa.Array, pattern: re.Pattern) -> tuple[str, ...]:
    """Up to three of the ``distinct`` cells matching ``pattern`` (Arrow's regex: no Python string per cell)."""
    return tuple(distinct.filter(pc.match_substring_regex(distinct, pattern.pattern)).slice(0, 3).to_pylist())


def _point_example(distinct: pa.Array) -> str | None:
    """The first of the ``distinct`` cells whose point cannot be a thousands separator (0.125, 12.5, 12.50)."""
    dotted = pc.and_(pc.match_substring(distinct, "."),
                     pc.invert(pc.match_substring_regex(distinct, _GROUPED_POINT.pattern)))
    found = distinct.filter(dotted).slice(0, 1).to_pylist()
    return found[0] if found else None


def _text(values: pd.Series) -> pd.Series:
    """Cells as Arrow-backed text, stripped, "" for none (read_table's cells already are)."""
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
        return values.fillna("")
    return values.astype(pd.StringDtype("pyarrow")).fillna("").str.strip()


def _arrow(text: pd.Series) -> pa.Array:
    return pa.array(text, type=pa.string(), from_pandas=True)


def _uniques(text: pd.Series) -> pd.Series:
    """The distinct non-empty cells (Arrow's hash: far faster than Python objects at a million rows)."""
    distinct = pc.unique(_arrow(text))
    distinct = distinct.filter(pc.not_equal(distinct, ""))
    return pd.Series(distinct.to_pylist(), dtype=object)


def _positions(text: pd.Series, uniques: np.ndarray) -> np.ndarray:
    """Each cell's position among ``uniques`` (-1 for an empty cell)."""
    positions = pc.index_in(_arrow(text), value_set=pa.array(list(uniques), type=pa.string()))
    return positions.fill_null(-1).to_numpy(zero_copy_only=False)


def _plain_numbers(text: pd.Series) -> pd.Series | None:
    """Plain numbers (1234.5, -3, 1e3) as floats through Arrow's cast when every cell is one (the
    common case, about 20x faster than pandas); None when some cell is not."""
    cells = _arrow(text)
    try:
        parsed = pc.cast(pc.if_else(pc.equal(cells, ""), pa.scalar(None, pa.string()), cells), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return pd.Series(parsed.to_numpy(zero_copy_only=False), index=text.index, dtype=float)
