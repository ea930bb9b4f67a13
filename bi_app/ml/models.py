"""Trained models per data version: fitted on every customer, saved with joblib, loaded by any worker."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
from sqlalchemy import Engine
from threadpoolctl import threadpool_limits

from bi_app.ml.churn import DEFAULT_HORIZON_DAYS, ChurnClassifier, NotEnoughHistoryError, RecencyBaseline, train_churn
from bi_app.ml.features import customer_features
from bi_app.ml.segmentation import CustomerSegmentation
from data_layer.filters import Filters
from data_layer.measures import line_count
from data_layer.meta import changed_rows, stamped_version

log = logging.getLogger(__name__)

#: OpenMP and BLAS threads for training. One: inside a threaded web worker, and on small shared hosts,
#: more threads spin against each other (gradient boosting ran 10-30x slower with two here).
TRAINING_THREADS = 1
#: Segmentation is fitted on at most this many customers (a random sample beyond it);
#: every customer is then labelled by the fitted model.
TRAINING_SAMPLE = 1_000_000
#: The models are retrained (in the background) once other tools have inserted, updated or deleted
#: this share of the order lines they were trained on ...
RETRAIN_SHARE = 0.10
#: ... or once they are this old (seconds) and any line changed since. A load of ours retrains at once.
RETRAIN_AFTER_S = 24 * 3600
#: Seconds between two starts of a retraining from one process (it checks again whether it is due).
RETRAIN_CHECK_S = 300
#: Why the customer-level analyses are not answered while the first models of the data are trained.
BEING_TRAINED = ("The customer models are being trained on this data (a few minutes at a million orders); "
                 "this fills in once they are ready: reload the page in a minute.")


@dataclass
class TrainedModels:
    """The models of one data version, and how they were trained."""

    data_version: str
    segmentation: CustomerSegmentation | None
    churn: ChurnClassifier | RecencyBaseline | None
    churn_evaluation: dict[str, Any] | None
    trained_at: str
    seconds: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    customers: int = 0
    #: Answers of the customer-level analyses for the unfiltered view, keyed as the result cache:
    #: the slowest view to compute on request (every customer), computed once with the models.
    answers: dict[str, Any] = field(default_factory=dict)
    #: The orders table's running total of changed rows when training read it (None: not watched),
    #: and how many order lines it held: what :func:`retraining_due` compares with.
    changes: int | None = None
    lines: int = 0
    #: True for the stand-in served while the first models of the data are trained elsewhere.
    pending: bool = False

    @property
    def identity(self) -> str:
        """Names this training (answers computed with it are cached under it)."""
        return "pending" if self.pending else f"{self.data_version or 'unversioned'}@{self.trained_at}"

    @classmethod
    def being_trained(cls, version: str) -> TrainedModels:
        """The stand-in for models another process is training now: no model, and why."""
        return cls(version, None, None, None, "", problems=[BEING_TRAINED], pending=True)


def retraining_due(models: TrainedModels, changes: int | None, now: datetime | None = None) -> str | None:
    """Why ``models`` should be retrained, given the orders table's running total of changed rows
    now (:func:`data_layer.meta.changed_rows`); None while they stay in use."""
    if models.pending or changes is None or models.changes is None or changes == models.changes:
        return None
    changed = changes - models.changes
    if changed < 0:
        return "the change count went down (statistics reset, or rows deleted)"
    if changed >= RETRAIN_SHARE * max(models.lines, 1):
        return f"{changed:,} order lines changed since training ({RETRAIN_SHARE:.0%} or more of {models.lines:,})"
    age = ((now or datetime.now(UTC)) - datetime.fromisoformat(models.trained_at)).total_seconds()
    if age >= RETRAIN_AFTER_S:
        return f"{changed:,} order lines changed since training, {age / 3600:.0f} hours ago"
    return None


def train_models(engine: Engine, random_state: int = 42) -> TrainedModels:
    """Fit the segmentation and the churn model on all customers of the current data."""
    seconds: dict[str, float] = {}
    problems: list[str] = []
    with threadpool_limits(limits=TRAINING_THREADS), engine.connect() as conn:
        version = stamped_version(conn) or ""
        # Read before the rows: a change made while training runs counts towards the next one.
        changes = changed_rows(conn, fresh=True)
        lines = line_count(conn)
        started = time.perf_counter()
        features = customer_features(conn, Filters())
        seconds["features"] = time.perf_counter() - started
        segmentation = None
        started = time.perf_counter()
        try:
            sample = features.sample(TRAINING_SAMPLE, random_state=random_state) if len(features) > TRAINING_SAMPLE \
                else features
            segmentation = CustomerSegmentation(random_state=random_state).fit(sample)
        except ValueError as exc:
            problems.append(f"segmentation: {exc}")
        seconds["segmentation"] = time.perf_counter() - started
        churn = evaluation = None
        started = time.perf_counter()
        try:
            churn, evaluation = train_churn(conn, DEFAULT_HORIZON_DAYS, random_state)
        except NotEnoughHistoryError as exc:
            problems.append(f"churn: {exc}")
        seconds["churn"] = time.perf_counter() - started
    return TrainedModels(version, segmentation, churn, evaluation,
                         datetime.now(UTC).isoformat(timespec="milliseconds"), seconds, problems,
                         len(features), changes=changes, lines=lines)


class ModelStore:
    """The trained models of one database, one joblib file per data version under ``folder``.

    ``answer(engine, models)``, when given, computes the answers saved with the models
    (:attr:`TrainedModels.answers`).
    """

    def __init__(self, folder: Path,
                 answer: Callable[[Engine, TrainedModels], dict[str, Any]] | None = None) -> None:
        self.folder = folder
        self.answer = answer
        self._loaded: tuple[Path, int, TrainedModels] | None = None  # (file, its mtime, its models)
        self._retraining_started = float("-inf")

    def path(self, version: str) -> Path:
        return self.folder / f"models-{version or 'unversioned'}.joblib"

    def get(self, engine: Engine, version: str) -> TrainedModels:
        """The models of ``version``: in memory, on disk, or trained now (once, across processes)."""
        stored = self.stored(version)
        if stored is not None:
            return stored
        self.train(engine, version)
        return self.stored(version)  # type: ignore[return-value]

    def stored(self, version: str) -> TrainedModels | None:
        """The models of ``version`` if they are trained (in memory or on disk, as last retrained); never trains."""
        path = self.path(version)
        try:
            modified = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if self._loaded is None or self._loaded[:2] != (path, modified):
            self._loaded = (path, modified, joblib.load(path))  # our own file, written by train()
        return self._loaded[2]

    def training_elsewhere(self) -> bool:
        """True while another process trains: it holds the training lock, or it was started to train
        (:meth:`started_training`) and is still starting up."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".train.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lock, fcntl.LOCK_UN)
        try:
            return _is_training((self.folder / ".train.pid").read_text().strip())
        except OSError:
            return False

    def started_training(self, pid: int) -> None:
        """Note the process just started to train, so that pages do not train too while it starts up."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / ".train.pid").write_text(str(pid))

    def may_start_retraining(self) -> bool:
        """True at most once every :data:`RETRAIN_CHECK_S` seconds per process, and never while a
        training runs (the caller then starts one)."""
        now = time.monotonic()
        if now - self._retraining_started < RETRAIN_CHECK_S or self.training_elsewhere():
            return False
        self._retraining_started = now
        return True

    def train(self, engine: Engine, version: str, *, again: Callable[[TrainedModels], bool] | None = None) -> Path:
        """Train and save the models of ``version`` unless another process just did; drop older files.

        With ``again``, models already saved for ``version`` are trained anew when ``again(models)``
        (checked once the lock is held: a process that waited for another's training sees its models).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".train.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.path(version)
            if path.exists() and (again is None or not again(joblib.load(path))):
                return path
            started = time.perf_counter()
            models = train_models(engine)
            if models.data_version != version:
                raise RuntimeError(f"data changed to version {models.data_version} while training for {version}")
            if self.answer is not None:
                answering = time.perf_counter()
                models.answers = self.answer(engine, models)
                models.seconds["answers"] = time.perf_counter() - answering
            partial = path.with_suffix(".partial")
            joblib.dump(models, partial)
            os.replace(partial, path)
            for old in self.folder.glob("models-*.joblib"):
                if old != path:
                    old.unlink(missing_ok=True)
            log.info("Models for data version %s trained in %.1f s (%s)",
                     version or "(none: no load of ours stamped one)",
                     time.perf_counter() - started,
                     "; ".join(models.problems) or "all trained")
            return path


def _is_training(pid: str) -> bool:
    """True while process ``pid`` runs ``bi-app train`` (not exited, not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{int(pid)}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        with open(f"/proc/{int(pid)}/cmdline", "rb") as cmdline:
            return b"bi_app.cli\x00train" in cmdline.read()
    except (OSError, ValueError, IndexError):
        return False
