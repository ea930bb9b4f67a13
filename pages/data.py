"""Data: upload a CSV or XLSX of orders, check the automatic mapping and the validation, import it."""

from __future__ import annotations

import logging
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, callback, dcc, html, no_update

from bi_app.auth import record
from bi_app.busy import BusyError, WorkStopped, heavy_work
from bi_app.components import attributes, count
from bi_app.context import (
    IMPORT_ROLE,
    current_config,
    current_engine,
    current_write_engine,
    signed_in_user,
    start_training,
)
from bi_app.importing import (
    MAX_UPLOAD_BYTES,
    ImportOutcome,
    Upload,
    import_file,
    read_upload,
    stored_currency,
)
from bi_app.incidents import reference_for
from data_layer.importer import (
    FIELDS,
    STATUS_CLASSES,
    FileImportError,
    ImportChoices,
    SourceTable,
    Validation,
    auto_mapping,
    unknown_statuses,
    validate,
)
from data_layer.loader import LoadError
from data_layer.parsing import DATE_ORDER_NAMES, DECIMAL_NAMES, date_order_of

log = logging.getLogger(__name__)

# Imports need an analyst (replacing every stored order an admin: :func:`imported`); the guard of
# bi_app.auth refuses this page and its callbacks to anyone else.
dash.register_page(__name__, path="/data", name="Data", title="Data · E-commerce BI", order=5, filters=False,
                   role=IMPORT_ROLE)
#: Modes an analyst may import in; ``replace`` deletes every stored order and needs an admin.
MODES = {"append": IMPORT_ROLE, "upsert": IMPORT_ROLE, "replace": "admin"}

PREVIEW_ROWS = 8
SHOWN_REJECTS = 20
REQUIRED = {"order_id", "order_date", "product"}


def layout(**_query: str) -> html.Div:
    user = signed_in_user()
    return html.Div(
        [
            html.H1("Import orders", className="h2 mb-3"),
            html.P("Upload a CSV (any delimiter and encoding, .gz) or XLSX file of your orders. Check how its "
                   "columns were matched, how its dates and numbers were read and what would be rejected; change "
                   "what is wrong and answer what the file cannot tell, then import. Nothing is written until you "
                   "press Import, and an import is all or nothing.", className="text-muted"),
            dcc.Store(id="data-upload"),
            dcc.Store(id="data-uploaded"),  # set by assets/upload.js once POST /upload has the file
            # dcc.Upload is the drop zone and file chooser only: assets/upload.js takes the file before it
            # would read it into the page (base64, sent through a callback) and streams it to POST /upload.
            html.Div(dcc.Upload(
                id="data-file",
                children=html.Div(["Drop a file here or ", html.A("choose one", className="link-primary")]),
                className="upload-zone mb-1", multiple=False,
            ), **attributes(data_max_bytes=str(MAX_UPLOAD_BYTES))),
            html.Progress(id="data-upload-progress", max="100", hidden="hidden", className="w-100 mb-2",
                          title="Sending the file"),
            dcc.Loading(html.Div(id="data-file-info"), type="dot"),
            html.Div(id="data-mapping"),
            reading_card(),
            html.Div(id="data-statuses"),
            dcc.Loading(html.Div(id="data-validation"), type="dot"),
            html.Div(
                [
                    dbc.RadioItems(id="data-mode", inline=True, value="append", className="mb-2",
                                   options=[{"label": "Add the orders (append)", "value": "append"},
                                            {"label": "Replace their stored versions (upsert)", "value": "upsert"},
                                            {"label": "Replace all stored orders" + (
                                                "" if user.may(MODES["replace"]) else " (admins only)"),
                                             "value": "replace", "disabled": not user.may(MODES["replace"])}]),
                    dbc.Checkbox(id="data-skip-invalid", value=False, className="mb-2",
                                 label="Import the valid rows and leave out the invalid ones"),
                    dbc.Button("Import", id="data-import", color="primary", disabled=True),
                ],
                id="data-actions", className="mb-3",
            ),
            dcc.Loading(html.Div(id="data-result"), type="circle", fullscreen=False),
        ]
    )


ENCODINGS = ("utf-8", "utf-16", "windows-1252", "windows-1250", "windows-1251", "iso-8859-15", "latin-1")
#: The reading choices, in the order :func:`choices_of` takes them; empty means decided from the file.
CHOICES = ("data-encoding", "data-date-order", "data-decimal", "data-drop-identical")


def reading_card() -> dbc.Card:
    """How the file is read: each choice automatic (decided from the file) until the user sets it."""
    def choice(component_id: str, label: str, options: dict[str, str]) -> dbc.Col:
        return dbc.Col([
            dbc.Label(label, html_for=component_id, className="small mb-0"),
            dcc.Dropdown(id=component_id, options=[{"label": v, "value": k} for k, v in options.items()],
                         placeholder="Automatic (decided from the file)", clearable=True),
        ], xs=12, md=4, className="mb-2")

    return dbc.Card([
        dbc.CardHeader("How the file is read"),
        dbc.CardBody([
            dbc.Row([
                choice("data-date-order", "Dates", DATE_ORDER_NAMES),
                choice("data-decimal", "Decimal mark", DECIMAL_NAMES),
                choice("data-encoding", "Text encoding", {e: e for e in ENCODINGS}),
            ], className="g-2"),
            dbc.Checkbox(id="data-drop-identical", value=False,
                         label="Leave out lines identical in every cell to an earlier line (by default they are "
                               "kept: a shop may sell the same item twice in a day)"),
            html.Ul(id="data-decisions", className="small text-muted mb-0 mt-2"),
        ]),
    ], className="mb-3 shadow-sm", id="data-reading", style={"display": "none"})


def choices_of(encoding: str | None, date_order: str | None, decimal: str | None, drop_identical: bool | None,
               statuses: list, status_ids: list[dict]) -> ImportChoices:
    """The user's reading choices as the importer takes them."""
    return ImportChoices(date_order=date_order_of(date_order), decimal=decimal or None, encoding=encoding or None,
                         statuses=picked(status_ids, statuses, "status"),
                         drop_identical=bool(drop_identical), timezone=current_config().timezone,
                         currency=current_config().currency)


@callback(
    Output("data-upload", "data"),
    Output("data-file-info", "children"),
    Output("data-mapping", "children"),
    Output("data-reading", "style"),
    *[Output(component_id, "value") for component_id in CHOICES],
    # A new file clears what was checked, decided and imported for the one before.
    Output("data-validation", "children", allow_duplicate=True),
    Output("data-import", "disabled", allow_duplicate=True),
    Output("data-decisions", "children", allow_duplicate=True),
    Output("data-result", "children", allow_duplicate=True),
    Input("data-uploaded", "data"),
    prevent_initial_call=True,
)
def receive_file(uploaded: dict | None):  # noqa: ANN201
    """Read the file POST /upload has kept; show its first rows, the automatic mapping and reading."""
    return received_view(uploaded)


def received_view(uploaded: dict | None) -> tuple:
    """The store, file summary, mapping editor, reading card and choices for the file ``uploaded`` names
    (or the reason it was not taken), and the previous file's check, decisions and import cleared."""
    cleared = (None, True, None, None)
    refused = uploaded.get("error") if isinstance(uploaded, dict) else None
    upload = Upload.from_store(uploaded)
    if refused or upload is None or not upload.path.is_file():
        message = refused if isinstance(refused, str) else "The file did not arrive whole. Please choose it again."
        return (None, dbc.Alert(message, color="danger", id="data-file-error"), None, {"display": "none"},
                *(None,) * len(CHOICES), *cleared)
    try:
        with heavy_work("file checks"):
            source = read_upload(upload)
    except Exception as exc:  # noqa: BLE001 - a message, never a dead page
        message = problem(exc, "read")
        shown = message if message.startswith(upload.file) else f"{upload.file}: {message}"
        return (None, dbc.Alert(shown, color="danger", id="data-error"), None, {"display": "none"},
                *(no_update for _ in CHOICES), *cleared)
    mapping = auto_mapping(source.columns)
    return ({"id": upload.id, "file": upload.file, "auto": mapping}, file_info(upload.file, source),
            mapping_editor(source.columns, mapping), {}, None, None, None, False, *cleared)


def file_info(name: str, source: SourceTable) -> list:
    """What was read: rows, columns, encoding and delimiter, and the first rows."""
    preview = dbc.Table(
        [html.Thead(html.Tr([html.Th(c) for c in source.columns])),
         html.Tbody([html.Tr([html.Td(v) for v in row])
                     for row in source.frame.head(PREVIEW_ROWS).itertuples(index=False)])],
        size="sm", striped=True, responsive=True, id="data-preview",
    )
    return [
        html.P(f"{name}: {count(source.row_count, 'row')}, {count(len(source.columns), 'column')} ({source.encoding}"
               f"{f', delimiter {source.delimiter!r}' if source.delimiter else ''}); the first "
               f"{min(PREVIEW_ROWS, source.row_count)}:", id="data-file-summary"),
        html.Div(preview, className="mb-3"),
    ]


def mapping_editor(columns: list[str], mapping: dict[str, str]) -> dbc.Card:
    """One dropdown per field, preset to the automatic match."""
    options = [{"label": c, "value": c} for c in columns]
    fields = [
        dbc.Col([
            dbc.Label(f"{field_name}{' *' if field_name in REQUIRED else ''}", className="small mb-0"),
            dcc.Dropdown(id={"type": "data-map", "field": field_name}, options=options,
                         value=mapping.get(field_name), placeholder="not in the file"),
        ], xs=12, sm=6, lg=3, className="mb-2")
        for field_name in FIELDS
    ]
    return dbc.Card([
        dbc.CardHeader("Column mapping (* required; an amount, or quantity and unit price, too)"),
        dbc.CardBody(dbc.Row(fields, className="g-2")),
    ], className="mb-3 shadow-sm")


def problem(exc: Exception, what: str) -> str:
    """What went wrong, in words for the page: the importer's own message, else a plain sentence
    (the traceback goes to the log, not the browser)."""
    if isinstance(exc, (FileImportError, LoadError)):
        return str(exc)
    if isinstance(exc, WorkStopped):
        return (f"the file could not be {what} in time: {exc}. Try a smaller file (or one part of it at a time), or "
                "ask an administrator to raise the limit.")
    if isinstance(exc, BusyError):
        return f"{exc}."
    if "database is locked" in str(exc):  # SQLite: another import holds the database
        return "another import is being written right now; wait for it to finish, then try again."
    reference = reference_for(log, f"Upload could not be {what}", exc, traceback=True)
    return f"the file could not be {what} because of an unexpected error (logged under reference {reference})."


def chosen_mapping(values: list, ids: list[dict]) -> dict[str, str]:
    """The mapping chosen in the editor: field -> column, from its dropdowns' ids and values."""
    return picked(ids, values, "field")


def picked(ids: Any, values: Any, key: str) -> dict[str, str]:
    """``{id[key]: value}`` for each chosen value of a pattern-matched group of controls (anything that
    is not such a pair, which only a crafted request sends, is left out)."""
    if not isinstance(ids, list) or not isinstance(values, list):
        return {}
    return {i[key]: v for i, v in zip(ids, values, strict=False)
            if isinstance(i, dict) and isinstance(i.get(key), str) and isinstance(v, str) and v}


@callback(
    Output("data-statuses", "children"),
    Input({"type": "data-map", "field": ALL}, "value"),
    State({"type": "data-map", "field": ALL}, "id"),
    State("data-upload", "data"),
    State("data-encoding", "value"),
    prevent_initial_call=True,
)
def status_choices(values: list, ids: list[dict], upload: dict | None, encoding: str | None):  # noqa: ANN201
    """One choice per status of the mapped status column that the vocabulary does not know."""
    column, file = chosen_mapping(values, ids).get("status"), Upload.from_store(upload)
    if file is None or not column:
        return None
    try:
        unknown = unknown_statuses(read_upload(file, encoding).frame[column].fillna(""))
    except Exception:  # noqa: BLE001 - check_file says what is wrong with the file
        return None
    return status_card(column, unknown) if unknown else None


def status_card(column: str, unknown: dict[str, int]) -> dbc.Card:
    """One choice per status of ``column`` the vocabulary does not know, with its line count."""
    options = [{"label": {"counted": "counted: sales", "excluded": "excluded: no sale (never paid, voided)",
                          "refunded": "refunded: sales refunded in full"}[c], "value": c} for c in STATUS_CLASSES]
    rows = [dbc.Row([
        dbc.Col(dbc.Label(f"“{status}” ({n:,} line{'s' if n != 1 else ''})", className="small mb-0"), md=4),
        dbc.Col(dcc.Dropdown(id={"type": "data-status", "status": status}, options=options,
                             placeholder="How do these lines count?"), md=8),
    ], className="g-2 mb-1 align-items-center") for status, n in unknown.items()]
    return dbc.Card([dbc.CardHeader(f"Statuses the app does not know ({column})"), dbc.CardBody(rows)],
                    className="mb-3 shadow-sm", id="data-status-card")


@callback(
    Output("data-validation", "children"),
    Output("data-import", "disabled"),
    Output("data-decisions", "children"),
    Input({"type": "data-map", "field": ALL}, "value"),
    *[Input(component_id, "value") for component_id in CHOICES],
    Input({"type": "data-status", "status": ALL}, "value"),
    State({"type": "data-map", "field": ALL}, "id"),
    State({"type": "data-status", "status": ALL}, "id"),
    State("data-upload", "data"),
    prevent_initial_call=True,
)
def check_file(values: list, encoding: str | None, date_order: str | None, decimal: str | None,  # noqa: ANN201, PLR0913 - one per input
               drop_identical: bool | None, statuses: list, ids: list[dict], status_ids: list[dict],
               upload: dict | None):
    """Validate the file under the mapping and reading choices as they stand: how it was read, what it
    cannot tell, counts and the first rejected rows."""
    file = Upload.from_store(upload)
    if file is None:
        return None, True, None
    choices = choices_of(encoding, date_order, decimal, drop_identical, statuses, status_ids)
    try:
        with heavy_work("file checks"):
            result = validate(read_upload(file, choices.encoding), chosen_mapping(values, ids), choices,
                              check_only=True)
    except Exception as exc:  # noqa: BLE001 - a message, never a dead page
        return dbc.Alert(f"{file.file}: {problem(exc, 'checked')}", color="warning", id="data-validation-summary"), \
            True, None
    return validation_view(result)


def validation_view(result: Validation) -> tuple:
    """How the file was read, what it cannot tell, the counts and the first rejected rows; whether
    the Import button stays disabled."""
    decisions = [html.Li(str(decision)) for decision in result.decisions]
    if result.questions:
        return [dbc.Alert([html.Strong("The file cannot be imported until this is answered above: "),
                           *[html.Div(q.message, className="data-question") for q in result.questions]],
                          color="warning", id="data-questions")], True, decisions
    errors = result.errors
    summary = f"{result.summary()}; {result.orders:,} order{'s' if result.orders != 1 else ''}."
    stored = stored_currency(current_engine())
    if result.currency and stored and stored != result.currency:
        summary += (f" The file is in {result.currency} and the stored orders in {stored}: it can only replace "
                    "all stored orders.")
    rows = [html.Tr([html.Td(r.line), html.Td(r.column), html.Td(r.reason),
                     html.Td("invalid" if r.blocking else "left out by rule")])
            for r in result.rejected[:SHOWN_REJECTS]]
    rejects = dbc.Table([html.Thead(html.Tr([html.Th("Line"), html.Th("Column"), html.Th("Reason"), html.Th("")])),
                         html.Tbody(rows)], size="sm", striped=True, id="data-rejects") if rows else None
    more = (html.P(f"... and {len(result.rejected) - SHOWN_REJECTS:,} more (all in the report after the import).",
                   className="small text-muted") if len(result.rejected) > SHOWN_REJECTS else None)
    return [dbc.Alert(summary, color="danger" if errors else "success", id="data-validation-summary"),
            rejects, more], False, decisions


@callback(
    Output("data-result", "children"),
    Input("data-import", "n_clicks"),
    State({"type": "data-map", "field": ALL}, "value"),
    State({"type": "data-map", "field": ALL}, "id"),
    *[State(component_id, "value") for component_id in CHOICES],
    State({"type": "data-status", "status": ALL}, "value"),
    State({"type": "data-status", "status": ALL}, "id"),
    State("data-upload", "data"),
    State("data-mode", "value"),
    State("data-skip-invalid", "value"),
    prevent_initial_call=True,
    running=[(Output("data-import", "disabled"), True, False)],  # one press, one import
)
def run_import(_clicks: int, values: list, ids: list[dict], encoding: str | None, date_order: str | None,  # noqa: ANN201, PLR0913 - one per input
               decimal: str | None, drop_identical: bool | None, statuses: list, status_ids: list[dict],
               upload: dict | None, mode: str, skip_invalid: bool):
    """Import the file in one transaction; say what happened, with the report to download."""
    file = Upload.from_store(upload)
    if file is None or not isinstance(upload, dict):
        return no_update
    choices = choices_of(encoding, date_order, decimal, drop_identical, statuses, status_ids)
    return imported(file, upload.get("auto"), chosen_mapping(values, ids), choices, mode=mode,
                    skip_invalid=bool(skip_invalid))


def imported(file: Upload, automatic: Any, chosen: dict[str, str], choices: ImportChoices, *, mode: str,
             skip_invalid: bool) -> dbc.Alert | html.Div:
    """Import ``file`` with the ``chosen`` mapping (``automatic``: the one first proposed), if the user's
    role allows ``mode``; what happened, recorded in the audit log."""
    if mode not in MODES or not signed_in_user().may(MODES[mode]):
        record("import_refused", detail=f"mode {mode!r}")
        return dbc.Alert(f"Nothing was written: importing in this mode needs the {MODES.get(mode, 'admin')} role.",
                         color="danger", id="data-result-summary")
    messages: list[str] = []
    auto = automatic if isinstance(automatic, dict) else {}
    changed, dropped = {f: c for f, c in chosen.items() if auto.get(f) != c}, set(auto) - set(chosen)
    try:
        with heavy_work("imports"):
            outcome = import_file(current_write_engine(), file.path, changed, mode=mode, without=dropped,
                                  skip_invalid=skip_invalid, dry_run=False, report_dir=file.path.parent,
                                  echo=messages.append, choices=choices, limits=current_config().read_limits)
    except Exception as exc:  # noqa: BLE001 - a message, never a dead page
        said = problem(exc, "imported")
        record("import", rows=0, detail=f"{file.file} ({mode}; not written: {said[:200]})")
        return dbc.Alert(said[:1].upper() + said[1:] if "nothing was written" in said else f"Nothing was written: "
                         f"{said}", color="warning" if isinstance(exc, BusyError) else "danger",
                         id="data-result-summary")
    record("import", rows=outcome.written, detail=f"{file.file} ({mode}; {outcome.rejected:,} rejected"
           f"{'; failed' if outcome.failed else ''})")
    if outcome.written:
        start_training(current_config())
    return result_view(file.id, outcome, messages)


def result_view(upload_id: str, outcome: ImportOutcome, messages: list[str]) -> html.Div:
    """What the import did, its last line first, with the report (and rejected rows) to download."""
    links = [html.A("Download the report (CSV)", href=f"/export/imports/{upload_id}/report.csv",
                    className="btn btn-sm btn-outline-primary me-2", id="data-report")]
    if outcome.rejects:
        links.append(html.A("Download the rejected rows (CSV)", href=f"/export/imports/{upload_id}/rejects.csv",
                            className="btn btn-sm btn-outline-primary", id="data-rejected-rows"))
    colour = "danger" if outcome.failed else "success"
    return html.Div([
        dbc.Alert(messages[-1], color=colour, id="data-result-summary"),
        html.Details([html.Summary("What the import did, step by step", className="small"),
                      html.Pre("\n".join(m for m in messages if not m.startswith("Report:")),
                               className="small bg-light p-2 text-wrap", id="data-log")], className="mb-2"),
        html.Div(links),
    ])
