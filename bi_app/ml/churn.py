"""Churn: will a customer place no order in the next N days? Trained and judged on a time split."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import calibration_curve
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import Connection

from bi_app.ml.features import CHURN_FEATURES, customer_features, latest_order_date
from data_layer.filters import Filters
from data_layer.measures import customers_with_an_order

DEFAULT_HORIZON_DAYS = 180
#: The model is used only when its held-out ROC AUC beats the recency baseline's by this much;
#: else the baseline gives the churn probabilities.
BASELINE_MARGIN = 0.02
MODEL_NAMES = {"model": "gradient-boosted trees", "baseline": "recency baseline (days since the last order)"}
#: At least this many labelled customers, with both outcomes, before a model is trained.
MINIMUM_CUSTOMERS = 50


class NotEnoughHistoryError(ValueError):
    """The data is too short or too small for a time-split churn model."""


def labelled_customers(conn: Connection, filters: Filters, cutoff: date, horizon_days: int) -> pd.DataFrame:
    """Customers with an order on or before ``cutoff``, their features as of the cutoff, and
    ``churned``: no order in the ``horizon_days`` days after it."""
    features = customer_features(conn, filters, as_of=cutoff)
    window = replace(filters, start=max(filters.start or cutoff, cutoff + timedelta(days=1)),
                     end=min(filters.end or cutoff + timedelta(days=horizon_days),
                             cutoff + timedelta(days=horizon_days)))
    returning = customers_with_an_order(conn, window)
    features["churned"] = ~features["customer_id"].isin(returning).to_numpy()
    return features


class ChurnClassifier(ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees on the churn features (missing satisfaction is handled natively).

    Small trees (15 leaves), and on more than 10,000 customers as many rounds as keep improving
    a held-out tenth (scikit-learn's early stopping): on a million demo orders that is about 60 of
    the 200 allowed, a better ROC AUC than 200 rounds of 31-leaf trees (0.643 against 0.630), and
    labelling the customers of a filtered page takes a quarter of the time.
    """

    def __init__(self, random_state: int = 42, max_iter: int = 200, learning_rate: float = 0.1,
                 max_leaf_nodes: int = 15) -> None:
        self.random_state = random_state
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> ChurnClassifier:  # noqa: N803 - sklearn's name
        # A feature no customer has (no ratings in the data) tells nothing, and the trees' binning
        # fails on a column of missing values only.
        self.features_ = [name for name in CHURN_FEATURES if X[name].notna().any()]
        self.model_ = HistGradientBoostingClassifier(
            random_state=self.random_state, max_iter=self.max_iter, learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes, early_stopping="auto",
        ).fit(_matrix(X, self.features_), np.asarray(y, dtype=int))
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return self.model_.predict_proba(_matrix(X, self._features()))

    def predict(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return self.model_.predict(_matrix(X, self._features()))

    def _features(self) -> list[str]:
        # A model saved before features were chosen used all of them.
        return getattr(self, "features_", list(CHURN_FEATURES))

    def churn_probability(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        """P(no order in the horizon) for each customer."""
        return self.predict_proba(X)[:, list(self.classes_).index(1)]


class RecencyBaseline(ClassifierMixin, BaseEstimator):
    """P(churn) from the days since the last order alone: a logistic regression on them (scaled)."""

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> RecencyBaseline:  # noqa: N803 - sklearn's name
        self.features_ = ["recency_days"]
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression()).fit(
            _matrix(X, self.features_), np.asarray(y, dtype=int))
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return self.model_.predict_proba(_matrix(X, self.features_))

    def predict(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return self.model_.predict(_matrix(X, self.features_))

    def churn_probability(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        """P(no order in the horizon) for each customer."""
        return self.predict_proba(X)[:, list(self.classes_).index(1)]


def _matrix(X: pd.DataFrame, features: list[str]) -> np.ndarray:  # noqa: N803
    return X.loc[:, features].to_numpy(dtype=float)


def train_churn(conn: Connection, horizon_days: int = DEFAULT_HORIZON_DAYS,
                random_state: int = 42) -> tuple[ChurnClassifier | RecencyBaseline, dict[str, Any]]:
    """A churn model and its evaluation on a time split.

    Trained at cutoff ``latest - 2 x horizon`` (labels from the next horizon),
    evaluated at ``latest - horizon`` on customers and outcomes it never saw
    in time, beside a baseline that ranks by recency alone. The trees are used only
    when their ROC AUC beats the baseline's by :data:`BASELINE_MARGIN`; else the
    :class:`RecencyBaseline` is (``evaluation["used"]`` says which, the other measures
    are of the one used). It is then refitted at the later cutoff, the most recent
    one with known outcomes.
    """
    latest = latest_order_date(conn, Filters())
    if latest is None:
        raise NotEnoughHistoryError("there are no orders")
    train_cutoff = latest - timedelta(days=2 * horizon_days)
    test_cutoff = latest - timedelta(days=horizon_days)
    train = labelled_customers(conn, Filters(), train_cutoff, horizon_days)
    test = labelled_customers(conn, Filters(), test_cutoff, horizon_days)
    for name, frame, cutoff in (("training", train, train_cutoff), ("test", test, test_cutoff)):
        if len(frame) < MINIMUM_CUSTOMERS or frame["churned"].nunique() < 2:
            raise NotEnoughHistoryError(
                f"the {name} cutoff {cutoff} has {len(frame)} customers"
                f"{'' if frame['churned'].nunique() == 2 else ' all with the same outcome'}; a churn model "
                f"needs {2 * horizon_days} days of history and at least {MINIMUM_CUSTOMERS} customers"
            )
    model = ChurnClassifier(random_state=random_state).fit(train, train["churned"])
    evaluation = evaluate(model, test)
    used = "model" if evaluation["roc_auc"] >= evaluation["baseline_roc_auc"] + BASELINE_MARGIN else "baseline"
    chosen = ChurnClassifier(random_state=random_state) if used == "model" else RecencyBaseline()
    if used == "baseline":
        model_roc_auc = evaluation["roc_auc"]
        evaluation = evaluate(chosen.fit(train, train["churned"]), test)
        evaluation["model_roc_auc"] = model_roc_auc
    else:
        evaluation["model_roc_auc"] = evaluation["roc_auc"]
    evaluation.update({
        "used": used,
        "used_name": MODEL_NAMES[used],
        "margin": BASELINE_MARGIN,
        "horizon_days": horizon_days,
        "train_cutoff": train_cutoff,
        "test_cutoff": test_cutoff,
        "train_customers": len(train),
        "test_customers": len(test),
        "train_churn_rate": float(train["churned"].mean()),
        "test_churn_rate": float(test["churned"].mean()),
    })
    final = chosen.fit(test, test["churned"])
    return final, evaluation


def evaluate(model: ChurnClassifier | RecencyBaseline, test: pd.DataFrame) -> dict[str, Any]:
    """ROC AUC (``model`` and the recency ranking), precision and recall in the top decile, calibration."""
    actual = test["churned"].to_numpy(dtype=int)
    probability = model.churn_probability(test)
    top = np.argsort(-probability, kind="stable")[: max(1, len(test) // 10)]
    bins = min(10, max(2, len(test) // 50))
    observed, predicted = calibration_curve(actual, probability, n_bins=bins, strategy="quantile")
    return {
        "roc_auc": float(roc_auc_score(actual, probability)),
        "baseline_roc_auc": float(roc_auc_score(actual, test["recency_days"].to_numpy(dtype=float))),
        "top_decile_precision": float(actual[top].mean()),
        "top_decile_recall": float(actual[top].sum() / actual.sum()),
        "brier_score": float(brier_score_loss(actual, probability)),
        "calibration": [{"predicted": float(p), "observed": float(o)}
                        for p, o in zip(predicted, observed, strict=True)],
    }
