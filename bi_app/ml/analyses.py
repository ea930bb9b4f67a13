"""The customer-intelligence answers under a filter: clusters, RFM, churn, forecast, scored customers.

Plain functions of (connection, filters[, models]) like :mod:`bi_app.analytics`;
the models were trained on every customer of the data version and label the
customers that match the filters.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from bi_app.analytics.orders import trend
from bi_app.analytics.stats import money_per_row
from bi_app.ml.features import FEATURE_LABELS, SEGMENTATION_FEATURES, customer_features
from bi_app.ml.forecast import HORIZON_MONTHS, MAX_BACKTEST_MAPE, complete_months, forecast_revenue, mape_reading
from bi_app.ml.models import BEING_TRAINED, TrainedModels
from bi_app.ml.rfm import RFM_RULES, RFM_SEGMENTS, rfm_scores
from bi_app.ml.segmentation import CustomerSegmentation
from data_layer.filters import Filters
from data_layer.stopping import checkpoint

#: Points drawn in the 2-D projection (a random sample of the matching customers beyond it).
PROJECTION_POINTS = 2_000
CUSTOMER_COLUMNS = ["customer_id", *SEGMENTATION_FEATURES, "tenure_days", "first_order_date", "last_order_date",
                    "single_category", "cluster", "cluster_name", "r_score", "f_score", "m_score", "rfm_score",
                    "rfm_segment", "churn_probability"]


#: What :func:`scored_customers` can label customers with.
LABELS = ("cluster", "rfm", "churn")


def scored_customers(conn: Connection, filters: Filters, models: TrainedModels,
                     labels: Collection[str] = LABELS) -> pd.DataFrame:
    """Every customer with an order under ``filters``: features, cluster, RFM scores and churn probability.

    Features are measured over the matching orders, as of the last matching order date.
    ``labels`` (of :data:`LABELS`): the labels to add, all by default; an analysis asks for
    those it shows (labelling 200,000 customers for churn takes a quarter of a second).
    """
    features = customer_features(conn, filters)
    if features.empty:
        return pd.DataFrame(columns=CUSTOMER_COLUMNS)
    checkpoint()
    if "cluster" in labels:
        if models.segmentation is not None:
            features["cluster"] = models.segmentation.predict(features)
            features["cluster_name"] = features["cluster"].map(models.segmentation.names_)
        else:
            features["cluster"], features["cluster_name"] = -1, None
    if "rfm" in labels:
        features = with_rfm_scores(features)
    checkpoint()
    if "churn" in labels:
        features["churn_probability"] = models.churn.churn_probability(features) if models.churn is not None \
            else np.nan
    # As the pages and exports show it (the models used the exact value): to the cent, as invoices round.
    features["average_order_value"] = money_per_row(features["total_spent"], features["order_count"])
    return features[[column for column in CUSTOMER_COLUMNS if column in features]]


def with_rfm_scores(features: pd.DataFrame) -> pd.DataFrame:
    """``features`` with the columns of :func:`rfm_scores` (row for row: no join on the ids needed)."""
    return pd.concat([features, rfm_scores(features).drop(columns="customer_id")], axis=1)


def clusters(conn: Connection, filters: Filters, models: TrainedModels) -> dict[str, Any]:
    """The segmentation model (k by silhouette, metrics, stability, importance) and the profiles of
    the matching customers per cluster, with a 2-D PCA projection of a sample of them."""
    model = models.segmentation
    if models.pending:
        return {"available": False, "pending": True, "reason": BEING_TRAINED}
    if model is None:
        return {"available": False, "reason": "; ".join(models.problems) or "no segmentation model"}
    customers = scored_customers(conn, filters, models, labels=("cluster",))
    return {
        "available": True,
        "model": model_summary(models, model),
        "profiles": cluster_profiles(customers, model.names_),
        "projection": projection(customers, model),
        "customers": len(customers),
    }


def model_summary(models: TrainedModels, model: CustomerSegmentation) -> dict[str, Any]:
    """How the segmentation ``model`` of ``models`` was chosen and how good it is."""
    return {
        "data_version": models.data_version,
        "trained_at": models.trained_at,
        "trained_on_customers": model.n_customers_,
        "minibatch": model.sampled_,
        "k": model.k_,
        "silhouette_by_k": pd.DataFrame({"k": list(model.silhouette_by_k_),
                                         "silhouette": list(model.silhouette_by_k_.values())}),
        "metrics": model.metrics_,
        "stability": model.stability_,
        "feature_importance": pd.DataFrame(
            [{"feature": f, "label": FEATURE_LABELS[f], "importance": v} for f, v in model.feature_importance_.items()]
        ).sort_values("importance", ascending=False, ignore_index=True),
    }


def cluster_profiles(customers: pd.DataFrame, names: dict[int, str]) -> pd.DataFrame:
    """Per cluster (every cluster of the model, 0 customers where none match): counts, shares, means."""
    grouped = customers.groupby("cluster")
    frame = grouped[list(SEGMENTATION_FEATURES)].mean().reindex(sorted(names))
    frame.insert(0, "customers", grouped.size().reindex(sorted(names)).fillna(0).astype(int))
    revenue = grouped["total_spent"].sum().reindex(sorted(names)).fillna(0.0)
    frame.insert(1, "customer_share", frame["customers"] / max(1, len(customers)))
    frame.insert(2, "revenue", revenue.round(2))
    frame.insert(3, "revenue_share", revenue / revenue.sum() if revenue.sum() else 0.0)
    frame = frame.rename_axis("cluster").reset_index()
    frame.insert(1, "name", frame["cluster"].map(names))
    return frame.sort_values("revenue", ascending=False, ignore_index=True)


def projection(customers: pd.DataFrame, model: CustomerSegmentation) -> pd.DataFrame:
    """PCA coordinates (fitted on the training customers) of up to :data:`PROJECTION_POINTS` customers."""
    sample = customers.sample(PROJECTION_POINTS, random_state=0) if len(customers) > PROJECTION_POINTS else customers
    if sample.empty:
        return pd.DataFrame(columns=["customer_id", "pc1", "pc2", "cluster_name"])
    points = model.project(sample)
    return pd.DataFrame({"customer_id": sample["customer_id"].to_numpy(), "pc1": points[:, 0],
                         "pc2": points[:, 1], "cluster_name": sample["cluster_name"].to_numpy()})


def rfm(conn: Connection, filters: Filters) -> pd.DataFrame:
    """Per named RFM segment (:data:`RFM_SEGMENTS`): customers, customer share, net revenue (currency),
    revenue share, mean recency (days to :func:`reference_date`), mean orders and spend, and its rule."""
    features = customer_features(conn, filters)
    scored = with_rfm_scores(features) if len(features) else \
        features.assign(rfm_segment=pd.Series(dtype=str))
    grouped = scored.groupby("rfm_segment")
    frame = pd.DataFrame({
        "customers": grouped.size(),
        "revenue": grouped["total_spent"].sum(),
        "average_recency_days": grouped["recency_days"].mean(),
        "average_orders": grouped["order_count"].mean(),
        "average_spent": grouped["total_spent"].mean(),
    }).reindex(list(RFM_SEGMENTS))
    frame["customers"] = frame["customers"].fillna(0).astype(int)
    frame["revenue"] = frame["revenue"].fillna(0.0).round(2)
    frame.insert(1, "customer_share", frame["customers"] / max(1, len(scored)))
    frame.insert(3, "revenue_share", frame["revenue"] / frame["revenue"].sum() if frame["revenue"].sum() else 0.0)
    frame = frame.rename_axis("segment").reset_index()
    frame["rule"] = frame["segment"].map(RFM_RULES)
    return frame


def churn(conn: Connection, filters: Filters, models: TrainedModels,
          churn_threshold_percent: int = 90) -> dict[str, Any]:
    """The churn model's evaluation, and the matching customers' churn probabilities in ten bands."""
    if models.pending:
        return {"available": False, "pending": True, "reason": BEING_TRAINED}
    if models.churn is None:
        return {"available": False, "reason": "; ".join(models.problems) or "no churn model"}
    customers = scored_customers(conn, filters, models, labels=("churn",))
    probability = customers["churn_probability"].astype(float)
    at_risk = customers[probability >= churn_threshold_percent / 100]
    bands = pd.cut(probability, np.linspace(0, 1, 11), include_lowest=True)
    distribution = customers.groupby(bands, observed=False).agg(
        customers=("customer_id", "size"), revenue=("total_spent", "sum"))
    return {
        "available": True,
        "evaluation": models.churn_evaluation,
        "threshold": churn_threshold_percent / 100,
        "customers": len(customers),
        "at_risk_customers": len(at_risk),
        "at_risk_share": len(at_risk) / len(customers) if len(customers) else None,
        "at_risk_revenue": round(float(at_risk["total_spent"].sum()), 2),
        "distribution": pd.DataFrame({
            "band": [f"{max(i.left, 0):.0%}–{i.right:.0%}" for i in distribution.index],
            "customers": distribution["customers"].astype(int).to_numpy(),
            "revenue": distribution["revenue"].round(2).to_numpy(),
        }),
    }


def forecast(conn: Connection, filters: Filters, months: int = HORIZON_MONTHS) -> dict[str, Any]:
    """Monthly revenue for the next ``months`` months with 80%/95% intervals and the backtest MAPE.

    Not available (with the reason, and the backtest when there is one) without enough whole
    months, or when the backtest MAPE is above :data:`MAX_BACKTEST_MAPE`: not enough signal.
    """
    series, dropped = complete_months(trend(conn, filters)["monthly"])
    try:
        result = forecast_revenue(series, months)
    except ValueError as exc:
        return {"available": False, "reason": str(exc), "partial_month_left_out": dropped}
    mape = result["backtest"]["mape"]
    if mape is None or mape > MAX_BACKTEST_MAPE:
        missed = "the held-out months had no revenue" if mape is None else \
            f"refitted without the last {months} months, its forecast of them was off by {mape:.0%} on average"
        return {"available": False, "backtest": result["backtest"], "partial_month_left_out": dropped,
                "reason": f"not enough signal in the monthly revenue ({missed}; a forecast is shown from "
                          f"{MAX_BACKTEST_MAPE:.0%} or better)"}
    return {"available": True, **result, "quality": mape_reading(mape), "partial_month_left_out": dropped}

