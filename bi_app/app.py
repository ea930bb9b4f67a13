"""The composition root: one function builds the Dash app and wires its parts."""

from __future__ import annotations

import functools
import importlib
import importlib.resources
import logging
import pkgutil

import dash
from flask import Response, jsonify
from flask_compress import Compress
from sqlalchemy.exc import SQLAlchemyError

import pages
from bi_app import auth, observability, service, shell
from bi_app.api import api
from bi_app.config import Config, engine_for
from bi_app.context import (
    CACHE_KEY,
    CONFIG_KEY,
    MODELS_KEY,
    REPLICAS_KEY,
    ModelStores,
    Replicas,
    current_config,
    current_replica,
    from_this_machine,
)
from bi_app.exports import exports
from bi_app.importing import start_cleaner
from bi_app.prepared import EXPORTS_FOLDER
from bi_app.security import add_security_headers, answer_malformed_requests
from bi_app.uploads import uploads
from data_layer.bootstrap import ensure_demo_database
from data_layer.cache import ResultCache
from data_layer.engine import DatabaseError, describe_error, ping, safe_url
from data_layer.meta import data_version, database_is_slow

log = logging.getLogger(__name__)

ASSETS_FOLDER = str(importlib.resources.files("bi_app").joinpath("..", "assets"))


def create_app(config: Config | None = None) -> dash.Dash:
    """Build the Dash app for ``config`` (default: from the environment).

    Dash keeps pages and callbacks in process-wide registries, so build one
    app per process.
    """
    config = config or Config.from_env()
    observability.configure_logging(config.log_level, json_lines=config.log_format == "json")
    if config.embedded:
        seed_embedded_database(config)

    app = dash.Dash(
        __name__,
        # Pages register with dash.register_page, but the shell routes them itself:
        # Dash's page container re-renders the whole page on every query-string
        # change, which would redraw every chart twice per filter change.
        use_pages=False,
        pages_folder="",
        assets_folder=ASSETS_FOLDER,
        title="E-commerce BI",
        suppress_callback_exceptions=True,
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    )
    app.index_string = app.index_string.replace("<html>", '<html lang="en">', 1).replace(
        # Fetched and compiled off the main thread while the page starts; a graph then finds it loaded
        # (instead of fetching it once the first graph mounts and compiling it then, ~0.6 s on a slow core).
        "{%css%}", f'{{%css%}}\n        <script async src="{PLOTLY_PATH}"></script>', 1)
    app.server.config[CONFIG_KEY] = config
    app.server.config[CACHE_KEY] = ResultCache.from_url(config.cache_url)
    app.server.config[CACHE_KEY].on_lookup = observability.note_cache_lookup
    app.server.config[REPLICAS_KEY] = Replicas(service.precompute_default_views)
    app.server.config[MODELS_KEY] = ModelStores(service.answer_default_view)
    app.server.register_blueprint(api)
    app.server.register_blueprint(exports)
    app.server.register_blueprint(uploads)
    for folder in ("uploads", EXPORTS_FOLDER):
        start_cleaner(config.data_dir / folder)
    _register_pages()
    app.layout = shell.layout
    Compress(app.server)
    add_security_headers(app.server, config, app.csp_hashes())
    observability.install(app)  # first: a request the guard refuses is logged and counted too
    auth.install(app, config)
    answer_malformed_requests(app)
    app.server.add_url_rule("/healthz", "healthz", _healthz)
    # Dash's Graph loads plotly.js from this fixed path; serve the cartesian bundle
    # (bar, scatter, pie, heatmap: what our figures use): 1.5 MB instead of 4.8 MB.
    app.server.add_url_rule(PLOTLY_PATH, "plotly_js", _plotly_js)
    log.info("Serving database %s with the %s cache", safe_url(config.database_url),
             app.server.config[CACHE_KEY].description)
    return app


def _register_pages() -> None:
    """Import every module of ``pages``; each registers itself, its ``layout`` is read after."""
    for info in pkgutil.iter_modules(pages.__path__):
        module = importlib.import_module(f"{pages.__name__}.{info.name}")
        page = dash.page_registry.get(module.__name__)
        if page is not None and not page.get("supplied_layout"):
            page["layout"] = module.layout


PLOTLY_PATH = "/_dash-component-suites/plotly/package_data/plotly.min.js"
PLOTLY_BUNDLE = "plotly-cartesian.min.js"


@functools.cache
def _plotly_bundle() -> bytes:
    return (importlib.resources.files("bi_app") / "vendor" / PLOTLY_BUNDLE).read_bytes()


def _plotly_js():  # noqa: ANN202 - a Flask view
    # From memory, not a file stream, so flask-compress can compress it (1.5 MB -> ~0.5 MB).
    response = Response(_plotly_bundle(), mimetype="application/javascript")
    response.cache_control.public = True
    response.cache_control.max_age = 86400
    return response


def _healthz():  # noqa: ANN202 - a Flask view
    """``ok`` or ``unavailable`` for anyone (a load balancer's check); the database, data version,
    snapshot state and the reason of a failure only to a caller on this machine (the operator,
    not a visitor through nginx, which forwards who it came from)."""
    config = current_config()
    engine = engine_for(config)
    local = from_this_machine()
    try:
        ping(engine)
        with engine.connect() as conn:
            version = data_version(conn)
    except (DatabaseError, SQLAlchemyError) as exc:
        if not local:
            return jsonify(status="unavailable"), 503
        reason = str(exc) if isinstance(exc, DatabaseError) else describe_error(exc)
        return jsonify(status="unavailable", database=safe_url(config.dashboard_database_url), reason=reason), 503
    replica = current_replica()
    if replica is not None:
        replica.engine_for(version)  # starts the snapshot build if this version has none
    if not local:
        return jsonify(status="ok")
    columnar = replica.status(version) if replica else "off"
    failure = {"columnar_error": replica.failure(version)} if columnar == "failed" else {}
    return jsonify(
        status="ok",
        database=safe_url(config.dashboard_database_url),
        database_slow=database_is_slow(engine),
        data_version=version,
        columnar=columnar,
        **failure,
    )


def seed_embedded_database(config: Config) -> None:
    """Fill the embedded database with demo orders on first run (once, whoever asks first)."""
    try:
        ensure_demo_database(engine_for(config), config.data_dir, config.demo_rows, config.demo_seed)
    except Exception as exc:  # noqa: BLE001 - the app still starts; /healthz says why
        log.error("Could not seed the embedded demo database: %s", describe_error(exc, config.database_url))
