"""Importing a file end to end: read, map, validate, report, load (the CLI now, the upload page next)."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from contextlib import nullcontext
from typing import Callable, ContextManager, Iterable

import psycopg2
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from data_layer.importer import FIELDS, ImportError_, SourceTable, Validation, auto_mapping, read_table, validate
from data_layer.loader import LoadError, load_orders

LOAD_CHUNK_ROWS = 100_000
SHOWN_REJECTS = 15


@dataclass(frozen=True)
class ImportOutcome:
    """What an import did: rows in = written + rejected, always."""

    rows_in: int
    written: int
    rejected: int
    failed: bool
    report: Path | None
    rejects: Path | None


def upload_folder(upload_id: str) -> Path:
    """Where an upload on the Data page and its reports are kept: ``BI_DATA_DIR/uploads/<id>``."""
    from bi_app.context import current_config

    if not re.fullmatch(r"[0-9a-f]{32}", upload_id or ""):
        raise ValueError("bad upload id")
    return current_config().data_dir / "uploads" / upload_id


def parse_map_options(maps: Iterable[str], mapping_file: Path | None) -> dict[str, str]:
    """``COLUMN=FIELD`` options and a JSON ``{"COLUMN": "FIELD"}`` file -> field -> column."""
    pairs: dict[str, str] = {}
    if mapping_file is not None:
        try:
            loaded = json.loads(mapping_file.read_text())
        except (OSError, ValueError) as exc:
            raise ImportError_(f"cannot read the mapping file {mapping_file}: {exc}") from None
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise ImportError_('the mapping file must be a JSON object {"COLUMN": "FIELD", ...}')
        pairs.update(loaded)
    for option in maps:
        column, separator, field_name = option.rpartition("=")
        if not separator or not column or not field_name:
            raise ImportError_(f"--map {option!r}: write it as COLUMN=FIELD")
        pairs[column] = field_name
    mapping: dict[str, str] = {}
    for column, field_name in pairs.items():
        if field_name not in FIELDS:
            raise ImportError_(f"--map {column}={field_name}: unknown field; fields: {', '.join(FIELDS)}")
        mapping[field_name] = column
    return mapping


def import_file(engine: Engine, path: Path, overrides: dict[str, str], *, mode: str, skip_invalid: bool,
                dry_run: bool, report_dir: Path | None, echo: Callable[[str], None],
                without: Iterable[str] = (),
                progress: Callable[[int], ContextManager[Callable[[int], None]]] | None = None) -> ImportOutcome:
    """Import ``path`` into ``engine``'s database in one transaction, printing what happens.

    ``overrides`` (field -> column) go on top of the automatic mapping; ``without``
    names fields to leave unmapped even when a column matched. ``progress(total)``
    gives a context whose value is called with each loaded chunk's line count.
    """
    started = time.perf_counter()
    source = read_table(path)
    echo(f"Read {path.name}: {source.row_count:,} rows, {len(source.columns)} columns "
         f"({source.encoding}{f', delimiter {source.delimiter!r}' if source.delimiter else ''}) "
         f"in {time.perf_counter() - started:.2f} s")
    skipped = set(without)
    automatic = {f: c for f, c in auto_mapping(source.columns).items()
                 if c not in overrides.values() and f not in skipped}
    mapping = {**automatic, **overrides}
    echo("Column mapping:")
    for field_name in FIELDS:
        if field_name in mapping:
            echo(f"  {field_name:<20} <- {mapping[field_name]}{'' if field_name not in overrides else '  (--map)'}")
    unused = [c for c in source.columns if c not in mapping.values()]
    if unused:
        echo(f"  not used: {', '.join(unused)}")
    started = time.perf_counter()
    result = validate(source, mapping)
    errors = result.errors
    report, rejects = write_report(path, source, result, report_dir)
    echo(f"Validation: {result.summary()} (checked in {time.perf_counter() - started:.2f} s)")
    for rejected in result.rejected[:SHOWN_REJECTS]:
        echo(f"  line {rejected.line}, {rejected.column}: {rejected.reason}")
    if len(result.rejected) > SHOWN_REJECTS:
        echo(f"  ... {len(result.rejected) - SHOWN_REJECTS:,} more in the report")
    echo(f"Report: {report}" + (f"; rejected rows: {rejects}" if rejects else ""))

    def outcome(written: int, failed: bool, how: str = "written") -> ImportOutcome:
        rejected = result.rows_in - written
        echo(f"{result.rows_in:,} rows in = {written:,} {how} + {rejected:,} rejected")
        return ImportOutcome(result.rows_in, written if how == "written" else 0, rejected, failed, report, rejects)

    if errors and not skip_invalid:
        echo(f"Nothing written: {len(errors):,} invalid rows. Fix them, or import the valid rows "
             "with --skip-invalid.")
        return outcome(0, failed=True)
    if dry_run:
        echo("Dry run: nothing written.")
        return outcome(len(result.lines), failed=False, how="to write")
    if result.lines.empty:
        echo("Nothing to write.")
        return outcome(0, failed=False)
    table = result.to_arrow()
    chunks = [table.slice(start, LOAD_CHUNK_ROWS) for start in range(0, table.num_rows, LOAD_CHUNK_ROWS)]
    try:
        with progress(table.num_rows) if progress else nullcontext(None) as advance:
            loaded = load_orders(engine, chunks, mode=mode, source=f"import {path.name}", on_progress=advance)
    except (IntegrityError, sqlite3.IntegrityError, psycopg2.IntegrityError):
        raise LoadError("some orders in the file are already stored, so nothing was written; "
                        "use --mode upsert to replace them (or --mode replace to replace everything)") from None
    if not loaded.changed:
        echo("Every order in the file is already stored exactly so: nothing changed.")
        return outcome(len(result.lines), failed=False, how="already stored as they are")
    summary = ("summary tables not rebuilt (queries read the raw rows)" if loaded.summary_seconds is None
               else f"summary tables rebuilt in {loaded.summary_seconds:.2f} s")
    echo(f"Loaded {loaded.rows_in:,} lines ({mode}) in {loaded.seconds:.2f} s; {summary}; "
         f"{loaded.rows_stored:,} lines stored; data version {loaded.data_version}")
    return outcome(loaded.rows_in, failed=False)


def write_report(path: Path, source: SourceTable, result: Validation, report_dir: Path | None
                 ) -> tuple[Path, Path | None]:
    """The report (every rejected row: line, column, reason, kind) and, when rows were rejected,
    the rejected rows themselves as CSV, beside the file or in ``report_dir``."""
    folder = report_dir or path.parent
    folder.mkdir(parents=True, exist_ok=True)
    stem = path.name.split(".")[0]
    report = folder / f"{stem}.import-report.csv"
    with report.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "column", "reason", "kind"])
        for rejected in result.rejected:
            writer.writerow([rejected.line, rejected.column, rejected.reason,
                             "invalid" if rejected.blocking else "left out by rule"])
    if not result.rejected:
        return report, None
    rejects = folder / f"{stem}.rejects.csv"
    by_line = source.rows_at(r.line for r in result.rejected)
    with rejects.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "reason", *source.columns])
        for rejected in result.rejected:
            writer.writerow([rejected.line, rejected.reason, *by_line[rejected.line]])
    return report, rejects
