"""The running app's config and engine, for pages and routes inside a request.

The app factory (:func:`bi_app.app.create_app`, the composition root) builds the app's parts:
its config, result cache, and the registries of its columnar replicas (:class:`Replicas`) and
model stores (:class:`ModelStores`), which it gives the service's precomputations (this module
never imports the service: the service reads it). A registry makes the replica or store of a
database on first use, one per database URL, so a test may point the app at another database.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dash
from flask import current_app, g, has_request_context, request
from sqlalchemy import Connection, Engine

from bi_app.config import Config, engine_for, write_engine_for
from data_layer.cache import ResultCache
from data_layer.columnar import ColumnarReplica
from data_layer.engine import make_engine
from data_layer.meta import changed_rows
from data_layer.users import User

if TYPE_CHECKING:
    from bi_app.ml.models import ModelStore, TrainedModels

CONFIG_KEY = "BI_CONFIG"
CACHE_KEY = "BI_CACHE"
REPLICAS_KEY = "BI_REPLICAS"
MODELS_KEY = "BI_MODELS"
#: The server process a background ``bi-app train`` or ``snapshot`` belongs to: it ends when that process does.
PARENT_PID_ENV = "BI_PARENT_PID"
#: Where the guard (:mod:`bi_app.auth`) puts the signed-in user of a request, in ``flask.g``.
USER_KEY = "bi_user"
#: The user of demo mode (no ``BI_SECRET_KEY``) and of work outside a request: every role, every region.
DEMO_USER = User("demo", "admin", ())
#: The service's precomputation of the default views into a snapshot: (snapshot, version, period) -> answers.
Precompute = Callable[..., dict[str, Any]]
log = logging.getLogger(__name__)


class Replicas:
    """The columnar replicas of the databases an app reads, one per database URL, made on first use;
    ``precompute`` (:func:`bi_app.service.precompute_default_views`) answers the default views into each."""

    def __init__(self, precompute: Precompute) -> None:
        self.precompute = precompute
        self.made: dict[str, ColumnarReplica] = {}
        self._lock = threading.Lock()

    def for_config(self, config: Config) -> ColumnarReplica | None:
        """The replica of ``config``'s database; None when ``BI_COLUMNAR=0``."""
        if not config.columnar:
            return None
        with self._lock:
            if config.database_url not in self.made:
                self.made[config.database_url] = replica_for(config, self.precompute, build_in_subprocess=True)
            return self.made[config.database_url]


class ModelStores:
    """The trained-model stores of the databases an app reads, one per database URL, made on first use;
    ``answer`` (:func:`bi_app.service.answer_default_view`) answers the unfiltered view with each training."""

    def __init__(self, answer: Callable[[Engine, TrainedModels], dict[str, Any]]) -> None:
        self.answer = answer
        self.made: dict[str, ModelStore] = {}
        self._lock = threading.Lock()

    def for_config(self, config: Config) -> ModelStore:
        from bi_app.ml.models import ModelStore

        with self._lock:
            if config.database_url not in self.made:
                self.made[config.database_url] = ModelStore(models_folder(config), self.answer)
            return self.made[config.database_url]


def current_config() -> Config:
    """The :class:`Config` of the app serving this request."""
    return current_app.config[CONFIG_KEY]


def signed_in_user() -> User:
    """The user of this request, whom the guard let in (the demo user in demo mode and outside a request)."""
    return (g.get(USER_KEY) if has_request_context() else None) or DEMO_USER


#: The least role that may download (``/export/*``).
DOWNLOAD_ROLE = "analyst"
#: The least role that may import orders (the Data page, its uploads); replacing all of them needs an admin.
IMPORT_ROLE = "analyst"


def may_download() -> bool:
    """True when this request's user may download: pages offer download links to those users only."""
    return signed_in_user().may(DOWNLOAD_ROLE)


def from_this_machine() -> bool:
    """True for a request made on this machine directly: a loopback address and no proxy's
    ``Forwarded`` or ``X-Forwarded-For`` header (nginx on this machine proxies from loopback too)."""
    forwarded = request.headers.get("Forwarded") or request.headers.get("X-Forwarded-For")
    return not forwarded and request.remote_addr in ("127.0.0.1", "::1")


def page_for(pathname: str | None) -> dict | None:
    """The ``dash.page_registry`` entry whose path is ``pathname`` (a trailing slash aside)."""
    path = (pathname or "/").rstrip("/") or "/"
    return next((page for page in dash.page_registry.values() if page["path"] == path), None)


def current_engine() -> Engine:
    """This process's engine for the database of the app serving this request."""
    return engine_for(current_config())


def current_write_engine() -> Engine:
    """This process's engine for writing to the app's database (``BI_DATABASE_WRITE_URL``, else its URL)."""
    return write_engine_for(current_config())


def current_cache() -> ResultCache:
    """The result cache of the app serving this request."""
    return current_app.config[CACHE_KEY]


def current_replica() -> ColumnarReplica | None:
    """The columnar snapshots of the current database (None when BI_COLUMNAR=0)."""
    return current_app.config[REPLICAS_KEY].for_config(current_config())


def current_models(conn: Connection, version: str | None, models_version: str | None) -> TrainedModels:
    """The models of the last load's version ``models_version``; a page never waits for a training
    that is under way.

    Saved models stay in use while other tools change rows. Once retraining is due
    (:func:`bi_app.ml.models.retraining_due`, from ``conn``'s change count) it starts in a process of
    its own, and its models take over once saved. While another process trains the first models
    of the data (``bi-app serve`` starts one), a stand-in without models says so; when none
    does, they are trained here, on the snapshot of data ``version`` when ready, once across workers.
    """
    from bi_app.ml.models import TrainedModels, retraining_due

    store = _model_store()
    models = store.stored(models_version or "")
    if models is None:
        if store.training_elsewhere():
            return TrainedModels.being_trained(models_version or "")
        replica = current_replica()
        snapshot = replica.engine_for(version) if replica else None
        return store.get(snapshot or current_engine(), models_version or "")
    reason = retraining_due(models, changed_rows(conn))
    if reason and store.may_start_retraining():
        log.info("Retraining the customer models in the background: %s", reason)
        start_training(current_config())
    return models


def stored_models(models_version: str | None) -> TrainedModels | None:
    """The models of ``models_version`` if they are already trained; never trains."""
    return _model_store().stored(models_version or "")


def _model_store() -> ModelStore:
    return current_app.config[MODELS_KEY].for_config(current_config())


def start_training(config: Config) -> None:
    """Train the models of ``config``'s current data in a process of its own (``bi-app train``).

    Not a thread: in gunicorn's master it would be forked into the workers
    holding its locks; in a worker it would compete with requests.
    """
    from bi_app.ml.models import ModelStore

    env = {**os.environ, "BI_DATABASE_URL": config.database_url, "BI_DATABASE_READ_URL": config.read_database_url or "",
           "BI_DATA_DIR": str(config.data_dir.resolve()), PARENT_PID_ENV: str(os.getpid())}
    process = subprocess.Popen([sys.executable, "-m", "bi_app.cli", "train"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ModelStore(models_folder(config)).started_training(process.pid)


def models_folder(config: Config) -> Path:
    """Where the trained models of ``config``'s database are kept."""
    return config.data_dir / "models" / database_key(config)


def database_key(config: Config) -> str:
    """A short stable name for ``config``'s database (its URL's hash)."""
    return hashlib.sha256(config.database_url.encode()).hexdigest()[:12]


def replica_for(config: Config, precompute: Precompute, *, build_in_subprocess: bool) -> ColumnarReplica:
    """The columnar snapshots of ``config``'s database, under ``BI_DATA_DIR/columnar/<database>``;
    ``precompute`` (:func:`bi_app.service.precompute_default_views`) answers the default views into each.

    With ``build_in_subprocess`` a new version is copied by ``bi-app snapshot`` in a
    process of its own (the app server's memory stays flat), else in a thread.
    """
    folder = config.data_dir / "columnar" / database_key(config)
    # Its own engine: snapshot copies are batch work, outside the app's pool and timeout.
    source = make_engine(config.dashboard_database_url, statement_timeout_ms=0,
                         connect_timeout_s=config.connect_timeout_s)
    command = None
    if build_in_subprocess:
        env = {
            **os.environ,
            "BI_DATABASE_URL": config.database_url,
            "BI_DATABASE_READ_URL": config.read_database_url or "",
            "BI_DATA_DIR": str(config.data_dir.resolve()),
            "BI_COLUMNAR_MEMORY": config.columnar_memory,
            "BI_CONNECT_TIMEOUT_S": str(config.connect_timeout_s),
            PARENT_PID_ENV: str(os.getpid()),
        }
        command = ([sys.executable, "-m", "bi_app.cli", "snapshot"], env)
    return ColumnarReplica(source, folder.resolve(), config.columnar_memory,
                           functools.partial(precompute, period=config.default_period), command)
