"""Importing a file end to end: read, map, validate, report, load (the CLI now, the upload page next)."""

from __future__ import annotations

import csv
import functools
import json
import logging
import re
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import psycopg2
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bi_app.metrics import record_work
from data_layer.engine import describe_error
from data_layer.importer import (
    FIELDS,
    STATUS_CLASSES,
    FileImportError,
    ImportChoices,
    ReadLimits,
    SourceTable,
    Validation,
    auto_mapping,
    read_table,
    validate,
)
from data_layer.loader import LoadError, load_mode, load_orders, orders_already_stored
from data_layer.meta import data_currency
from data_layer.parsing import DATE_ORDERS, DECIMAL_MARKS, Question

log = logging.getLogger(__name__)

LOAD_CHUNK_ROWS = 100_000
SHOWN_REJECTS = 15
#: What to do when an append meets orders already stored.
TO_REPLACE_STORED = ("import in upsert mode to replace their stored versions, or in replace mode to replace all "
                     "stored orders")


@dataclass(frozen=True)
class ImportOutcome:
    """What an import did: rows in = written + rejected, always; ``questions`` stopped it."""

    rows_in: int
    written: int
    rejected: int
    failed: bool
    report: Path | None
    rejects: Path | None
    questions: tuple[Question, ...] = ()
    #: True when the load as a whole would be refused (an append of orders already stored), not its rows.
    refused: bool = False


def upload_folder(upload_id: str) -> Path:
    """Where an upload on the Data page and its reports are kept: ``BI_DATA_DIR/uploads/<id>``."""
    from bi_app.context import current_config

    if not isinstance(upload_id, str) or not re.fullmatch(r"[0-9a-f]{32}", upload_id):
        raise ValueError("bad upload id")
    return current_config().data_dir / "uploads" / upload_id


#: What :func:`receive_upload` names a file: letters, digits, ``.``, ``_`` and ``-``.
SAFE_FILE_NAME = r"[A-Za-z0-9._-]{1,200}"


@dataclass(frozen=True)
class Upload:
    """A file uploaded on the Data page, kept under :func:`upload_folder` until it is imported."""

    id: str
    file: str

    @classmethod
    def from_store(cls, data: Any) -> Upload | None:
        """The upload a Data page store names (``{"id", "file", ...}``, as :func:`receive_upload` made it);
        None for anything else (a crafted callback's)."""
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("file"), str):
            return None
        upload = cls(data["id"], data["file"])
        try:
            upload.path  # noqa: B018 - checks the id and the name
        except ValueError:
            return None
        return upload

    @property
    def path(self) -> Path:
        """The file in its upload's folder; ValueError for a name that is not a plain file name (a
        crafted callback's ``../`` or absolute path)."""
        if not isinstance(self.file, str) or not re.fullmatch(SAFE_FILE_NAME, self.file) or self.file in (".", ".."):
            raise ValueError("bad upload file name")
        return upload_folder(self.id) / self.file


#: How long an upload (and its import report) is kept after its last change: a day to read the report.
KEEP_UPLOADS = timedelta(hours=24)


#: The largest file the Data page takes.
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
#: An upload is written to disk in pieces of this size: its memory, whatever the file's size.
UPLOAD_CHUNK_BYTES = 1024 * 1024


class UploadError(ValueError):
    """A file that was not taken, with the reason in words for the page, and the HTTP status that says so."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def receive_upload(stream: IO[bytes], size: int, filename: str | None) -> Upload:
    """Write the ``size`` bytes of ``stream`` (an upload's request body) to a new upload, a chunk at a time
    (nothing is held in memory but one chunk); its name made safe for the file system. Uploads older than
    :data:`KEEP_UPLOADS` are removed on the way. :class:`UploadError` for a file past
    :data:`MAX_UPLOAD_BYTES` (before anything is read) or that does not arrive whole (nothing is kept)."""
    if size > MAX_UPLOAD_BYTES:
        raise UploadError(f"the file is {size / 1048576:,.0f} MB: the most a file may be is "
                          f"{MAX_UPLOAD_BYTES / 1048576:,.0f} MB. Split it, or compress it (.csv.gz).", status=413)
    upload = Upload(uuid.uuid4().hex, re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename or "upload.csv").name)[:200])
    remove_old_uploads(upload.path.parent.parent)
    upload.path.parent.mkdir(parents=True, exist_ok=True)
    partial = upload.path.with_name(upload.path.name + ".part")
    received = 0
    try:
        with open(partial, "wb") as out:
            while chunk := stream.read(UPLOAD_CHUNK_BYTES):
                received += len(chunk)
                out.write(chunk)
        if received != size:
            raise UploadError(f"the file did not arrive whole ({received:,} of {size:,} bytes). Please send it again.")
        partial.rename(upload.path)
    except BaseException:
        shutil.rmtree(upload.path.parent, ignore_errors=True)
        raise
    return upload


def remove_old_uploads(folder: Path, keep: timedelta = KEEP_UPLOADS) -> list[str]:
    """Remove the uploads under ``folder`` whose files all are older than ``keep``; their ids."""
    if not folder.is_dir():
        return []
    oldest = time.time() - keep.total_seconds()
    removed = []
    for upload in folder.iterdir():
        if not upload.is_dir() or not re.fullmatch(r"[0-9a-f]{32}", upload.name):
            continue
        newest = max((entry.stat().st_mtime for entry in upload.iterdir()), default=upload.stat().st_mtime)
        if newest < oldest:
            shutil.rmtree(upload, ignore_errors=True)
            removed.append(upload.name)
    return removed


#: How often each server process looks for uploads past :data:`KEEP_UPLOADS` (besides at each new upload).
CLEAN_UPLOADS_EVERY = timedelta(hours=1)


def start_cleaner(folder: Path, every: timedelta = CLEAN_UPLOADS_EVERY) -> threading.Event:
    """Remove the uploads (or prepared downloads) under ``folder`` older than :data:`KEEP_UPLOADS`, now and then
    every ``every``, in a thread of this process, until the returned event is set (a server that sees no new
    upload for days still removes the old ones)."""
    stop = threading.Event()

    def clean() -> None:
        while True:
            try:
                remove_old_uploads(folder)
            except OSError as exc:  # a folder removed under us, a permission: try again next time
                log.warning("Could not remove old uploads in %s: %s", folder, exc)
            if stop.wait(every.total_seconds()):
                return

    threading.Thread(target=clean, name="upload-cleaner", daemon=True).start()
    return stop


@functools.lru_cache(maxsize=1)  # an upload can be 200 MB: only the latest stays
def _read_upload(path: Path, encoding: str | None, modified_ns: int, limits: ReadLimits) -> SourceTable:
    return read_table(path, encoding, limits)


def read_upload(upload: Upload, encoding: str | None = None) -> SourceTable:
    """The upload's rows as text (:func:`data_layer.importer.read_table`), read once for each
    encoding asked: every change of the mapping or the choices on the Data page reuses them."""
    from bi_app.context import current_config

    return _read_upload(upload.path, encoding, upload.path.stat().st_mtime_ns, current_config().read_limits)


MAPPING_FILE_KEYS = ("columns", "statuses", "date_order", "decimal", "encoding", "drop_identical")


def read_mapping_file(mapping_file: Path | None) -> dict:
    """A mapping file: ``{"COLUMN": "FIELD", ...}``, or an object with any of
    :data:`MAPPING_FILE_KEYS` (``columns`` as before, ``statuses`` as ``{"STATUS": "counted"}``)."""
    if mapping_file is None:
        return {}
    try:
        loaded = json.loads(mapping_file.read_text())
    except (OSError, ValueError) as exc:
        raise FileImportError(f"cannot read the mapping file {mapping_file}: {exc}") from None
    if not isinstance(loaded, dict):
        raise FileImportError('the mapping file must be a JSON object {"COLUMN": "FIELD", ...}')
    if not set(loaded) & set(MAPPING_FILE_KEYS):
        loaded = {"columns": loaded}
    unknown = sorted(set(loaded) - set(MAPPING_FILE_KEYS))
    if unknown:
        raise FileImportError(f"the mapping file has unknown key(s) {', '.join(unknown)}; "
                           f"keys: {', '.join(MAPPING_FILE_KEYS)}")
    for key in ("columns", "statuses"):
        value = loaded.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise FileImportError(f'"{key}" in the mapping file must be an object of text values')
    return loaded


def parse_choices(mapping_file: Path | None = None, *, date_order: str | None = None, decimal: str | None = None,
                  encoding: str | None = None, status_maps: Iterable[str] = (), drop_identical: bool = False,
                  timezone: str | None = None, currency: str | None = None) -> ImportChoices:
    """The import choices of the command line's options on top of the mapping file's."""
    loaded = read_mapping_file(mapping_file)
    statuses = dict(loaded.get("statuses", {}))
    for option in status_maps:
        status, separator, kind = option.rpartition("=")
        if not separator:
            raise FileImportError(f"--status-map {option!r}: write it as STATUS=CLASS")
        statuses[status] = kind
    for status, kind in statuses.items():
        if kind not in STATUS_CLASSES:
            raise FileImportError(f"status {status!r}: {kind!r} is not one of {', '.join(STATUS_CLASSES)}")
    date_order = date_order or loaded.get("date_order")
    decimal = decimal or loaded.get("decimal")
    if date_order is not None and date_order not in DATE_ORDERS:
        raise FileImportError(f"date order {date_order!r}: use one of {', '.join(DATE_ORDERS)}")
    if decimal is not None and decimal not in DECIMAL_MARKS:
        raise FileImportError(f"decimal mark {decimal!r}: use . or ,")
    return ImportChoices(date_order=date_order, decimal=decimal, encoding=encoding or loaded.get("encoding"),
                         statuses=statuses, drop_identical=drop_identical or bool(loaded.get("drop_identical")),
                         timezone=timezone, currency=currency)


#: The field that leaves a column out of the import (``--map COLUMN=none``), whatever its name matched.
UNUSED = "none"


def parse_map_options(maps: Iterable[str], mapping_file: Path | None) -> tuple[dict[str, str], set[str]]:
    """``COLUMN=FIELD`` options and a mapping file's columns: field -> column, and the columns to leave
    unused (``COLUMN=none``)."""
    pairs: dict[str, str] = dict(read_mapping_file(mapping_file).get("columns", {}))
    for option in maps:
        column, separator, field_name = option.rpartition("=")
        if not separator or not column or not field_name:
            raise FileImportError(f"--map {option!r}: write it as COLUMN=FIELD (or COLUMN={UNUSED} to leave it out)")
        pairs[column] = field_name
    mapping: dict[str, str] = {}
    for column, field_name in pairs.items():
        if field_name not in (*FIELDS, UNUSED):
            raise FileImportError(f"--map {column}={field_name}: unknown field; fields: {', '.join(FIELDS)} "
                                  f"(or {UNUSED} to leave the column out)")
        if field_name != UNUSED:
            mapping[field_name] = column
    return mapping, {column for column, field_name in pairs.items() if field_name == UNUSED}


def import_file(engine: Engine, path: Path, overrides: dict[str, str], *, mode: str, skip_invalid: bool,  # noqa: PLR0913 - keyword-only options
                dry_run: bool, report_dir: Path | None, echo: Callable[[str], None],
                without: Iterable[str] = (), unused_columns: Iterable[str] = (),
                choices: ImportChoices = ImportChoices(),
                progress: Callable[[int], AbstractContextManager[Callable[[int], None]]] | None = None,
                limits: ReadLimits = ReadLimits()) -> ImportOutcome:
    """Import ``path`` into ``engine``'s database in one transaction, printing what happens.

    ``overrides`` (field -> column) go on top of the automatic mapping; ``without``
    names fields to leave unmapped even when a column matched, ``unused_columns`` columns to leave out
    whatever their names match; ``choices`` answer what
    the file cannot tell (the outcome's ``questions`` say what is left to answer).
    ``progress(total)`` gives a context whose value is called with each loaded chunk's
    line count. A file past ``limits`` is refused (:class:`FileImportError`) before it is read on.
    """
    started = time.perf_counter()
    source = read_table(path, choices.encoding, limits)
    echo(f"Read {path.name}: {source.row_count:,} rows, {len(source.columns)} columns "
         f"({source.encoding}{f', delimiter {source.delimiter!r}' if source.delimiter else ''}) "
         f"in {time.perf_counter() - started:.2f} s")
    skipped, left_out = set(without), set(unused_columns)
    if not_there := sorted(left_out - set(source.columns)):  # a typo must not leave the column in use
        raise FileImportError(f"no column {', '.join(map(repr, not_there))} in the file; "
                              f"columns: {', '.join(source.columns)}")
    automatic = {f: c for f, c in auto_mapping(c for c in source.columns if c not in left_out).items()
                 if c not in overrides.values() and f not in skipped}
    mapping = {**automatic, **overrides}
    echo("Column mapping:")
    for field_name in FIELDS:
        if field_name in mapping:
            echo(f"  {field_name:<20} <- {mapping[field_name]}{'' if field_name not in overrides else '  (as chosen)'}")
    unused = [c for c in source.columns if c not in mapping.values()]
    if unused:
        echo(f"  not used: {', '.join(unused)}")
    started = time.perf_counter()
    result = validate(source, mapping, choices)
    errors = result.errors
    report, rejects = write_report(path, source, result, report_dir)
    echo("How the file was read:")
    for decision in result.decisions:
        echo(f"  {decision}")
    if not result.currency:
        stored = stored_currency(engine) if mode != "replace" else None
        echo(f"  currency: {stored} (no currency column: the stored orders')" if stored else
             f"  currency: {choices.currency or 'the configured one'} (no currency column: the configured one)")
    if result.questions:
        echo("The file cannot be imported until these are answered:")
        for question in result.questions:
            echo(f"  {question.message}")
        echo(f"Nothing written ({result.rows_in:,} rows in).")
        return ImportOutcome(result.rows_in, 0, result.rows_in, True, report, None, tuple(result.questions))
    echo(f"Validation: {result.summary()} (checked in {time.perf_counter() - started:.2f} s)")
    for rejected in result.rejected[:SHOWN_REJECTS]:
        echo(f"  line {rejected.line}, {rejected.column}: {rejected.reason}")
    if len(result.rejected) > SHOWN_REJECTS:
        echo(f"  ... {len(result.rejected) - SHOWN_REJECTS:,} more in the report")
    echo(f"Report: {report}" + (f"; rejected rows: {rejects}" if rejects else ""))

    def outcome(written: int, failed: bool, how: str = "written") -> ImportOutcome:
        rejected = result.rows_in - written
        # Lines a status or a line id leaves out are not errors: say so where they are counted.
        by_rule = len(result.rejected) - len(errors) if written else 0
        echo(f"{result.rows_in:,} row{'s' if result.rows_in != 1 else ''} in = {written:,} {how} + {rejected:,} "
             "rejected" + (f" ({by_rule:,} of them left out by rule, not invalid)" if by_rule else ""))
        return ImportOutcome(result.rows_in, written if how == "written" else 0, rejected, failed, report, rejects)

    if errors and not skip_invalid:
        echo(f"Nothing written: {len(errors):,} invalid row{'s' if len(errors) != 1 else ''}. Fix "
             f"{'them' if len(errors) != 1 else 'it'}, or import the valid rows only.")
        return outcome(0, failed=True)
    if dry_run:
        echo("Dry run: nothing written.")
        already = _already_stored(engine, result.lines["order_id"].unique()) if mode == "append" else ""
        if already:
            echo(f"{already}, so an append would write nothing: {TO_REPLACE_STORED}")
            echo(f"{result.rows_in:,} row{'s' if result.rows_in != 1 else ''} in = 0 to write (the append is refused)")
            return ImportOutcome(result.rows_in, 0, result.rows_in, True, report, rejects, refused=True)
        return outcome(len(result.lines), failed=False, how="to write")
    if result.lines.empty and not (mode == "upsert" and result.excluded_orders):
        echo("Nothing to write.")
        return outcome(0, failed=False)
    if mode == "upsert" and result.excluded_orders:
        count = len(result.excluded_orders)
        echo(f"{count:,} order{'s' if count != 1 else ''} of the file {'are' if count != 1 else 'is'} no longer "
             "counted (by status): stored lines of them are removed")
    table = result.to_arrow()
    chunks = [table.slice(start, LOAD_CHUNK_ROWS) for start in range(0, table.num_rows, LOAD_CHUNK_ROWS)]
    try:
        with progress(table.num_rows) if progress else nullcontext(None) as advance:
            loaded = load_orders(engine, chunks, mode=load_mode(mode), source=f"import {path.name}",
                                 on_progress=advance,
                                 currency=result.currency, configured_currency=choices.currency,
                                 remove_orders=result.excluded_orders if mode == "upsert" else ())
    except (IntegrityError, sqlite3.IntegrityError, psycopg2.IntegrityError) as exc:
        if not _is_duplicate_key(exc):
            raise LoadError(f"the database refused the lines, so nothing was written: {describe_error(exc)}") from None
        already = (_already_stored(engine, result.lines["order_id"].unique())
                   or "some orders of the file are already stored")
        raise LoadError(f"{already}, so nothing was written: {TO_REPLACE_STORED}") from None
    if not loaded.changed:
        echo("Every order in the file is already stored exactly so: nothing changed.")
        return outcome(len(result.lines), failed=False, how="already stored as they are")
    record_work("import", loaded.seconds)
    echo(f"Loaded {loaded.rows_in:,} line{'s' if loaded.rows_in != 1 else ''} ({mode}) in {loaded.seconds:.2f} s; "
         f"summary tables {loaded.summary_note}; {loaded.rows_stored:,} line{'s' if loaded.rows_stored != 1 else ''} "
         f"stored; data version {loaded.data_version}")
    if loaded.upgrades:
        echo("The orders table was made by another tool or an older version of this app, and now has this app's "
             f"layout: {'; '.join(loaded.upgrades)}.")
    return outcome(loaded.rows_in, failed=False)


def _already_stored(engine: Engine, order_ids: Sequence[str]) -> str:
    """How many of the file's orders are stored already, with the first few ids ("2 orders of the file are
    already stored (A-1, A-7)"); "" when none are or the database cannot say (the import will)."""
    try:
        with engine.connect() as conn:
            count, named = orders_already_stored(conn, list(order_ids))
    except SQLAlchemyError:
        return ""
    if not count:
        return ""
    # A long id keeps its start and its end (ids that differ only at the end stay apart).
    listed = ", ".join(name if len(name) <= 40 else f"{name[:19]}…{name[-20:]}" for name in named) + (
        ", ..." if count > len(named) else "")
    return (f"{count:,} order{'s' if count != 1 else ''} of the file {'are' if count != 1 else 'is'} already stored "
            f"({listed})")


def stored_currency(engine: Engine) -> str | None:
    """The stored orders' currency, if one is recorded (None when the database cannot say)."""
    try:
        with engine.connect() as conn:
            return data_currency(conn)
    except SQLAlchemyError:
        return None  # the load says what is wrong with the database


def _is_duplicate_key(exc: Exception) -> bool:
    """A unique-key violation (an order line already stored), not another constraint."""
    original = getattr(exc, "orig", exc)
    return getattr(original, "pgcode", None) == "23505" or "UNIQUE constraint failed" in str(original)


def write_report(path: Path, source: SourceTable, result: Validation, report_dir: Path | None
                 ) -> tuple[Path, Path | None]:
    """The report and, when rows were rejected, the rejected rows themselves as CSV, beside the
    file or in ``report_dir``.

    The report's rows (line, column, reason, kind): first how the file was read (kind
    ``decision``, no line) and what it could not tell (``question``), then every rejected row
    (``invalid`` or ``left out by rule``).
    """
    folder = report_dir or path.parent
    try:
        return _write_report(folder, report_stem(path), source, result)
    except OSError as exc:
        raise FileImportError(f"cannot write the import report in {folder}: {exc.strerror or exc}; "
                           "nothing was written to the database") from None


def report_stem(path: Path) -> str:
    """The file's name without its data suffixes (orders.2024-01.csv.gz -> orders.2024-01)."""
    name = path.name
    for suffix in (".gz", ".csv", ".tsv", ".txt", ".xlsx", ".xlsm"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or path.name


def _write_report(folder: Path, stem: str, source: SourceTable, result: Validation) -> tuple[Path, Path | None]:
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / f"{stem}.import-report.csv"
    rejects = folder / f"{stem}.rejects.csv"
    with report.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "column", "reason", "kind"])
        for decision in result.decisions:
            writer.writerow(["", decision.column or "", f"{decision.topic}: {decision.choice} ({decision.reason})",
                             "decision"])
        if result.identical:
            writer.writerow(["", "", f"identical lines: {result.identical:,} "
                             f"{'left out' if result.dropped_identical else 'kept'}", "decision"])
        for question in result.questions:
            writer.writerow(["", question.column or "", question.message, "question"])
        for rejected in result.rejected:
            writer.writerow([rejected.line, rejected.column, rejected.reason,
                             "invalid" if rejected.blocking else "left out by rule"])
    if not result.rejected:
        rejects.unlink(missing_ok=True)  # an earlier import's rejects are not this one's
        return report, None
    by_line = source.rows_at(r.line for r in result.rejected)
    with rejects.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "reason", *source.columns])
        for rejected in result.rejected:
            writer.writerow([rejected.line, rejected.reason, *by_line[rejected.line]])
    return report, rejects
