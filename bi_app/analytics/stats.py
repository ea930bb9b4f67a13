"""Statistics from sums, shared by the analytics functions."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when it is undefined."""
    if numerator is None or not denominator:
        return None
    return float(numerator) / float(denominator)


def money_per(amount: float | None, count: float | None) -> float | None:
    """``amount`` (money, whole cents) per ``count``, rounded to the cent half away from zero as
    invoices round (224.07 over 2 orders is 112.04, where binary floats give 112.03); None without a count."""
    if amount is None or not count or amount != amount:
        return None
    exact = Decimal(str(round(float(amount), 2))) / Decimal(str(count))
    return float(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def money_per_row(amounts: pd.Series, counts: pd.Series) -> pd.Series:
    """:func:`money_per` for each row (NaN, shown as "—", where the count is 0), in whole numbers:
    ``c`` cents over ``n`` rounds half away from zero to ``(2|c| + n) // 2n`` cents, with ``c``'s sign."""
    amount = pd.to_numeric(amounts, errors="coerce").to_numpy(dtype=float)
    count = pd.to_numeric(counts, errors="coerce").to_numpy(dtype=float)
    defined = ~np.isnan(amount) & ~np.isnan(count) & (count != 0)
    cents = np.round(np.where(defined, amount, 0.0) * 100).astype(np.int64)
    n = np.where(defined, count, 1).astype(np.int64)
    rounded = np.sign(cents) * np.sign(n) * ((2 * np.abs(cents) + np.abs(n)) // (2 * np.abs(n)))
    return pd.Series(np.where(defined, rounded / 100, np.nan), index=amounts.index, dtype=float)


def change(current: float | None, previous: float | None) -> float | None:
    """Relative change from ``previous`` to ``current`` (0.1 = +10%), None without a base."""
    if current is None or previous in (None, 0):
        return None
    return (float(current) - float(previous)) / abs(float(previous))


def pearson(n: float, sx: float, sy: float, sxx: float, syy: float, sxy: float) -> float | None:
    """Pearson's r from the sums over n complete pairs; None when a variance is zero."""
    n, sx, sy, sxx, syy, sxy = (float(v or 0) for v in (n, sx, sy, sxx, syy, sxy))
    if n < 2:
        return None
    covariance = n * sxy - sx * sy
    variance_x = n * sxx - sx * sx
    variance_y = n * syy - sy * sy
    if variance_x <= 0 or variance_y <= 0:
        return None
    return max(-1.0, min(1.0, covariance / math.sqrt(variance_x * variance_y)))


def moments(n: int, s1: float, s2: float, s3: float, s4: float) -> dict[str, float | None]:
    """Mean, sample std, skewness and excess kurtosis (pandas' bias-corrected G1, G2)."""
    if n == 0:
        return {"mean": None, "std": None, "skewness": None, "kurtosis": None}
    s1, s2, s3, s4 = float(s1), float(s2), float(s3), float(s4)
    mean = s1 / n
    m2 = max(s2 / n - mean**2, 0.0)
    m3 = s3 / n - 3 * mean * s2 / n + 2 * mean**3
    m4 = s4 / n - 4 * mean * s3 / n + 6 * mean**2 * s2 / n - 3 * mean**4
    std = math.sqrt(m2 * n / (n - 1)) if n > 1 else None
    skewness = kurtosis = None
    if n > 2 and m2 > 0:
        skewness = (m3 / m2**1.5) * math.sqrt(n * (n - 1)) / (n - 2)
    if n > 3 and m2 > 0:
        g2 = m4 / m2**2 - 3
        kurtosis = ((n + 1) * g2 + 6) * (n - 1) / ((n - 2) * (n - 3))
    return {"mean": mean, "std": std, "skewness": skewness, "kurtosis": kurtosis}
