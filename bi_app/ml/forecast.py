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
#: A forecast is shown only when its backtest MAPE is at most this: above 50% Lewis (1982,
#: "Industrial and Business Forecasting Methods") calls a forecast inaccurate.
MAX_BACKTEST_MAPE = 0.50
#: Lewis's reading of a MAPE, best first: (upper bound, words).
MAPE_READING = ((0.10, "highly accurate"), (0.20, "good"), (0.50, "reasonable"), (float("inf"), "inaccurate"))


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


def method(seasonal: bool) -> str:
    """The name of the ETS form (with or without yearly seasonality)."""
    return "ETS(A,Ad,A): damped trend, yearly seasonality" if seasonal else "ETS(A,Ad,N): damped trend"


def mape_reading(mape: float) -> str:
    """Lewis's words for a MAPE (0.15 -> "good")."""
    return next(words for bound, words in MAPE_READING if mape <= bound)


def fit_ets(series: pd.Series, seasonal: bool) -> Any:
    """Additive-error ETS with a damped trend, and additive yearly seasonality if ``seasonal``."""
    model = ETSModel(series, error="add", trend="add", damped_trend=True,
                     seasonal="add" if seasonal else None, seasonal_periods=12 if seasonal else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on short series
        return model.fit(disp=False)


def forecast_revenue(series: pd.Series, horizon: int = HORIZON_MONTHS) -> dict[str, Any]:
    """The next ``horizon`` months with 80% and 95% intervals, and the backtest MAPE.

    The backtest refits the same form on all but the last ``horizon`` months and compares
    its forecast with those held-out months only. The form is seasonal when the backtest's
    own history holds two years (so the model judged is the model drawn).
    """
    if len(series) < MINIMUM_MONTHS + horizon:
        raise ValueError(f"{len(series)} complete months; a forecast with a backtest needs "
                         f"at least {MINIMUM_MONTHS + horizon}")
    seasonal = len(series) - horizon >= SEASONAL_MONTHS
    fitted = fit_ets(series, seasonal)
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
    backtest = backtest_revenue(series, horizon, seasonal)
    return {
        "method": method(seasonal),
        "history": pd.DataFrame({"month": series.index.strftime("%Y-%m"), "revenue": series.to_numpy()}),
        "forecast": forecast,
        "backtest": backtest,
    }


def backtest_revenue(series: pd.Series, horizon: int = HORIZON_MONTHS, seasonal: bool | None = None
                     ) -> dict[str, Any]:
    """Mean absolute percentage error of a forecast made without the last ``horizon`` months, by the
    form :func:`forecast_revenue` draws (``seasonal``; default: as it decides)."""
    train, held_out = series.iloc[:-horizon], series.iloc[-horizon:]
    seasonal = len(train) >= SEASONAL_MONTHS if seasonal is None else seasonal
    predicted = np.maximum(0, fit_ets(train, seasonal).forecast(horizon).to_numpy())
    actual = held_out.to_numpy()
    usable = actual != 0
    mape = float(np.mean(np.abs((actual[usable] - predicted[usable]) / actual[usable]))) if usable.any() else None
    return {
        "mape": mape,
        "method": method(seasonal),
        "months": pd.DataFrame({"month": held_out.index.strftime("%Y-%m"), "actual": actual,
                                "predicted": predicted}),
    }
