"""RFM: recency, frequency and monetary quintile scores per customer, and the segments they name."""

from __future__ import annotations

import pandas as pd

#: Segment order for tables and charts, best customers first.
RFM_SEGMENTS = ("Champions", "Loyal", "Potential", "New", "Need attention", "At risk", "Hibernating")
RFM_DESCRIPTIONS = {
    "Champions": "bought recently and often (R 4-5, F 4-5)",
    "Loyal": "buy often, not in the last while (R 3, F 4-5)",
    "Potential": "recent, middling frequency (R 4-5, F 2-3)",
    "New": "recent first order (R 4-5, F 1)",
    "Need attention": "middling recency and frequency (R 3, F 1-3)",
    "At risk": "used to buy often, gone quiet (R 1-2, F 3-5)",
    "Hibernating": "long gone, few orders (R 1-2, F 1-2)",
}


def quintile_score(values: pd.Series, *, higher_is_better: bool = True) -> pd.Series:
    """Scores 1..5 by quintile of rank (ties broken by row order, so every quintile is filled)."""
    ranks = values.rank(method="first", ascending=higher_is_better)
    bins = min(5, len(values))
    if bins == 0:
        return pd.Series([], dtype=int, index=values.index)
    return pd.qcut(ranks, bins, labels=False).astype(int) + 1 + (5 - bins)


def rfm_scores(features: pd.DataFrame) -> pd.DataFrame:
    """``customer_id``, ``r_score``, ``f_score``, ``m_score``, ``rfm_score`` ("543") and ``rfm_segment``.

    R scores recency (fewer days since the last order = 5), F the order count,
    M the total spent. Ranks break ties by row order: the feature table is
    sorted by customer id, so the result is the same on every database.
    """
    scores = pd.DataFrame({
        "customer_id": features["customer_id"],
        "r_score": quintile_score(features["recency_days"], higher_is_better=False),
        "f_score": quintile_score(features["order_count"]),
        "m_score": quintile_score(features["total_spent"]),
    })
    scores["rfm_score"] = (scores["r_score"].astype(str) + scores["f_score"].astype(str)
                           + scores["m_score"].astype(str))
    scores["rfm_segment"] = [segment_of(r, f) for r, f in zip(scores["r_score"], scores["f_score"])]
    return scores


def segment_of(r: int, f: int) -> str:
    """The named RFM segment of a recency and a frequency score."""
    if r >= 4:
        return "Champions" if f >= 4 else "Potential" if f >= 2 else "New"
    if r == 3:
        return "Loyal" if f >= 4 else "Need attention"
    return "At risk" if f >= 3 else "Hibernating"
