"""Customer intelligence checked against independent computations on the same rows.

Each model runs on demo orders loaded into real SQLite and PostgreSQL; the
reference answers come from scikit-learn, statsmodels and pandas applied
directly to the generated orders, not from the code under test.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, roc_auc_score, silhouette_score
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import Engine
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from bi_app.ml import analyses, strategy
from bi_app.ml.churn import labelled_customers
from bi_app.ml.features import SEGMENTATION_FEATURES, customer_features
from bi_app.ml.forecast import backtest_revenue, forecast_revenue
from bi_app.ml.models import train_models
from bi_app.ml.rfm import rfm_scores
from bi_app.ml.segmentation import CustomerSegmentation
from data_layer.bootstrap import load_demo_data
from data_layer.demo_data import generate_orders_frame
from data_layer.filters import Filters
from tests.support import assert_same, net_revenue

F = list(SEGMENTATION_FEATURES)


def reference_features(orders: pd.DataFrame) -> pd.DataFrame:
    """The per-customer features computed with pandas from the generated orders."""
    orders = orders.assign(order_date=pd.to_datetime(orders["order_date"]), net=net_revenue(orders).astype(float))
    latest = orders["order_date"].max()
    grouped = orders.groupby("customer_id")
    frame = pd.DataFrame({
        "total_spent": grouped["net"].sum(),
        "order_count": grouped.size(),
        "average_satisfaction": grouped["satisfaction_rating"].mean(),
        "total_items": grouped["quantity"].sum().astype(float),
        "total_discounts": grouped["discount_amount"].sum().astype(float),
        "recency_days": (latest - grouped["order_date"].max()).dt.days,
        "tenure_days": (latest - grouped["order_date"].min()).dt.days,
        "single_category": grouped["category"].nunique() == 1,
    })
    frame["average_order_value"] = frame["total_spent"] / frame["order_count"]
    return frame.rename_axis("customer_id").reset_index()


@pytest.fixture
def demo(engine: Engine) -> tuple[Engine, pd.DataFrame]:
    load_demo_data(engine, 3000, 11, replace=True)
    return engine, generate_orders_frame(3000, seed=11)


def test_customer_features_equal_pandas(demo) -> None:  # noqa: ANN001
    engine, orders = demo
    with engine.connect() as conn:
        got = customer_features(conn, Filters()).set_index("customer_id")
    expected = reference_features(orders).set_index("customer_id")
    assert sorted(got.index) == sorted(expected.index)
    for column in [*F, "tenure_days", "single_category"]:
        pd.testing.assert_series_equal(got[column].astype(float), expected.loc[got.index, column].astype(float),
                                       check_names=False, rtol=1e-6, obj=column)


def scaled(features: pd.DataFrame) -> np.ndarray:
    values = features[F].astype(float)
    return StandardScaler().fit_transform(values.fillna(values.median()))


def test_segmentation_picks_the_best_silhouette_and_reports_sklearn_metrics(demo) -> None:  # noqa: ANN001
    engine, _orders = demo
    with engine.connect() as conn:
        features = customer_features(conn, Filters())
    model = CustomerSegmentation(random_state=7).fit(features)

    z = scaled(features)
    fits = {k: KMeans(n_clusters=k, random_state=7, n_init=10).fit(z) for k in range(2, 8)}
    silhouettes = {k: silhouette_score(z, fit.labels_) for k, fit in fits.items()}
    assert model.k_ == max(silhouettes, key=silhouettes.get)
    assert model.silhouette_by_k_ == pytest.approx(silhouettes, rel=1e-9)
    chosen = fits[model.k_]
    assert (model.labels_ == chosen.labels_).all()
    assert model.metrics_ == pytest.approx({
        "silhouette": silhouette_score(z, chosen.labels_),
        "inertia": chosen.inertia_,
        "calinski_harabasz": calinski_harabasz_score(z, chosen.labels_),
        "davies_bouldin": davies_bouldin_score(z, chosen.labels_),
    }, rel=1e-9)
    assert (model.predict(features) == model.labels_).all()

    # Importance: each feature's between-cluster share of variance, normalised.
    eta = []
    for j in range(len(F)):
        column = z[:, j]
        between = sum((column[chosen.labels_ == c].mean() - column.mean()) ** 2 * (chosen.labels_ == c).sum()
                      for c in range(model.k_))
        eta.append(between / ((column - column.mean()) ** 2).sum())
    assert list(model.feature_importance_.values()) == pytest.approx(list(np.array(eta) / sum(eta)), rel=1e-9)

    stability = model.stability_
    assert stability["runs"] == 5 and -1 <= stability["silhouette_mean"] <= 1
    assert 0 <= stability["adjusted_rand_sd"] and stability["adjusted_rand_mean"] <= 1

    richest = features.groupby(model.labels_)["total_spent"].mean().idxmax()
    assert model.names_[richest].startswith("High-value")
    assert len(set(model.names_.values())) == model.k_


def test_large_data_path_uses_minibatch_and_a_sampled_silhouette(demo) -> None:  # noqa: ANN001
    engine, _orders = demo
    with engine.connect() as conn:
        features = customer_features(conn, Filters())
    model = CustomerSegmentation(random_state=3, minibatch_above=500, silhouette_sample=600,
                                 k_values=(2, 3)).fit(features)
    assert model.sampled_
    z = scaled(features)
    expected = silhouette_score(z, model.labels_, sample_size=600, random_state=3)
    assert model.metrics_["silhouette"] == pytest.approx(expected, rel=1e-9)


def fifths(values: pd.Series, ascending: bool = True) -> pd.Series:
    """The reference score: the average rank's percentile (rank - 1/2) / n, in fifths."""
    ranks = values.rank(method="average", ascending=ascending)
    return np.minimum(5, 1 + np.floor(5 * (ranks - 0.5) / len(values))).astype(int)


def rfm_rule(r: int, f: int, orders: int) -> str:
    """The segment rules as the page states them, first that holds."""
    rules = [("Champions", r >= 4 and f >= 4 and orders >= 2), ("Loyal", r == 3 and f >= 4 and orders >= 2),
             ("Potential", r >= 4 and orders >= 2), ("New", r >= 4 and orders == 1), ("Need attention", r == 3),
             ("At risk", r <= 2 and f >= 3 and orders >= 2), ("Hibernating", True)]
    return next(name for name, holds in rules if holds)


def test_rfm_scores_equal_a_pandas_percentile_reference(demo) -> None:  # noqa: ANN001
    engine, _orders = demo
    with engine.connect() as conn:
        features = customer_features(conn, Filters())
    got = rfm_scores(features)
    assert (got["r_score"] == fifths(features["recency_days"], ascending=False)).all()
    assert (got["f_score"] == fifths(features["order_count"])).all()
    assert (got["m_score"] == fifths(features["total_spent"])).all()
    expected = [rfm_rule(r, f, n) for r, f, n in zip(got["r_score"], got["f_score"], features["order_count"])]
    assert got["rfm_segment"].tolist() == expected

    with engine.connect() as conn:
        summary = analyses.rfm(conn, Filters()).set_index("segment")
    counts = pd.Series(expected).value_counts()
    assert summary["customers"].sum() == len(features)
    for segment, count in counts.items():
        assert summary.loc[segment, "customers"] == count


def test_rfm_ties_one_order_customers_and_recency_under_a_filter(engine: Engine, tmp_path: Path) -> None:
    """Ten identical customers share one segment; a one-order customer is never a Champion and a
    recent one is New; under a region filter recency counts to the data's last date."""
    rows = [f"T{i},2024-06-01,Pen,1,10,TWIN{i},North" for i in range(10)]  # ten identical customers
    rows += [f"T{i}b,2024-06-20,Pen,1,10,TWIN{i},North" for i in range(10)]
    rows += [f"S{i},2024-06-{28 + i % 3},Ink,1,{500 + i},SOLO{i},North" for i in range(6)]  # big, recent, one order
    rows += [f"O{i},2024-0{1 + i % 5}-10,Pad,1,20,OLD{i},North" for i in range(8)]
    rows += ["L1,2024-09-30,Pad,1,5,LAST,South"]  # the data's last order, in another region
    path = tmp_path / "rfm.csv"
    path.write_text("Order,Date,Product,Qty,Price,Customer,Region\n" + "\n".join(rows) + "\n")
    outcome = _import(engine, path)
    assert outcome.written == len(rows)
    north = Filters(regions=("North",))
    with engine.connect() as conn:
        features = customer_features(conn, north)
        summary = analyses.rfm(conn, north).set_index("segment")
    scored = features.merge(rfm_scores(features), on="customer_id").set_index("customer_id")
    twins = scored.loc[[f"TWIN{i}" for i in range(10)]]
    assert twins[["r_score", "f_score", "m_score", "rfm_segment"]].nunique().eq(1).all()
    solos = scored.loc[[f"SOLO{i}" for i in range(6)]]
    assert (solos["rfm_segment"] == "New").all() and (solos["m_score"] >= 4).all()
    assert "Champions" not in set(scored.loc[scored["order_count"] == 1, "rfm_segment"])
    assert summary.loc["New", "customers"] == 6
    # The North's last order is 2024-06-30, the data's 2024-09-30: recency counts to the latter.
    assert scored.loc["SOLO2", "recency_days"] == (pd.Timestamp("2024-09-30") - pd.Timestamp("2024-06-30")).days
    expected = [rfm_rule(r, f, n) for r, f, n in zip(fifths(scored["recency_days"], ascending=False),
                                                      fifths(scored["order_count"]), scored["order_count"])]
    assert scored["rfm_segment"].tolist() == expected


def _import(engine: Engine, path: Path):  # noqa: ANN202 - an ImportOutcome
    from bi_app.importing import import_file

    return import_file(engine, path, {}, mode="append", skip_invalid=False, dry_run=False,
                       report_dir=path.parent, echo=lambda _message: None)


def test_churn_labels_and_model_beat_the_recency_baseline(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    load_demo_data(engine, 8000, 5, replace=True)
    orders = generate_orders_frame(8000, seed=5)
    models = train_models(engine)
    evaluation = models.churn_evaluation
    assert evaluation is not None, models.problems

    # Labels, independently: ordered by the cutoff, and no order in the horizon after it.
    dates = pd.to_datetime(orders["order_date"])
    cutoff = pd.Timestamp(evaluation["test_cutoff"])
    before = set(orders.loc[dates <= cutoff, "customer_id"])
    came_back = set(orders.loc[(dates > cutoff) & (dates <= cutoff + timedelta(days=180)), "customer_id"])
    with engine.connect() as conn:
        test = labelled_customers(conn, Filters(), cutoff.date(), 180)
    assert set(test["customer_id"]) == before
    assert dict(zip(test["customer_id"], test["churned"])) == {c: c not in came_back for c in before}
    assert evaluation["test_customers"] == len(before)
    assert cutoff.date() == dates.max().date() - timedelta(days=180)
    assert pd.Timestamp(evaluation["train_cutoff"]) == cutoff - timedelta(days=180)

    # The baseline ranks by recency alone; the model must do better on the held-out window.
    assert evaluation["baseline_roc_auc"] == pytest.approx(roc_auc_score(test["churned"], test["recency_days"]))
    print(f"churn ROC AUC {evaluation['roc_auc']:.3f} vs recency baseline {evaluation['baseline_roc_auc']:.3f}")
    assert evaluation["roc_auc"] > evaluation["baseline_roc_auc"], (
        f"model AUC {evaluation['roc_auc']:.3f} does not beat recency-only {evaluation['baseline_roc_auc']:.3f}")
    assert evaluation["used"] == ("model" if evaluation["model_roc_auc"] >= evaluation["baseline_roc_auc"] + 0.02
                                  else "baseline")
    assert 0 <= evaluation["top_decile_precision"] <= 1 and 0 < evaluation["top_decile_recall"] <= 1
    assert 0 <= evaluation["brier_score"] <= 0.25

    # A model that does not beat the baseline by the margin is not used: the baseline's probabilities
    # are a logistic regression on the days since the last order, fitted at the latest cutoff.
    import bi_app.ml.churn as churn

    monkeypatch.setattr(churn, "BASELINE_MARGIN", 1.0)  # no model beats ranking by recency by a whole AUC
    fallback = train_models(engine).churn_evaluation
    assert fallback["used"] == "baseline" and fallback["model_roc_auc"] == pytest.approx(evaluation["model_roc_auc"])
    reference = make_pipeline(StandardScaler(), LogisticRegression()).fit(test[["recency_days"]].to_numpy(dtype=float),
                                                                         test["churned"].astype(int))
    with engine.connect() as conn:
        train = labelled_customers(conn, Filters(), pd.Timestamp(fallback["train_cutoff"]).date(), 180)
    judged = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        train[["recency_days"]].to_numpy(dtype=float), train["churned"].astype(int))
    assert fallback["roc_auc"] == pytest.approx(roc_auc_score(
        test["churned"], judged.predict_proba(test[["recency_days"]].to_numpy(dtype=float))[:, 1]))
    with engine.connect() as conn:
        scored = analyses.scored_customers(conn, Filters(), train_models(engine))
        features = customer_features(conn, Filters())
    assert scored["churn_probability"].to_numpy() == pytest.approx(
        reference.predict_proba(features[["recency_days"]].to_numpy(dtype=float))[:, 1])


def monthly_series(values: list[float]) -> pd.Series:
    return pd.Series(values, index=pd.date_range("2022-01-01", periods=len(values), freq="MS"))


def test_backtest_uses_held_out_months_only() -> None:
    rng = np.random.default_rng(4)
    months = np.arange(30)
    values = 1000 + 20 * months + 150 * np.sin(months * 2 * np.pi / 12) + rng.normal(0, 30, 30)
    series = monthly_series(list(values))
    result = backtest_revenue(series, 6)

    fitted = ETSModel(series.iloc[:-6], error="add", trend="add", damped_trend=True, seasonal="add",
                      seasonal_periods=12).fit(disp=False)
    predicted = fitted.forecast(6).to_numpy()
    actual = series.iloc[-6:].to_numpy()
    assert result["mape"] == pytest.approx(np.mean(np.abs(actual - predicted) / actual), rel=1e-6)

    # Changing the held-out months changes the error but not what was predicted for them.
    changed = series.copy()
    changed.iloc[-6:] *= 1.5
    again = backtest_revenue(changed, 6)
    assert again["months"]["predicted"].to_numpy() == pytest.approx(result["months"]["predicted"].to_numpy())
    assert again["mape"] != pytest.approx(result["mape"])

    forecast = forecast_revenue(series, 6)["forecast"]
    assert len(forecast) == 6 and forecast["month"].iloc[0] == "2024-07"
    assert (forecast["lower_95"] <= forecast["lower_80"]).all() and (forecast["lower_80"] <= forecast["revenue"]).all()
    assert (forecast["revenue"] <= forecast["upper_80"]).all() and (forecast["upper_80"] <= forecast["upper_95"]).all()


def test_the_backtest_judges_the_form_that_is_drawn() -> None:
    """26 months: the drawn model may not be seasonal, since its backtest (20 months) cannot be."""
    rng = np.random.default_rng(5)
    series = monthly_series(list(1000 + 150 * np.sin(np.arange(26) * 2 * np.pi / 12) + rng.normal(0, 30, 26)))
    result = forecast_revenue(series, 6)
    assert result["method"] == result["backtest"]["method"] == "ETS(A,Ad,N): damped trend"
    fitted = ETSModel(series, error="add", trend="add", damped_trend=True).fit(disp=False)
    assert result["forecast"]["revenue"].to_numpy() == pytest.approx(np.maximum(0, fitted.forecast(6).to_numpy()))


def test_a_forecast_without_signal_is_not_drawn(engine: Engine, tmp_path: Path) -> None:
    """Monthly revenue that jumps at random: the backtest is far off, so the page says why, not a chart."""
    rng = np.random.default_rng(9)
    amounts = rng.choice([5.0, 50.0, 900.0, 4000.0], size=24)
    rows = [f"{i},2022-{1 + i % 12:02d}-15,Lamp,1,{amount:.2f},K{i % 7},North" if i < 12 else
            f"{i},2023-{1 + i % 12:02d}-15,Lamp,1,{amount:.2f},K{i % 7},North" for i, amount in enumerate(amounts)]
    rows.append("99,2023-12-31,Lamp,1,10.00,K1,North")
    path = tmp_path / "noisy.csv"
    path.write_text("Order,Date,Product,Qty,Price,Customer,Region\n" + "\n".join(rows) + "\n")
    assert _import(engine, path).written == len(rows)
    with engine.connect() as conn:
        result = analyses.forecast(conn, Filters())
    series = pd.Series(amounts, index=pd.date_range("2022-01-01", periods=24, freq="MS"))
    series.iloc[-1] += 10.0
    fitted = ETSModel(series.iloc[:-6], error="add", trend="add", damped_trend=True).fit(disp=False)
    predicted = np.maximum(0, fitted.forecast(6).to_numpy())
    mape = np.mean(np.abs(series.iloc[-6:].to_numpy() - predicted) / series.iloc[-6:].to_numpy())
    assert mape > 0.5
    assert result["available"] is False and result["backtest"]["mape"] == pytest.approx(mape, rel=1e-6)
    assert result["reason"].startswith("not enough signal in the monthly revenue")


def test_forecast_history_is_the_monthly_revenue(demo) -> None:  # noqa: ANN001
    engine, orders = demo
    with engine.connect() as conn:
        result = analyses.forecast(conn, Filters(regions=("North",)))
    north = orders[orders["region"] == "North"]
    expected = net_revenue(north).groupby(pd.to_datetime(north["order_date"]).dt.strftime("%Y-%m")).sum()
    expected = expected.astype(float)
    last = pd.Timestamp(orders["order_date"].max())
    if last < last + pd.offsets.MonthEnd(0):  # the data stops inside its last month: left out, as partial
        expected = expected.drop(last.strftime("%Y-%m"))
        assert result["partial_month_left_out"] == last.strftime("%Y-%m")
    assert result["available"]
    assert result["history"]["revenue"].tolist() == pytest.approx(expected.tolist(), abs=0.01)


def test_the_pricing_projection_never_promises_more_than_discounted_orders_brought_lately(demo) -> None:  # noqa: ANN001
    """Cutting every discount gains at most what the discounted lines brought in the last 180 days."""
    engine, orders = demo
    models = train_models(engine)
    dates = pd.to_datetime(orders["order_date"])
    counted = (orders["line_type"] == "sale") & (orders["total_amount"].astype(float) != 0)
    discounted = orders[counted & (orders["discount_rate"].astype(float) > 0)]
    lately = discounted[dates[discounted.index] > dates.max() - timedelta(days=180)]
    spent_lately = float(lately["total_amount"].astype(float).sum())
    for cut, loss in ((2, 3), (50, 0)):
        with engine.connect() as conn:
            pricing = strategy.recommendations(conn, Filters(), models, pricing_discount_cut_points=cut,
                                               pricing_volume_loss_percent=loss)["pricing"]
        numbers, projection = pricing["numbers"], pricing["projection"]
        assert numbers["recent_revenue"] == pytest.approx(spent_lately, abs=0.01)
        kept = 1 - loss / 100
        gain = (float(discounted["subtotal"].astype(float).sum()) * cut / 100 * kept
                - float(discounted["total_amount"].astype(float).sum()) * (1 - kept))
        assert projection["revenue"] == pytest.approx(min(gain, spent_lately), abs=0.01)
        assert projection["capped"] == (gain > spent_lately)
    assert projection["capped"]  # half of every discount over the whole history: more than 180 days brought


def test_churn_prevention_never_promises_more_than_those_customers_spent_lately(demo) -> None:  # noqa: ANN001
    engine, orders = demo
    models = train_models(engine)
    assert models.churn is not None, models.problems
    with engine.connect() as conn:
        customers = analyses.scored_customers(conn, Filters(), models)
        numbers = strategy.recommendations(conn, Filters(), models, churn_threshold_percent=30)[
            "churn_prevention"]["numbers"]
    at_risk = customers[customers["churn_probability"] >= 0.30]
    rate = at_risk["total_spent"] / np.maximum(at_risk["tenure_days"] + 1, 180) * 180
    expected = float((rate * at_risk["churn_probability"]).sum())
    dates = pd.to_datetime(orders["order_date"])
    last = dates.max()
    lately = orders[(dates > last - timedelta(days=180)) & orders["customer_id"].isin(at_risk["customer_id"])]
    spent_lately = float(net_revenue(lately).sum())
    assert len(at_risk) > 0 and numbers["customers"] == len(at_risk)
    assert numbers["uncapped_revenue_at_risk"] == pytest.approx(expected, abs=0.01)
    assert numbers["recent_revenue"] == pytest.approx(spent_lately, abs=0.01)
    assert numbers["expected_revenue_at_risk"] == pytest.approx(min(expected, spent_lately), abs=0.01)
    assert numbers["capped"] == (expected > spent_lately)

    # Every projection that targets customers is capped the same way: doubling the VIPs' lifetime spend
    # promises more than they spent in the last 180 days.
    with engine.connect() as conn:
        vip = strategy.recommendations(conn, Filters(), models, vip_top_percent=20, vip_uplift_percent=100)["vip"]
    vips = customers.sort_values(["total_spent", "customer_id"], ascending=[False, True]).head(
        math.ceil(len(customers) * 0.20))
    vip_lately = float(net_revenue(orders[(dates > last - timedelta(days=180))
                                          & orders["customer_id"].isin(vips["customer_id"])]).sum())
    assert vip["numbers"]["recent_revenue"] == pytest.approx(vip_lately, abs=0.01)
    assert vip["projection"]["capped"] and vip["projection"]["revenue"] == pytest.approx(vip_lately, abs=0.01)
    assert vip["projection"]["revenue"] < vips["total_spent"].sum()


def reference_recommendations(orders: pd.DataFrame) -> dict:
    """What the numbers behind the recommendations are, computed with pandas alone."""
    features = reference_features(orders)
    spent = features.sort_values(["total_spent", "customer_id"], ascending=[False, True])["total_spent"]
    vip = spent.head(math.ceil(len(features) * 0.10))
    single = features[features["single_category"]]
    per_region = orders.assign(net=net_revenue(orders)).groupby("region").agg(revenue=("net", "sum"),
                                                                              customers=("customer_id", "nunique"))
    per_region = per_region[per_region["customers"] >= 10]  # a region of fewer customers is not compared
    rpc = (per_region["revenue"].astype(float) / per_region["customers"]).sort_values(ascending=False)
    discounted = orders[orders["discount_rate"].astype(float) > 0]
    return {
        "vip_customers": len(vip),
        "vip_revenue": float(vip.sum()),
        "vip_share": float(vip.sum() / features["total_spent"].sum()),
        "single_category": len(single),
        "leader": rpc.index[0],
        "laggard": rpc.index[-1],
        "gap": float(rpc.iloc[0] - rpc.iloc[-1]),
        "discounted_share": len(discounted) / len(orders),
        "discounted_subtotal": float(discounted["subtotal"].astype(float).sum()),
    }


def test_recommendations_follow_the_data_of_a_differently_seeded_dataset(engine: Engine) -> None:
    answers = {}
    for seed, rows in ((21, 2500), (99, 3500)):
        load_demo_data(engine, rows, seed, replace=True)
        models = train_models(engine)
        with engine.connect() as conn:
            result = strategy.recommendations(conn, Filters(), models)
        expected = reference_recommendations(generate_orders_frame(rows, seed=seed))
        vip, cross, region, pricing = (result[n]["numbers"] for n in ("vip", "cross_sell", "regional", "pricing"))
        assert vip["customers"] == expected["vip_customers"]
        assert vip["revenue"] == pytest.approx(expected["vip_revenue"], abs=0.01)
        assert vip["revenue_share"] == pytest.approx(expected["vip_share"])
        assert cross["customers"] == expected["single_category"]
        assert (region["leader"], region["laggard"]) == (expected["leader"], expected["laggard"])
        assert region["gap_per_customer"] == pytest.approx(expected["gap"], abs=0.02)
        assert pricing["discounted_share"] == pytest.approx(expected["discounted_share"])
        assert pricing["discounted_subtotal"] == pytest.approx(expected["discounted_subtotal"], abs=0.01)
        assert f"{vip['customers']:,}" in result["vip"]["finding"]
        answers[seed] = result
    first, second = answers[21], answers[99]
    for name in strategy.TITLES:
        assert first[name]["finding"] != second[name]["finding"], name
        assert first[name]["projection"] != second[name]["projection"], name


def test_projection_follows_the_assumptions() -> None:
    numbers = {"revenue": 1000.0, "customers": 10}
    low = strategy.project("vip", numbers, {"vip_uplift_percent": 10, "vip_cost_per_customer": 2})
    high = strategy.project("vip", numbers, {"vip_uplift_percent": 30, "vip_cost_per_customer": 2})
    assert (low["revenue"], low["cost"], low["net"]) == (100.0, 20.0, 80.0)
    assert high["net"] == 280.0


def test_target_lists_match_the_numbers(demo) -> None:  # noqa: ANN001
    engine, orders = demo
    models = train_models(engine)
    with engine.connect() as conn:
        result = strategy.recommendations(conn, Filters(), models, vip_top_percent=5)
        for name in strategy.TITLES:
            targets = strategy.target_customers(conn, Filters(), models, name, vip_top_percent=5)
            numbers = result[name]["numbers"]
            if name == "regional":
                assert len(targets) == numbers["laggard_customers"]
                assert set(targets["customer_id"]) == set(orders.loc[orders["region"] == numbers["laggard"],
                                                                     "customer_id"])
            elif name == "pricing":
                discounted = orders[orders["discount_rate"].astype(float) > 0]
                assert set(targets["customer_id"]) == set(discounted["customer_id"])
            else:
                assert len(targets) == numbers["customers"], name
    spenders = reference_features(orders).sort_values("total_spent", ascending=False)
    with engine.connect() as conn:
        vip = strategy.target_customers(conn, Filters(), models, "vip", vip_top_percent=5)
    assert set(vip["customer_id"]) == set(spenders["customer_id"].head(math.ceil(len(spenders) * 0.05)))


def test_one_page_view_builds_the_feature_table_once(demo) -> None:  # noqa: ANN001
    from sqlalchemy import event

    engine, _orders = demo
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    models = train_models(engine)
    north = Filters(regions=("North",))
    with engine.connect() as conn:
        statements.clear()
        first = analyses.clusters(conn, north, models)["profiles"]
        analyses.rfm(conn, north)
        analyses.churn(conn, north, models)
        grouped = [s for s in statements if "GROUP BY advanced_sales_data.customer_id" in s]
        assert len(grouped) == 1, grouped
        again = analyses.clusters(conn, north, models)["profiles"]
    pd.testing.assert_frame_equal(first, again)
    load_demo_data(engine, 500, 12, replace=True)  # a new data version: built again, from the new rows
    with engine.connect() as conn:
        assert len(customer_features(conn, north)) == generate_orders_frame(500, seed=12).query(
            "region == 'North'")["customer_id"].nunique()


def test_the_unfiltered_view_is_answered_when_the_models_are_trained(demo, db_url: str, app, point_app_at,  # noqa: ANN001
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Training also answers the customer-level analyses for no filter (the slowest view: every
    customer); a request for that view then reads the answer instead of computing it."""
    from sqlalchemy import event

    from bi_app import service
    from bi_app.jsonable import to_jsonable
    from bi_app.context import current_engine, current_models
    from data_layer.meta import data_version

    from dataclasses import replace as replace_config

    from bi_app.context import CONFIG_KEY

    point_app_at(db_url)  # and a new, empty result cache
    # No columnar snapshot: the answers and the direct computations below read the same database.
    monkeypatch.setitem(app.server.config, CONFIG_KEY, replace_config(app.server.config[CONFIG_KEY], columnar=False))
    customer_level = {name for name, analysis in service.ANALYSES.items() if not analysis.precompute}
    with app.server.test_request_context():
        with current_engine().connect() as conn:
            version = data_version(conn)
            models = current_models(conn, version, version)  # a load of ours, no change since: one version
        assert {key.split(":", 1)[0] for key in models.answers} == customer_level
        statements: list[str] = []
        event.listen(current_engine(), "before_cursor_execute", lambda *args: statements.append(args[2]))
        answered = {name: service.run(name, Filters()) for name in sorted(customer_level)}
        assert not [s for s in statements if "advanced_sales_data" in s or "bi_daily" in s], statements
        for name, answer in answered.items():
            analysis = service.ANALYSES[name]
            with current_engine().connect() as conn:
                extra = {"models": models} if analysis.needs_models else {}
                direct = analysis.function(conn, Filters(), **extra)
            assert_same(to_jsonable(answer), to_jsonable(direct), name)
        statements.clear()
        service.run("clusters", Filters(regions=("North",)))  # not answered ahead: computed
        assert [s for s in statements if "GROUP BY advanced_sales_data.customer_id" in s]


def test_a_models_file_saved_before_answers_were_kept_still_serves(demo, db_url: str, app, point_app_at,  # noqa: ANN001
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Model files written by an earlier release have no answers: every page computes as before."""
    from dataclasses import replace as replace_config

    import joblib

    from bi_app import service
    from bi_app.jsonable import to_jsonable
    from bi_app.context import CONFIG_KEY, MODELS_KEY, current_engine, current_models
    from data_layer.meta import data_version

    point_app_at(db_url)
    monkeypatch.setitem(app.server.config, CONFIG_KEY, replace_config(app.server.config[CONFIG_KEY], columnar=False))
    with app.server.test_request_context():
        with current_engine().connect() as conn:
            version = data_version(conn)
            current_models(conn, version, version)
        store = app.server.config[MODELS_KEY].made[db_url]
        older = joblib.load(store.path(version))
        del older.answers
        joblib.dump(older, store.path(version))
        store._loaded = None  # noqa: SLF001 - read the file again, as a new worker would
        clusters = service.run("clusters", Filters())
        kpis = service.run("kpis", Filters())
        with current_engine().connect() as conn:
            assert_same(to_jsonable(clusters), to_jsonable(analyses.clusters(conn, Filters(), current_models(conn, version, version))),
                        "clusters")
            assert to_jsonable(kpis) == to_jsonable(service.ANALYSES["kpis"].function(conn, Filters()))


def test_models_train_on_data_without_satisfaction_ratings(engine: Engine) -> None:
    """A shop that asks no ratings: the churn trees leave the empty feature out, the segmentation keeps it
    as a constant (it separates nothing), and both label every customer."""
    from sqlalchemy import text

    load_demo_data(engine, 1500, 3, replace=True)
    with engine.begin() as conn:
        conn.execute(text("UPDATE advanced_sales_data SET satisfaction_rating = NULL"))
    models = train_models(engine)
    assert "average_satisfaction" not in models.churn.features_
    assert models.segmentation.feature_importance_["average_satisfaction"] == 0.0
    with engine.connect() as conn:
        features = customer_features(conn, Filters())
    assert len(models.segmentation.predict(features)) == len(features)
    assert models.churn.churn_probability(features).shape == (len(features),)


def test_forecast_intervals_never_go_below_zero() -> None:
    """A falling, noisy series: statsmodels' intervals reach below zero; revenue's stop at zero."""
    rng = np.random.default_rng(5)
    months = pd.date_range("2022-01-01", periods=30, freq="MS")
    series = pd.Series(np.maximum(0, np.linspace(3000, 300, 30) + rng.normal(0, 400, 30)), index=months)
    forecast = forecast_revenue(series, 6)["forecast"]
    fitted = ETSModel(series, error="add", trend="add", damped_trend=True, seasonal="add",
                      seasonal_periods=12).fit(disp=False)
    reference = fitted.get_prediction(start=30, end=35).summary_frame(alpha=0.05)
    assert (reference["pi_lower"] < 0).any()  # the case at hand
    assert forecast["lower_95"].to_numpy() == pytest.approx(np.maximum(0, reference["pi_lower"].to_numpy()))
    assert (forecast[["revenue", "lower_80", "lower_95"]] >= 0).all().all()


def test_retraining_is_due_past_a_share_of_changed_lines_or_after_a_day_of_changes() -> None:
    from datetime import datetime, timezone

    from bi_app.ml.models import RETRAIN_AFTER_S, RETRAIN_SHARE, TrainedModels, retraining_due

    trained_at = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    models = TrainedModels("v1", None, None, None, trained_at.isoformat(), changes=5_000, lines=1_000)
    soon = trained_at + timedelta(hours=1)
    share = int(1_000 * RETRAIN_SHARE)
    assert retraining_due(models, 5_000, soon) is None
    assert retraining_due(models, 5_000 + share - 1, soon) is None
    assert f"{share:,} order lines changed" in retraining_due(models, 5_000 + share, soon)
    late = trained_at + timedelta(seconds=RETRAIN_AFTER_S)
    assert retraining_due(models, 5_001, late) is not None
    assert retraining_due(models, 5_000, late + timedelta(days=30)) is None  # nothing changed: nothing to learn
    assert "went down" in retraining_due(models, 10, soon)
    assert retraining_due(models, None, late) is None  # a table nobody can watch
    assert retraining_due(TrainedModels.being_trained("v1"), 10**9, late) is None


def test_a_page_does_not_wait_for_the_first_models_another_process_is_training(demo, db_url: str, app,  # noqa: ANN001
                                                                                point_app_at) -> None:
    """While ``bi-app train`` (started by ``bi-app serve``) holds the training lock, the customer-level
    analyses answer at once that the models are being trained; once it is done, they answer with them."""
    import fcntl
    import subprocess
    import sys

    from bi_app import service
    from bi_app.context import current_config, models_folder
    from bi_app.ml.models import ModelStore
    from bi_app.ml.models import BEING_TRAINED

    point_app_at(db_url)  # and a new, empty result cache
    with app.server.test_request_context():
        folder = models_folder(current_config())
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".train.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # as the training process does
            waiting = {name: service.run(name, Filters()) for name in ("clusters", "churn", "recommendations")}
        assert waiting["clusters"] == {"available": False, "pending": True, "reason": BEING_TRAINED}
        assert waiting["churn"] == {"available": False, "pending": True, "reason": BEING_TRAINED}
        assert waiting["recommendations"]["churn_prevention"]["finding"] == BEING_TRAINED
        # `bi-app serve` just started `bi-app train`, which has not reached the lock yet: no training here either.
        starting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "bi_app.cli", "train"])
        try:
            deadline = time.monotonic() + 60
            while b"bi_app.cli\x00train" not in Path(f"/proc/{starting.pid}/cmdline").read_bytes():
                assert time.monotonic() < deadline, "the stand-in training process did not start"
                time.sleep(0.01)  # until it has replaced the forked copy of this process (a busy machine is slow)
            ModelStore(folder).started_training(starting.pid)
            assert service.run("clusters", Filters())["pending"]
        finally:
            starting.kill()
            starting.wait()
        clusters = service.run("clusters", Filters())  # nobody trains: trained here, then answered
        assert clusters["available"] and clusters["customers"] == demo[1]["customer_id"].nunique()


def test_money_per_row_rounds_each_row_half_away_from_zero_as_decimal_does() -> None:
    """The per-row division in whole numbers equals Python's decimal arithmetic (ROUND_HALF_UP) on every
    row, including exact halves of a cent, negative amounts and undefined rows."""
    from decimal import ROUND_HALF_UP, Decimal

    from bi_app.analytics.stats import money_per_row

    rng = np.random.default_rng(3)
    cents = np.concatenate([rng.integers(-10**9, 10**9, 20_000), [5, -5, 15, 2407, 22407, -22407, 0, 1, 3]])
    counts = np.concatenate([rng.integers(1, 10**6, 20_000), [2, 2, 2, 2, 2, 2, 1, 0, 2]]).astype(float)
    counts[7] = np.nan
    amounts = pd.Series(cents / 100)
    got = money_per_row(amounts, pd.Series(counts))

    def reference(c: int, n: float) -> float:
        if n != n or n == 0:
            return float("nan")
        return float((Decimal(int(c)) / 100 / Decimal(int(n))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))

    expected = pd.Series([reference(c, n) for c, n in zip(cents, counts)])
    pd.testing.assert_series_equal(got, expected, check_exact=True)
    assert list(got.iloc[-9:-3]) == [0.03, -0.03, 0.08, 12.04, 112.04, -112.04]


def test_every_rfm_segment_follows_its_rule() -> None:
    """Each customer's segment follows the README's rules (the first that holds), written out here."""
    from bi_app.ml.rfm import rfm_scores

    def segment_of(r: int, f: int, orders: int) -> str:
        rules = [("Champions", r >= 4 and f >= 4 and orders >= 2), ("Loyal", r == 3 and f >= 4 and orders >= 2),
                 ("Potential", r >= 4 and orders >= 2), ("New", r >= 4 and orders == 1), ("Need attention", r == 3),
                 ("At risk", r <= 2 and f >= 3 and orders >= 2)]
        return next((name for name, holds in rules if holds), "Hibernating")

    rng = np.random.default_rng(8)
    features = pd.DataFrame({"customer_id": [f"C{i}" for i in range(3000)],
                             "recency_days": rng.integers(0, 400, 3000),
                             "order_count": rng.integers(1, 6, 3000),
                             "total_spent": rng.gamma(2, 100, 3000).round(2)})
    scores = rfm_scores(features)
    expected = [segment_of(r, f, n) for r, f, n in zip(scores["r_score"], scores["f_score"], features["order_count"])]
    assert list(scores["rfm_segment"]) == expected
    assert set(scores["rfm_segment"]) == {"New", "Champions", "Potential", "Loyal", "Need attention", "At risk",
                                          "Hibernating"}
    assert list(scores["rfm_score"]) == [f"{r}{f}{m}" for r, f, m in zip(scores["r_score"], scores["f_score"],
                                                                          scores["m_score"])]
