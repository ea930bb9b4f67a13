"""Trained models per data version: fitted on every customer, saved with joblib, loaded by any worker."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import joblib
from threadpoolctl import threadpool_limits
from sqlalchemy import Engine

from bi_app.ml.churn import DEFAULT_HORIZON_DAYS, ChurnClassifier, NotEnoughHistory, RecencyBaseline, train_churn
from bi_app.ml.features import customer_features
from bi_app.ml.segmentation import CustomerSegmentation
from data_layer.filters import Filters
from data_layer.meta import stamped_version

log = logging.getLogger(__name__)

#: OpenMP and BLAS threads for training. One: inside a threaded web worker, and on small shared hosts,
#: more threads spin against each other (gradient boosting ran 10-30x slower with two here).
TRAINING_THREADS = 1
#: Segmentation is fitted on at most this many customers (a random sample beyond it);
#: every customer is then labelled by the fitted model.
TRAINING_SAMPLE = 1_000_000


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


def train_models(engine: Engine, random_state: int = 42) -> TrainedModels:
    """Fit the segmentation and the churn model on all customers of the current data."""
    seconds: dict[str, float] = {}
    problems: list[str] = []
    with threadpool_limits(limits=TRAINING_THREADS), engine.connect() as conn:
        version = stamped_version(conn) or ""
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
        except NotEnoughHistory as exc:
            problems.append(f"churn: {exc}")
        seconds["churn"] = time.perf_counter() - started
    return TrainedModels(version, segmentation, churn, evaluation,
                         datetime.now(timezone.utc).isoformat(timespec="seconds"), seconds, problems, len(features))


class ModelStore:
    """The trained models of one database, one joblib file per data version under ``folder``.

    ``answer(engine, models)``, when given, computes the answers saved with the models
    (:attr:`TrainedModels.answers`).
    """

    def __init__(self, folder: Path,
                 answer: Callable[[Engine, TrainedModels], dict[str, Any]] | None = None) -> None:
        self.folder = folder
        self.answer = answer
        self._loaded: TrainedModels | None = None

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
        """The models of ``version`` if they are trained (in memory or on disk); never trains."""
        if self._loaded is not None and self._loaded.data_version == version:
            return self._loaded
        path = self.path(version)
        if not path.exists():
            return None
        self._loaded = joblib.load(path)  # our own file, written by train()
        return self._loaded

    def train(self, engine: Engine, version: str) -> Path:
        """Train and save the models of ``version`` unless another process just did; drop older files."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".train.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.path(version)
            if path.exists():
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
            log.info("Models for data version %s trained in %.1f s (%s)", version, time.perf_counter() - started,
                     "; ".join(models.problems) or "all trained")
            return path
