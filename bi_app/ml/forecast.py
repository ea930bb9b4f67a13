"""Monthly revenue forecast by exponential smoothing (statsmodels' ETS), with a held-out backtest."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

HORIZON_MONTHS = 6
#: Seasonality is modelled only with two full years to learn it from.
SEASONAL_MONTHS = 24
MINIMUM_MONTHS = 6


def complete_months(monthly: pd.DataFrame) -> tuple[pd.Series, str | None]:
    """Monthly revenue indexed by month start, without the months :func:`bi_app.analytics.trend`
    marks ``partial`` (the data or the filters cover only part of them).

    Returns the series and the months left out ("2024-03", or None when every month is whole).
    """
    whole = ~monthly["partial"].astype(bool)
    series = pd.Series(monthly.loc[whole, "revenue"].to_numpy(dtype=float),
                       index=pd.PeriodIndex(monthly.loc[whole, "month"], freq="M").to_timestamp())
    dropped = ", ".join(monthly.loc[~whole, "month"])
    return series.asfreq("MS"), dropped or None


def method(months: int) -> str:
    """The ETS form fitted to a series of ``months`` months."""
    return "ETS(A,Ad,A): damped trend, yearly seasonality" if months >= SEASONAL_MONTHS else "ETS(A,Ad,N): damped trend"


def fit_ets(series: pd.Series) -> Any:
    """Additive-error ETS with a damped trend, and additive yearly seasonality given two years."""
    seasonal = len(series) >= SEASONAL_MONTHS
    model = ETSModel(series, error="add", trend="add", damped_trend=True,
                     seasonal="add" if seasonal else None, seasonal_periods=12 if seasonal else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on short series
        return model.fit(disp=False)


def forecast_revenue(series: pd.Series, horizon: int = HORIZON_MONTHS) -> dict[str, Any]:
    """The next ``horizon`` months with 80% and 95% intervals, and the backtest MAPE.

    The backtest refits on all but the last ``horizon`` months and compares its
    forecast with those held-out months only.
    """
    if len(series) < MINIMUM_MONTHS + horizon:
        raise ValueError(f"{len(series)} complete months; a forecast with a backtest needs "
                         f"at least {MINIMUM_MONTHS + horizon}")
    fitted = fit_ets(series)
    prediction = fitted.get_prediction(start=len(series), end=len(series) + horizon - 1)
    p80, p95 = prediction.summary_frame(alpha=0.2), prediction.summary_frame(alpha=0.05)
    months = pd.date_range(series.index[-1] + pd.offsets.MonthBegin(1), periods=horizon, freq="MS")
    # Revenue is never below zero: the model's normal intervals are, on a falling or noisy series.
    forecast = pd.DataFrame({
        "month": months.strftime("%Y-%m"),
        "revenue": np.maximum(0, p80["mean"].to_numpy()),
        "lower_80": np.maximum(0, p80["pi_lower"].to_numpy()),
        "upper_80": np.maximum(0, p80["pi_upper"].to_numpy()),
        "lower_95": np.maximum(0, p95["pi_lower"].to_numpy()),
        "upper_95": np.maximum(0, p95["pi_upper"].to_numpy()),
    })
    backtest = backtest_revenue(series, horizon)
    return {
        "method": method(len(series)),
        "history": pd.DataFrame({"month": series.index.strftime("%Y-%m"), "revenue": series.to_numpy()}),
        "forecast": forecast,
        "backtest": backtest,
    }


def backtest_revenue(series: pd.Series, horizon: int = HORIZON_MONTHS) -> dict[str, Any]:
    """Mean absolute percentage error of a forecast made without the last ``horizon`` months."""
    train, held_out = series.iloc[:-horizon], series.iloc[-horizon:]
    predicted = fit_ets(train).forecast(horizon).to_numpy()
    actual = held_out.to_numpy()
    usable = actual != 0
    mape = float(np.mean(np.abs((actual[usable] - predicted[usable]) / actual[usable]))) if usable.any() else None
    return {
        "mape": mape,
        "method": method(len(train)),
        "months": pd.DataFrame({"month": held_out.index.strftime("%Y-%m"), "actual": actual,
                                "predicted": predicted}),
    }
