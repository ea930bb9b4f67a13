"""The ``bi-app`` command line: demo data, serving, training, data checks and database info.

Every error ends as one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import difflib
import functools
import getpass
import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl

import click
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from bi_app.config import SETTINGS, Config, ConfigError, engine_for, shown_value, write_engine_for
from bi_app.metrics import record_work
from data_layer import stopping
from data_layer.audit import AuditEntry
from data_layer.audit import entries as audit_entries
from data_layer.audit import now as audit_now
from data_layer.audit import record as record_audit
from data_layer.bootstrap import load_demo_data
from data_layer.engine import DatabaseError, describe_error, safe_url
from data_layer.importer import FileImportError, MissingColumnsError
from data_layer.info import database_info, regions_in_data
from data_layer.loader import LoadError, LoadResult
from data_layer.meta import changed_rows, data_version, stamped_version
from data_layer.quality import QualityReport, quality_report
from data_layer.reports import ReportError
from data_layer.users import (
    ROLES,
    User,
    UserError,
    add_user,
    create_token,
    find_user,
    list_tokens,
    list_users,
    remove_user,
    revoke_token,
    set_email,
    set_password,
    set_regions,
    set_role,
)

F = TypeVar("F", bound=Callable[..., object])


def one_line_errors(func: F) -> F:
    """Turn the errors a user can cause (bad config, database down) into one clear line."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return func(*args, **kwargs)
        except (ConfigError, DatabaseError, LoadError, FileImportError, UserError, ReportError) as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # a data folder that is a file, or on a read-only disk, say
            where = f" {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"cannot use{where}: {exc.strerror or exc}") from None
        except SQLAlchemyError as exc:
            url = _config_or_none()
            raise click.ClickException(
                describe_error(exc, url.database_url if url else None)
            ) from None

    return wrapper  # type: ignore[return-value]


def _config_or_none() -> Config | None:
    try:
        return Config.from_env()
    except ConfigError:
        return None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """E-commerce business intelligence: dashboard, data loading and checks.

    The database comes from BI_DATABASE_URL (or DATABASE_URL); unset, an
    embedded SQLite file under ./data is used.
    """


@main.command("demo-data")
@click.option("--rows", default=2000, show_default=True, type=click.IntRange(min=1), help="Orders to generate.")
@click.option("--seed", default=42, show_default=True, type=int,
              help="Random seed; the same seed gives the same orders.")
@click.option("--replace", is_flag=True, help="Replace the stored orders instead of appending to them.")
@click.option("--train/--no-train", default=True, show_default=True,
              help="Train the customer models on the new data (else on first use).")
@one_line_errors
def demo_data(rows: int, seed: int, replace: bool, train: bool) -> None:
    """Generate realistic demo orders and load them in one transaction."""
    config = Config.from_env()
    engine = write_engine_for(config)
    click.echo(f"Loading {rows:,} demo orders (seed {seed}, {'replace' if replace else 'append'}) "
               f"into {safe_url(engine.url.render_as_string(hide_password=False))}")
    with click.progressbar(length=rows, label="Loading", show_percent=True, show_pos=True, file=sys.stderr) as bar:
        result = load_demo_data(engine, rows, seed, replace=replace, on_progress=bar.update)
    _print_load(result)
    if train:
        _train(config)


@main.command("train")
@click.option("--again", is_flag=True, help="Train anew even when the saved models are current.")
@one_line_errors
def train_command(again: bool) -> None:
    """Train the customer models (segmentation, churn) on the current data and save them.

    Models already saved for the last load are kept until other tools have changed a tenth of the
    order lines, or any line once they are a day old (or with --again).
    """
    _end_with_parent()
    _train(Config.from_env(), again=again)


def _train(config: Config, *, again: bool = False) -> None:
    import joblib

    from bi_app.context import models_folder
    from bi_app.ml.models import ModelStore, retraining_due
    from bi_app.service import answer_default_view

    engine = engine_for(config)
    with engine.connect() as conn:
        version = stamped_version(conn) or ""  # the last load's: other tools' rows since do not make a new one
        changes = changed_rows(conn, fresh=True)
    reasons: list[str] = []

    def due(models) -> bool:  # noqa: ANN001
        reasons.append("asked to" if again else retraining_due(models, changes) or "")
        return bool(reasons[-1])

    click.echo("Training the customer models ...")
    started = time.perf_counter()
    store = ModelStore(models_folder(config), answer_default_view)
    models = joblib.load(store.train(engine, version, again=due))
    if reasons and not reasons[-1]:
        click.echo(f"The saved models are current (trained {models.trained_at}); nothing to do.")
        return
    if reasons:
        click.echo(f"Retrained: {reasons[-1]}.")
    record_work("training", time.perf_counter() - started)
    _print_models(models, time.perf_counter() - started)


#: The deployment's gunicorn settings, which `bi-app serve` uses too.
GUNICORN_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "gunicorn.conf.py"
#: Addresses only this machine can reach.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8050, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Gunicorn worker processes (more than one needs BI_CACHE_URL=redis://...).")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(min=1), help="Threads per worker.")
@click.option("--debug", is_flag=True, help="Use Dash's development server with hot reload instead of gunicorn.")
@one_line_errors
def serve(host: str, port: int, workers: int, threads: int, debug: bool) -> None:
    """Serve the dashboard (gunicorn), seeding the embedded database on first run."""
    from bi_app.app import create_app, seed_embedded_database

    if debug and host not in LOOPBACK_HOSTS:
        raise click.ClickException(f"--debug runs Dash's development server, which runs code sent to it: it serves "
                                   f"this machine only ({', '.join(LOOPBACK_HOSTS)}), not {host}")
    config = Config.from_env()
    if host not in LOOPBACK_HOSTS and not config.secret_key:
        raise click.ClickException(f"without sign-in (demo mode) the dashboard serves this machine only, not {host}: "
                                   "set BI_SECRET_KEY to turn sign-in on and add users with bi-app users add")
    if not debug and not GUNICORN_CONFIG.is_file():
        raise click.ClickException(f"bi-app serve runs gunicorn with {GUNICORN_CONFIG}, which this installation lacks: "
                                   "run it from a checkout of the repository")
    from bi_app.context import start_training  # the web app's module: not loaded by other commands

    app = create_app(config) if debug else None
    if config.embedded and app is None:
        seed_embedded_database(config)
    start_training(config)
    click.echo(f"Dashboard on http://{host}:{port}  (database {safe_url(config.database_url)})")
    if app is not None:
        app.run(host=host, port=port, debug=True)
        return
    sys.stdout.flush()
    # gunicorn in place of this process (same pid: the training above ends with it), its master
    # holding no app: each worker builds its own (bi_app.wsgi.on_this_machine).
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONFIG),
                              "--bind", f"{host}:{port}", "--workers", str(workers), "--threads", str(threads),
                              "bi_app.wsgi:on_this_machine()"])


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--map", "maps", multiple=True, metavar="COLUMN=FIELD",
              help="Map a source column to a field (repeatable); overrides the automatic match. "
                   "COLUMN=none leaves a column out.")
@click.option("--mapping", "mapping_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='A JSON file of {"COLUMN": "FIELD", ...}, or of {"columns": {...}, "statuses": {"STATUS": '
                   '"counted"}, "date_order": "dmy", "decimal": ",", "encoding": "cp1252", "drop_identical": true}.')
@click.option("--date-order", type=click.Choice(["dmy", "mdy", "ymd"]),
              help="How the file writes dates like 01/02/2024 (default: decided from all the dates, or asked).")
@click.option("--decimal", type=click.Choice([".", ","]),
              help="The file's decimal mark (default: decided from all the numbers, or asked).")
@click.option("--encoding", help="The file's text encoding, e.g. utf-8, cp1252, utf-16 (default: detected).")
@click.option("--status-map", "status_maps", multiple=True, metavar="STATUS=CLASS",
              help="How a status counts: counted, excluded or refunded (repeatable); for statuses the built-in "
                   "vocabulary does not know, or to change its word.")
@click.option("--drop-identical", is_flag=True,
              help="Leave out lines identical in every cell to an earlier line (default: keep them; a shop may "
                   "sell the same item twice in a day).")
@click.option("--mode", type=click.Choice(["append", "replace", "upsert"]), default="append", show_default=True,
              help="append: add the orders; replace: replace all stored orders; upsert: replace the orders the "
                   "file holds (all their lines) and add the others.")
@click.option("--skip-invalid", is_flag=True, help="Write the valid rows and list the invalid ones in the rejects "
                                                   "CSV, instead of rejecting the whole file.")
@click.option("--dry-run", is_flag=True, help="Read, map and validate, write the report, change nothing.")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the report and rejects CSV go (default: beside FILE).")
@click.option("--train/--no-train", default=True, show_default=True,
              help="Retrain the customer models after a successful import (else on first use).")
@click.option("--time-limit", type=click.IntRange(min=1), metavar="SECONDS",
              help="Stop the import, writing nothing, if it runs longer (default: no limit; Ctrl-C stops it too).")
@one_line_errors
def import_command(file: Path, maps: tuple[str, ...], mapping_file: Path | None, date_order: str | None,  # noqa: PLR0913 - one per option
                   decimal: str | None, encoding: str | None, status_maps: tuple[str, ...], drop_identical: bool,
                   mode: str, skip_invalid: bool, dry_run: bool, report_dir: Path | None, train: bool,
                   time_limit: int | None) -> None:
    """Import orders from a CSV (any delimiter and encoding, .gz) or XLSX file, all or nothing."""
    from bi_app.importing import import_file, parse_choices, parse_map_options

    config = Config.from_env()
    overrides, unused_columns = parse_map_options(maps, mapping_file)
    choices = parse_choices(mapping_file, date_order=date_order, decimal=decimal, encoding=encoding,
                            status_maps=status_maps, drop_identical=drop_identical, timezone=config.timezone,
                            currency=config.currency)
    def progress(total: int):  # noqa: ANN202 - a click progress bar whose update takes a line count
        bar = click.progressbar(length=total, label="Loading", show_percent=True, show_pos=True, file=sys.stderr)
        return _Advance(bar)

    try:
        bounded = stopping.stop_when(stopping.time_limit(time_limit, why=" (--time-limit)")) if time_limit else None
        with bounded or nullcontext():
            outcome = import_file(write_engine_for(config), file, overrides, mode=mode, skip_invalid=skip_invalid,
                                  dry_run=dry_run, report_dir=report_dir, echo=click.echo,
                                  unused_columns=unused_columns,
                                  progress=progress if sys.stderr.isatty() else None, choices=choices,
                                  limits=config.read_limits)
    except MissingColumnsError as exc:
        raise click.ClickException(f"{exc} (--map COLUMN=FIELD)") from None
    except stopping.WorkStopped as exc:
        raise click.ClickException(f"the import was stopped, nothing was written: {exc}") from None
    except KeyboardInterrupt:
        raise click.ClickException("stopped (Ctrl-C): nothing was written") from None
    if not dry_run:
        with write_engine_for(config).begin() as conn:
            failed = "; failed" if outcome.failed else ""
            _audit(conn, "import", f"{file.name} ({mode}; {outcome.rejected:,} rejected{failed})", rows=outcome.written)
    for question in outcome.questions:
        click.echo(f"Answer with {ANSWERS[question.setting](question)}")
    if outcome.failed and not outcome.questions and not outcome.refused and not skip_invalid:
        click.echo("--skip-invalid imports the valid rows only.")
    if outcome.written and train:
        try:
            _train(config)
        except Exception as exc:  # noqa: BLE001 - the orders are in; the pages train on first use
            click.echo(f"Warning: the orders are imported, but training the customer models failed "
                       f"({type(exc).__name__}: {exc}); the pages will try again on first use.", err=True)
    if outcome.failed:
        raise SystemExit(1)


#: How each kind of question is answered on the command line.
ANSWERS = {
    "date_order": lambda q: "--date-order dmy (day first) or --date-order mdy (month first)",
    "decimal": lambda q: "--decimal , (decimal comma) or --decimal . (decimal point)",
    "status": lambda q: " ".join(f"--status-map '{value}=CLASS'" for value in q.examples)
    + " (CLASS: counted, excluded or refunded), or \"statuses\" in the --mapping file",
}


class _Advance:
    """A click progress bar as a context whose value advances it."""

    def __init__(self, bar) -> None:  # noqa: ANN001
        self.bar = bar

    def __enter__(self):  # noqa: ANN204
        return self.bar.__enter__().update

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)


@main.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The file to write: .pdf (printed by headless Chromium, one A4 page), .html or .txt.")
@click.option("--period", help="A date preset: last-7-days, previous-week, previous-month, year-to-date, ... "
                               "(default: the one the dashboard opens on).")
@click.option("--start", help="First day, YYYY-MM-DD (instead of --period).")
@click.option("--end", help="Last day, YYYY-MM-DD.")
@click.option("--compare", type=click.Choice(["previous", "last-year"]), default="previous", show_default=True,
              help="What the movers are measured against.")
@click.option("--region", "regions", multiple=True, help="A region to keep (repeatable); likewise --segment, "
                                                        "--category, --product.")
@click.option("--segment", "segments", multiple=True, hidden=True)
@click.option("--category", "categories", multiple=True, hidden=True)
@click.option("--product", "products", multiple=True, hidden=True)
@click.option("--user", "user_name", help="Within this user's regions, as they would see it.")
@one_line_errors
def summary(out: Path, period: str | None, start: str | None, end: str | None, compare: str,  # noqa: PLR0913 - one per option
            regions: tuple[str, ...], segments: tuple[str, ...], categories: tuple[str, ...],
            products: tuple[str, ...], user_name: str | None) -> None:
    """Write the executive summary (KPIs with comparisons, trend, movers, recommendations) for the filters."""
    from bi_app import summary as executive
    from bi_app.app import create_app
    from bi_app.service import opening_period, parse_request
    from data_layer.filters import FilterError

    if out.suffix.lower() not in (".pdf", ".html", ".txt"):
        raise click.BadParameter("the file must end in .pdf, .html or .txt", param_hint="--out")
    config = Config.from_env()
    scope: tuple[str, ...] = ()
    if user_name:
        with write_engine_for(config).connect() as conn:
            user = find_user(conn, user_name)
        if user is None:
            raise click.ClickException(f"no user {user_name!r}")
        scope = user.regions
    query = {name: list(values) for name, values in (
        ("period", [period] if period else []), ("start", [start] if start else []), ("end", [end] if end else []),
        ("compare", [compare]), ("region", regions), ("segment", segments), ("category", categories),
        ("product", products)) if values}
    app = create_app(config)
    with app.server.test_request_context("/"):
        if not (period or start or end):
            query["period"] = [opening_period()]
        try:
            filters, _ = parse_request(query, scope=scope)
        except FilterError as exc:
            raise click.ClickException(exc.message) from None
        made = executive.executive_summary(filters)
        link = executive.dashboard_link(filters, config.base_url)
        if out.suffix.lower() == ".pdf":
            try:
                executive.summary_pdf(executive.summary_html(made, link), out)
            except executive.SummaryError as exc:
                raise click.ClickException(str(exc)) from None
        else:
            write = executive.summary_html if out.suffix.lower() == ".html" else executive.summary_text
            out.write_text(write(made, link), encoding="utf-8")
    click.echo(f"Wrote {out}: {made.title}")


@main.command()
@one_line_errors
def check() -> None:
    """Run the data-quality report on the stored orders; exit 1 if a check fails."""
    config = Config.from_env()
    with engine_for(config).connect() as conn:
        report = quality_report(conn)
    _print_report(report)
    if not report.ok:
        raise SystemExit(1)


@main.command()
@one_line_errors
def info() -> None:
    """Show the database in use (password masked), its row counts, data version and the settings in use."""
    config = Config.from_env()
    details = database_info(engine_for(config))
    click.echo(f"Database:      {details['database']}")
    click.echo(f"Backend:       {details['backend']}")
    for table, rows in details["tables"].items():
        click.echo(f"Table {table + ':':<19} {'(absent)' if rows is None else f'{rows:,} rows'}")
    click.echo(f"Data version:  {details['data_version'] or '(none: loaded by another tool)'}")
    if details["loaded_at"]:
        click.echo(f"Last load:     {details['loaded_at']} ({details['last_load']})")
    click.echo("Settings:")
    for setting in SETTINGS:
        value = getattr(config, setting.field)
        if setting.secret:
            shown = "set (not shown)" if value else "unset"
        else:
            shown = safe_url(value) if setting.env.endswith("_URL") and value else shown_value(value)
        if setting.field == "database_url" and config.embedded:
            shown += " (embedded)"
        click.echo(f"  {setting.env:<24} {shown}{' (default)' if value == setting.default else ''}")


@main.command()
@one_line_errors
def snapshot() -> None:
    """Build this server's columnar snapshot of the current data (app servers do it by themselves)."""
    from bi_app.context import replica_for

    _end_with_parent()
    from bi_app.service import precompute_default_views

    config = Config.from_env()
    replica = replica_for(config, precompute_default_views, build_in_subprocess=False)
    with replica.source.connect() as conn:
        version = data_version(conn)
    if not version:
        raise click.ClickException("the data has no version (never loaded by bi-app): load it first")
    started = time.perf_counter()
    try:
        path = replica.build(version)
    except Exception as exc:  # noqa: BLE001 - DuckDB's, the disk's, the database's: one line each
        raise click.ClickException(f"the snapshot of data version {version} was not built: "
                                   f"{describe_error(exc, config.database_url)}") from None
    click.echo(f"Snapshot of data version {version}: {path} ({time.perf_counter() - started:.1f} s)")


def _print_load(result: LoadResult) -> None:
    click.echo(
        f"Loaded {result.rows_in:,} rows ({result.mode}) in {result.seconds:.2f} s: "
        f"{result.rows_per_second:,.0f} rows/s; {result.rows_stored:,} rows stored"
    )
    click.echo(f"Data version {result.data_version}")
    if result.summary_seconds is None:
        click.echo("Summary tables not rebuilt (see the warning); queries read the raw rows")
    else:
        click.echo(f"Summary tables {result.summary_note}")
    _print_report(result.quality)


def _print_models(models, seconds: float) -> None:  # noqa: ANN001
    click.echo(f"Models for data version {models.data_version or '(unversioned)'} ({models.customers:,} customers, "
               f"{seconds:.1f} s)")
    segmentation = models.segmentation
    if segmentation is not None:
        metrics = segmentation.metrics_
        click.echo(f"  segmentation: k={segmentation.k_}, silhouette {metrics['silhouette']:.3f}, "
                   f"Davies-Bouldin {metrics['davies_bouldin']:.3f}; "
                   f"clusters: {', '.join(segmentation.names_.values())}")
    evaluation = models.churn_evaluation
    if evaluation is not None:
        click.echo(f"  churn: ROC AUC {evaluation['roc_auc']:.3f} "
                   f"(recency alone {evaluation['baseline_roc_auc']:.3f}), "
                   f"top-decile precision {evaluation['top_decile_precision']:.2f}")
    for problem in models.problems:
        click.echo(f"  not trained: {problem}")
    if models.answers:
        names = sorted({key.split(":", 1)[0] for key in models.answers})
        click.echo(f"  unfiltered view answered ahead: {', '.join(names)} ({models.seconds.get('answers', 0):.1f} s)")


def _print_report(report: QualityReport) -> None:
    span = f"{report.min_date} .. {report.max_date}" if report.min_date else "no rows"
    click.echo(f"Data quality: {report.row_count:,} rows, order dates {span}")
    for check_ in report.checks:
        mark = click.style("ok  ", fg="green") if check_.passed else click.style("FAIL", fg="red")
        detail = "" if check_.passed else f"  ({check_.failing_rows:,} rows: {check_.detail})"
        click.echo(f"  {mark} {check_.name}{detail}")


def _end_with_parent() -> None:
    """When a server started this command (``BI_PARENT_PID``), end it as soon as that server process is gone:
    a stopped server leaves no training or snapshot copy behind. Saved files stay whole (they are written
    aside, then renamed)."""
    from bi_app.context import PARENT_PID_ENV

    parent = os.environ.get(PARENT_PID_ENV, "")
    if not parent.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(1)
        os._exit(3)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def _read_password(prompt: str = "Password") -> str:
    """A password typed at a prompt (twice, not shown), or the first line of standard input when it
    is not a terminal: never a command-line argument, which other users of the machine can read."""
    if sys.stdin.isatty():
        return click.prompt(prompt, hide_input=True, confirmation_prompt=True)
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UserError("no password given: type it when asked, or send it on standard input")
    return password


def _warn_of_regions_not_in_the_data(engine: Engine, user: User) -> None:
    """Say which of the user's regions no stored order has (a typo, or data still to come): they would see nothing."""
    if not user.regions:
        return
    with engine.connect() as conn:
        known = regions_in_data(conn)
    missing = [region for region in user.regions if region not in known]
    if missing:
        close = {region: difflib.get_close_matches(region, known, n=1, cutoff=0.6) for region in missing}
        hints = "; ".join(f"{region!r}" + (f" (did you mean {close[region][0]!r}?)" if close[region] else "")
                          for region in missing)
        click.echo(f"Warning: no stored order is in {hints}: until one is, {user.name} sees no figures there.")


def _described(user: User) -> str:
    return (f"{user.name} ({user.role}; {', '.join(user.regions) if user.regions else 'every region'}"
            f"{'; ' + user.email if user.email else ''})")


@main.group()
def users() -> None:
    """The people who may sign in (with BI_SECRET_KEY set), with their roles and regions."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="viewer, analyst or admin.")
@click.option("--region", "regions", multiple=True, help="A region the user may see (repeat it; none: every region).")
@one_line_errors
def users_add(name: str, role: str, regions: tuple[str, ...]) -> None:
    """Add a user; the password is asked for (or read from standard input)."""
    engine = write_engine_for(Config.from_env())
    with engine.connect() as conn:
        if find_user(conn, name.strip()) is not None:  # before asking for a password it would not use
            raise UserError(f"a user named {name.strip()!r} exists already")
    password = _read_password()
    with engine.begin() as conn:
        user = add_user(conn, name, role, password, regions)
        _audit(conn, "user_changed", f"added {_described(user)}")
    click.echo(f"Added {_described(user)}.")
    _warn_of_regions_not_in_the_data(engine, user)
    if not Config.from_env().secret_key:
        click.echo("Sign-in is off until BI_SECRET_KEY is set (see the README's access control section).")


@users.command("remove")
@click.argument("name")
@one_line_errors
def users_remove(name: str) -> None:
    """Remove a user."""
    with write_engine_for(Config.from_env()).begin() as conn:
        remove_user(conn, name)
        _audit(conn, "user_changed", f"removed {name} and their API tokens")
    click.echo(f"Removed {name}.")


@users.command("list")
@one_line_errors
def users_list() -> None:
    """Every user, with role and regions."""
    with engine_for(Config.from_env()).connect() as conn:
        found = list_users(conn)
    for user in found:
        click.echo(_described(user))
    if not found:
        click.echo("No users yet: add one with bi-app users add NAME --role admin.")


@users.command("set-role")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="viewer, analyst or admin.")
@one_line_errors
def users_set_role(name: str, role: str) -> None:
    """Give a user another role."""
    with write_engine_for(Config.from_env()).begin() as conn:
        user = set_role(conn, name, role)
        _audit(conn, "user_changed", f"now {_described(user)}")
    click.echo(f"Now {_described(user)}.")


@users.command("set-regions")
@click.argument("name")
@click.option("--region", "regions", multiple=True, help="A region the user may see (repeat it; none: every region).")
@one_line_errors
def users_set_regions(name: str, regions: tuple[str, ...]) -> None:
    """Limit a user to some regions (no --region: every region)."""
    engine = write_engine_for(Config.from_env())
    with engine.begin() as conn:
        user = set_regions(conn, name, regions)
        _audit(conn, "user_changed", f"now {_described(user)}")
    click.echo(f"Now {_described(user)}.")
    _warn_of_regions_not_in_the_data(engine, user)


@users.command("set-email")
@click.argument("name")
@click.argument("address", required=False)
@one_line_errors
def users_set_email(name: str, address: str | None) -> None:
    """Where a user's emailed reports and alerts go (no ADDRESS: nowhere)."""
    with write_engine_for(Config.from_env()).begin() as conn:
        user = set_email(conn, name, address)
        _audit(conn, "user_changed", f"{user.name}'s email {'set' if user.email else 'removed'}")
    click.echo(f"{user.name}: reports and alerts go to {user.email}." if user.email
               else f"{user.name}: no reports or alerts by email.")


@users.command("set-password")
@click.argument("name")
@one_line_errors
def users_set_password(name: str) -> None:
    """Give a user a new password (asked for, or read from standard input)."""
    engine = write_engine_for(Config.from_env())
    with engine.connect() as conn:
        if find_user(conn, name) is None:  # before asking for a password it would not use
            raise UserError(f"no user named {name!r}")
    password = _read_password("New password")
    with engine.begin() as conn:
        set_password(conn, name, password)
        _audit(conn, "user_changed", f"new password for {name}")
    click.echo(f"Password of {name} changed.")


@main.group()
def tokens() -> None:
    """API tokens: each signs its requests in as its user (role and regions), sent as
    ``Authorization: Bearer TOKEN``."""


@tokens.command("create")
@click.option("--user", "name", required=True, help="The user the token signs in as.")
@one_line_errors
def tokens_create(name: str) -> None:
    """Make a token; it is printed once, alone on the last line, and stored only as a hash."""
    with write_engine_for(Config.from_env()).begin() as conn:
        token, secret = create_token(conn, name)
        _audit(conn, "token_created", f"token {token.id} of {token.user_name}")
    click.echo(f"Token {token.id} for {token.user_name}. Keep it secret: it is shown this once.")
    click.echo(secret)


@tokens.command("list")
@click.option("--user", "name", default=None, help="Only this user's tokens.")
@one_line_errors
def tokens_list(name: str | None) -> None:
    """Every token (never its secret): id, user, when made, and when revoked."""
    with engine_for(Config.from_env()).connect() as conn:
        found = list_tokens(conn, name)
    for token in found:
        state = f"revoked {token.revoked_at}" if token.revoked_at else "active"
        click.echo(f"{token.id}  {token.user_name:<20} created {token.created_at}  {state}")
    if not found:
        click.echo("No tokens: make one with bi-app tokens create --user NAME.")


@tokens.command("revoke")
@click.argument("token_id")
@one_line_errors
def tokens_revoke(token_id: str) -> None:
    """Stop a token working (its id, as tokens list shows it)."""
    with write_engine_for(Config.from_env()).begin() as conn:
        token = revoke_token(conn, token_id)
        _audit(conn, "token_revoked", f"token {token.id} of {token.user_name}")
    click.echo(f"Revoked token {token.id} of {token.user_name}.")


@main.command()
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]),
              default=None, help="Only entries from this day or time on (UTC).")
@one_line_errors
def audit(since: datetime | None) -> None:
    """The audit log: sign-ins (and failed ones), downloads, imports and changes to users and tokens."""
    with engine_for(Config.from_env()).connect() as conn:
        found = audit_entries(conn, since)
    for entry in found:
        rows = "" if entry.rows is None else f" rows={entry.rows:,}"
        pairs = parse_qsl(entry.filters, keep_blank_values=True)
        filters = " " + "; ".join(f"{name}={value}" for name, value in pairs) if pairs else ""
        where = f" from {entry.address}" if entry.address else ""
        detail = f"  {entry.detail}" if entry.detail else ""
        click.echo(f"{entry.at}  {entry.user_name:<16} {entry.action:<14} {entry.route}{filters}{rows}{where}{detail}")
    if not found:
        click.echo("No audit entries" + (f" since {since:%Y-%m-%d %H:%M}." if since else "."))


def _audit(conn: Connection, action: str, detail: str, rows: int | None = None) -> None:
    """Record an action taken on this command line (in ``conn``'s transaction: both or neither)."""
    record_audit(conn, AuditEntry(audit_now(), f"cli:{getpass.getuser()}", action, "bi-app", rows=rows,
                                  detail=detail))


if __name__ == "__main__":  # pragma: no cover
    main()


@main.command()
@click.option("--tick", type=click.FloatRange(min=0.2), default=30, show_default=True,
              help="Seconds between two looks for due reports and alerts.")
@one_line_errors
def scheduler(tick: float) -> None:
    """Deliver subscriptions and check alerts as they fall due (one process works per database; others wait)."""
    import signal

    from bi_app.scheduler import run_scheduler

    config = Config.from_env()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_args: stop.set())
    run_scheduler(config, stop, tick)


@main.group()
def reports() -> None:
    """Emailed executive summaries on a schedule (subscriptions) and alert rules; their deliveries."""


def _report_query(period: str | None, regions: tuple[str, ...], segments: tuple[str, ...],
                  categories: tuple[str, ...], products: tuple[str, ...], compare: str = "previous") -> dict:
    query = {"period": [period] if period else [], "region": list(regions), "segment": list(segments),
             "category": list(categories), "product": list(products),
             "compare": [compare] if compare != "previous" else []}
    return {name: values for name, values in query.items() if values}


_VIEW_OPTIONS = [
    click.option("--region", "regions", multiple=True, help="A region of the view (repeatable); likewise "
                                                            "--segment, --category, --product."),
    click.option("--segment", "segments", multiple=True, hidden=True),
    click.option("--category", "categories", multiple=True, hidden=True),
    click.option("--product", "products", multiple=True, hidden=True),
    click.option("--to", "recipients", multiple=True, required=True, help="A user it goes to (repeatable)."),
    click.option("--at", default="07:00", show_default=True, help="Time of day, HH:MM."),
    click.option("--timezone", help="IANA time zone of --at (default: BI_TIMEZONE, else UTC)."),
    click.option("--owner", default="admin", show_default=True, help="The user it is made for (listed as its owner)."),
]


def _with_view_options(func):  # noqa: ANN001, ANN202 - a click command
    for option in reversed(_VIEW_OPTIONS):
        func = option(func)
    return func


@reports.command("add")
@click.option("--name", required=True, help="What the emails are called, e.g. 'Weekly North'.")
@click.option("--period", default="previous-week", show_default=True, help="The view's date preset.")
@click.option("--compare", type=click.Choice(["previous", "last-year"]), default="previous", show_default=True)
@click.option("--every", "frequency", type=click.Choice(["daily", "weekly", "monthly"]), default="weekly",
              show_default=True)
@click.option("--day", help="Weekly: mon..sun (default mon); monthly: 1..28 (default 1).")
@click.option("--workbook", is_flag=True, help="Attach the report workbook (XLSX) too.")
@_with_view_options
@one_line_errors
def reports_add(name: str, period: str, compare: str, frequency: str, day: str | None, workbook: bool,  # noqa: PLR0913 - one per option
                regions: tuple[str, ...], segments: tuple[str, ...], categories: tuple[str, ...],
                products: tuple[str, ...], recipients: tuple[str, ...], at: str, timezone: str | None,
                owner: str) -> None:
    """Subscribe users to a view's executive summary, emailed on a schedule."""
    from data_layer.reports import add_subscription, schedule_of

    config = Config.from_env()
    query = _report_query(period, regions, segments, categories, products, compare)
    with write_engine_for(config).begin() as conn:
        item = add_subscription(conn, name=name, owner=owner, recipients=recipients, query=query,
                                schedule=schedule_of(frequency, at, day), timezone=timezone or config.timezone or "UTC",
                                workbook=workbook)
        _audit(conn, "report_changed", f"subscription {item.id} {item.name!r} to {', '.join(item.recipients)}")
        _warn_of_missing_addresses(conn, item.recipients)
    click.echo(f"Added subscription {item.id} {item.name!r}: {frequency} at {at} ({item.timezone}), first on "
               f"{item.next_due.isoformat()}, to {', '.join(item.recipients)}.")


@reports.command("add-alert")
@click.option("--name", required=True, help="What the alert is called, e.g. 'North revenue down'.")
@click.option("--measure", type=click.Choice(["revenue", "orders", "return_rate"]), required=True,
              help="revenue: net revenue; orders: orders with a sale; return_rate: returns / gross sales.")
@click.option("--below", "below", type=float, help="Holds when the measure is below this value.")
@click.option("--above", "above", type=float, help="Holds when the measure is above this value.")
@click.option("--below-last-year", type=float, metavar="PERCENT",
              help="Holds when the measure is more than PERCENT below the same days last year.")
@click.option("--above-last-year", type=float, metavar="PERCENT",
              help="Holds when the measure is more than PERCENT above the same days last year.")
@click.option("--days", type=click.IntRange(1, 366), default=7, show_default=True,
              help="The window: the last N complete days (through the data's last order date, or yesterday "
                   "while orders still come in today; 1: yesterday on a live shop).")
@click.option("--every", "frequency", type=click.Choice(["daily", "weekly", "monthly"]), default="daily",
              show_default=True, help="How often the rule is checked.")
@_with_view_options
@one_line_errors
def reports_add_alert(name: str, measure: str, below: float | None, above: float | None,  # noqa: PLR0913 - one per option
                      below_last_year: float | None, above_last_year: float | None, days: int, frequency: str,
                      regions: tuple[str, ...], segments: tuple[str, ...], categories: tuple[str, ...],
                      products: tuple[str, ...], recipients: tuple[str, ...], at: str, timezone: str | None,
                      owner: str) -> None:
    """Add an alert rule: an email when it starts to hold, one when it stops."""
    from data_layer.reports import AlertRule, add_alert, schedule_of

    given = {"below": below, "above": above, "below_last_year_pct": below_last_year,
             "above_last_year_pct": above_last_year}
    chosen = [(condition, value) for condition, value in given.items() if value is not None]
    if len(chosen) != 1:
        raise click.UsageError("give one of --below, --above, --below-last-year, --above-last-year")
    config = Config.from_env()
    query = _report_query(None, regions, segments, categories, products)
    rule = AlertRule(measure, chosen[0][0], chosen[0][1], days)
    with write_engine_for(config).begin() as conn:
        item = add_alert(conn, name=name, owner=owner, recipients=recipients, query=query, rule=rule,
                         schedule=schedule_of(frequency, at), timezone=timezone or config.timezone or "UTC")
        _audit(conn, "report_changed", f"alert {item.id} {item.name!r} to {', '.join(item.recipients)}")
        _warn_of_missing_addresses(conn, item.recipients)
    click.echo(f"Added alert {item.id} {item.name!r}: {rule.describe()}; checked {frequency} at {at} "
               f"({item.timezone}), first on {item.next_due.isoformat()}.")


def _warn_of_missing_addresses(conn: Connection, names: tuple[str, ...]) -> None:
    for name in names:
        user = find_user(conn, name)
        if user is not None and not user.email:
            click.echo(f"Warning: {user.name} has no email address yet (bi-app users set-email {user.name} ADDRESS).")


@reports.command("list")
@one_line_errors
def reports_list() -> None:
    """Every subscription and alert, with its schedule and next time."""
    from data_layer.filters import PERIODS
    from data_layer.reports import (
        describe_schedule,
        describe_view,
        describe_where,
        last_scheduler,
        list_alerts,
        list_subscriptions,
    )

    with write_engine_for(Config.from_env()).begin() as conn:
        subscriptions, alerts, running = list_subscriptions(conn), list_alerts(conn), last_scheduler(conn)
    for item in subscriptions:
        workbook = " (with the workbook)" if item.workbook else ""
        click.echo(f"{item.id}  subscription {item.name!r}: {describe_view(item.query, PERIODS)}{workbook}; "
                   f"{describe_schedule(item.schedule, item.timezone)}, next {item.next_due:%Y-%m-%d %H:%M} UTC; "
                   f"to {', '.join(item.recipients)}")
    for alert in alerts:
        click.echo(f"{alert.id}  alert {alert.name!r}: {alert.rule.describe()} ({describe_where(alert.query)}); "
                   f"{'holds now' if alert.state == 'firing' else 'does not hold'}; checked "
                   f"{describe_schedule(alert.schedule, alert.timezone)}, next {alert.next_due:%Y-%m-%d %H:%M} UTC; "
                   f"to {', '.join(alert.recipients)}")
    if not subscriptions and not alerts:
        click.echo("No subscriptions or alerts yet: bi-app reports add --name NAME --to USER.")
    click.echo(f"Scheduler: last looked {running.last_look} on {running.host} (pid {running.pid})" if running
               else "Scheduler: none has run yet (bi-app scheduler, deploy/bi-scheduler.service).")


@reports.command("remove")
@click.argument("item_id")
@one_line_errors
def reports_remove(item_id: str) -> None:
    """Remove a subscription or an alert (its deliveries stay in the history)."""
    from data_layer.reports import remove

    with write_engine_for(Config.from_env()).begin() as conn:
        name = remove(conn, item_id)
        _audit(conn, "report_changed", f"removed {item_id} {name!r}")
    click.echo(f"Removed {name!r}.")


@reports.command("run-now")
@click.argument("item_id")
@one_line_errors
def reports_run_now(item_id: str) -> None:
    """Deliver a subscription now (its schedule unchanged), or check an alert now."""
    from bi_app.app import create_app
    from bi_app.reporting import run_now

    app = create_app(Config.from_env())
    with app.server.test_request_context("/"):
        delivery = run_now(item_id)
    if isinstance(delivery, str):  # an alert whose state did not change
        click.echo(delivery)
        return
    if delivery.status != "sent":
        raise click.ClickException(f"{delivery.item_name!r} not delivered: {delivery.error}")
    click.echo(f"Delivered {delivery.item_name!r} ({delivery.kind}) to {', '.join(delivery.recipients)}.")


@reports.command("history")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@one_line_errors
def reports_history(limit: int) -> None:
    """The latest deliveries, newest first: what, when due, to whom, and how it went."""
    from data_layer.reports import history

    with write_engine_for(Config.from_env()).begin() as conn:
        found = history(conn, limit)
    for delivery in found:
        click.echo(f"{delivery.created_at}  {delivery.status:<8} {delivery.kind:<9} {delivery.item_name!r} due "
                   f"{delivery.due} to {', '.join(delivery.recipients)}, {delivery.attempts} attempt(s)"
                   f"{': ' + delivery.error if delivery.error else ''}")
    if not found:
        click.echo("No deliveries yet.")
