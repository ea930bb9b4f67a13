"""Customer segmentation: standardised features, K-Means with k chosen by silhouette, honest metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from bi_app.ml.features import SEGMENTATION_FEATURES

#: Above this many customers K-Means runs in mini-batches and the silhouette is computed
#: on a random sample of :data:`SILHOUETTE_SAMPLE` customers (it is quadratic in the count).
MINIBATCH_ABOVE = 50_000
SILHOUETTE_SAMPLE = 5_000

#: The trait a cluster is named by: (feature, sign of its standardised centroid) -> word.
TRAITS = {
    ("order_count", 1): "frequent",
    ("order_count", -1): "one-off",
    ("average_order_value", 1): "big baskets",
    ("average_order_value", -1): "small baskets",
    ("recency_days", 1): "lapsed",
    ("recency_days", -1): "recent",
    ("total_discounts", 1): "discount-driven",
    ("total_discounts", -1): "full-price",
    ("average_satisfaction", 1): "satisfied",
    ("average_satisfaction", -1): "dissatisfied",
    ("total_items", 1): "bulk buyers",
    ("total_items", -1): "single items",
    ("total_spent", 1): "big spenders",
    ("total_spent", -1): "small spenders",
}


class CustomerSegmentation(ClusterMixin, BaseEstimator):
    """Median-impute and standardise the features, then K-Means for each k; keep the best silhouette.

    After ``fit``: ``k_``, ``silhouette_by_k_`` (k -> score), ``metrics_``
    (silhouette, inertia, Calinski-Harabasz, Davies-Bouldin of the chosen
    model), ``stability_`` (silhouette and adjusted Rand index of refits on
    random subsamples, against the full model), ``feature_importance_``
    (share of each feature's variance explained by the clusters, summing to 1),
    ``profiles_`` (per-cluster means in the features' own units) and ``names_``.
    """

    def __init__(
        self,
        k_values: tuple[int, ...] = (2, 3, 4, 5, 6, 7),
        random_state: int = 42,
        n_init: int = 10,
        stability_runs: int = 5,
        stability_fraction: float = 0.8,
        minibatch_above: int = MINIBATCH_ABOVE,
        silhouette_sample: int = SILHOUETTE_SAMPLE,
    ) -> None:
        self.k_values = k_values
        self.random_state = random_state
        self.n_init = n_init
        self.stability_runs = stability_runs
        self.stability_fraction = stability_fraction
        self.minibatch_above = minibatch_above
        self.silhouette_sample = silhouette_sample

    def fit(self, X: pd.DataFrame, y: Any = None) -> CustomerSegmentation:  # noqa: N803 - sklearn's name
        features = _frame(X)
        usable = [k for k in self.k_values if 2 <= k < len(features)]
        if not usable:
            raise ValueError(f"{len(features)} customers are too few to form clusters")
        # A feature no customer has (no ratings in the data) is kept as a constant: dropping it would
        # leave the scaled matrix a column short of the feature names.
        self.scaler_: Pipeline = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                                               StandardScaler())
        scaled = self.scaler_.fit_transform(features)
        self.n_customers_ = len(features)
        self.sampled_ = len(features) > self.minibatch_above
        models = {k: self._kmeans(k).fit(scaled) for k in usable}
        self.silhouette_by_k_ = {k: self._silhouette(scaled, m.labels_) for k, m in models.items()}
        self.k_ = max(usable, key=lambda k: self.silhouette_by_k_[k])  # the first k on a tie
        self.kmeans_ = models[self.k_]
        self.labels_ = self.kmeans_.labels_
        self.metrics_ = {
            "silhouette": self.silhouette_by_k_[self.k_],
            "inertia": float(self.kmeans_.inertia_),
            "calinski_harabasz": float(calinski_harabasz_score(scaled, self.labels_)),
            "davies_bouldin": float(davies_bouldin_score(scaled, self.labels_)),
        }
        self.stability_ = self._stability(scaled)
        self.feature_importance_ = _explained_variance_shares(scaled, self.labels_)
        self.projection_ = PCA(n_components=2, random_state=self.random_state).fit(scaled)
        self.profiles_ = profile(features, self.labels_)
        self.names_ = name_clusters(self.profiles_, self.kmeans_.cluster_centers_)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        """The cluster of each customer."""
        return self.kmeans_.predict(self.scaler_.transform(_frame(X)))

    def project(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        """The customers' coordinates on the first two principal components of the training data."""
        return self.projection_.transform(self.scaler_.transform(_frame(X)))

    def _kmeans(self, k: int) -> KMeans | MiniBatchKMeans:
        if self.sampled_:
            return MiniBatchKMeans(n_clusters=k, random_state=self.random_state, n_init=3, batch_size=4096)
        return KMeans(n_clusters=k, random_state=self.random_state, n_init=self.n_init)

    def _silhouette(self, scaled: np.ndarray, labels: np.ndarray) -> float:
        if len(np.unique(labels)) < 2:
            return -1.0
        sample = self.silhouette_sample if len(scaled) > self.silhouette_sample else None
        return float(silhouette_score(scaled, labels, sample_size=sample, random_state=self.random_state))

    def _stability(self, scaled: np.ndarray) -> dict[str, float]:
        rng = np.random.default_rng(self.random_state)
        size = max(self.k_ + 1, int(len(scaled) * self.stability_fraction))
        silhouettes, agreements = [], []
        for run in range(self.stability_runs):
            rows = rng.choice(len(scaled), size=size, replace=False)
            refit = self._kmeans(self.k_).set_params(random_state=self.random_state + run + 1).fit(scaled[rows])
            silhouettes.append(self._silhouette(scaled[rows], refit.labels_))
            agreements.append(adjusted_rand_score(self.labels_[rows], refit.labels_))
        return {
            "runs": self.stability_runs,
            "fraction": self.stability_fraction,
            "silhouette_mean": float(np.mean(silhouettes)),
            "silhouette_sd": float(np.std(silhouettes)),
            "adjusted_rand_mean": float(np.mean(agreements)),
            "adjusted_rand_sd": float(np.std(agreements)),
        }


def _frame(X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803
    return X.loc[:, list(SEGMENTATION_FEATURES)].astype(float)


def _explained_variance_shares(scaled: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Per feature, the between-cluster share of its variance (eta squared), normalised to sum to 1."""
    frame = pd.DataFrame(scaled, columns=SEGMENTATION_FEATURES)
    means = frame.groupby(labels).transform("mean")
    total = ((frame - frame.mean()) ** 2).sum()
    between = ((means - frame.mean()) ** 2).sum()
    eta = (between / total.where(total > 0)).fillna(0.0)
    shares = eta / eta.sum() if eta.sum() > 0 else eta
    return {name: float(shares[name]) for name in SEGMENTATION_FEATURES}


def profile(features: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """Customers, share and mean of each feature per cluster."""
    grouped = features.loc[:, list(SEGMENTATION_FEATURES)].astype(float).groupby(labels)
    frame = grouped.mean()
    frame.insert(0, "customers", grouped.size())
    frame.insert(1, "customer_share", frame["customers"] / len(features))
    return frame.rename_axis("cluster").reset_index()


def name_clusters(profiles: pd.DataFrame, centers: np.ndarray) -> dict[int, str]:
    """A name per cluster: its value tier by mean total spent, and the trait that sets it apart most."""
    order = profiles.sort_values("total_spent", ascending=False)["cluster"].tolist()
    tiers = {cluster: _tier(rank, len(order)) for rank, cluster in enumerate(order)}
    names: dict[int, str] = {}
    for cluster in order:
        z = dict(zip(SEGMENTATION_FEATURES, centers[cluster], strict=True))
        trait_feature = max((f for f in SEGMENTATION_FEATURES if f != "total_spent"), key=lambda f: abs(z[f]))
        name = f"{tiers[cluster]} · {TRAITS[(trait_feature, 1 if z[trait_feature] >= 0 else -1)]}"
        names[cluster] = name if name not in names.values() else f"{name} ({cluster + 1})"
    return names


def _tier(rank: int, count: int) -> str:
    if rank == 0:
        return "High-value"
    if rank == count - 1:
        return "Low-value" if count > 2 else "Regular"
    return "Regular" if count == 3 else f"Mid-value {rank}"
