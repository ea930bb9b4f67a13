"""RFM: recency, frequency and monetary scores per customer, and the segments they name.

Scores are the customer's percentile rank among the customers analysed, in fifths:
``score = 1 + floor(5 × (below + ½ × equal) / n)`` (at most 5), where ``below``
counts the customers with a worse value and ``equal`` those with the same value
(the mid-rank percentile rank; Wikipedia, "Percentile rank"). Equal customers
therefore get equal scores, and when every customer is alike each scores 3.
Segments are named by the rules of :data:`RFM_RULES`, read top to bottom.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Segment order for tables and charts, best customers first.
RFM_SEGMENTS = ("Champions", "Loyal", "Potential", "New", "Need attention", "At risk", "Hibernating")
#: Each segment's rule, as stated on the page; the first rule that holds names the customer.
RFM_RULES = {
    "Champions": "R 4-5, F 4-5, two or more orders",
    "Loyal": "R 3, F 4-5, two or more orders",
    "Potential": "R 4-5, two or more orders, F 1-3",
    "New": "R 4-5, one order (a recent first order)",
    "Need attention": "R 3, not Loyal",
    "At risk": "R 1-2, F 3-5, two or more orders",
    "Hibernating": "R 1-2, not At risk",
}


def fifths_score(values: pd.Series, *, higher_is_better: bool = True) -> pd.Series:
    """Scores 1..5 from the mid-rank percentile rank of each value (equal values, equal scores)."""
    goodness = values if higher_is_better else -values
    n = len(goodness)
    if n == 0:
        return pd.Series([], dtype=int, index=values.index)
    # Mid-rank: the values below, plus half of those equal (the average rank minus a half).
    percentile = (goodness.rank(method="average") - 0.5) / n
    return pd.Series(np.minimum(5, 1 + np.floor(5 * percentile.to_numpy())).astype(int), index=values.index)


def rfm_scores(features: pd.DataFrame) -> pd.DataFrame:
    """``customer_id``, ``r_score``, ``f_score``, ``m_score``, ``rfm_score`` ("543") and ``rfm_segment``.

    ``features`` needs ``customer_id``, ``recency_days`` (days from the last order to the
    reference date), ``order_count`` and ``total_spent``. R scores recency (fewer days = better),
    F the order count, M the total spent, each by :func:`fifths_score` among these customers.
    """
    scores = pd.DataFrame({
        "customer_id": features["customer_id"],
        "r_score": fifths_score(features["recency_days"], higher_is_better=False),
        "f_score": fifths_score(features["order_count"]),
        "m_score": fifths_score(features["total_spent"]),
    })
    scores["rfm_score"] = (scores["r_score"] * 100 + scores["f_score"] * 10 + scores["m_score"]).astype(str)
    repeat = (features["order_count"].to_numpy() >= 2).astype(int)
    scores["rfm_segment"] = _SEGMENTS[scores["r_score"].to_numpy() - 1, scores["f_score"].to_numpy() - 1, repeat]
    return scores


def segment_of(r: int, f: int, orders: int) -> str:
    """The named RFM segment of a recency and frequency score and an order count (:data:`RFM_RULES`)."""
    repeat = orders >= 2
    if r >= 4:
        if not repeat:
            return "New"
        return "Champions" if f >= 4 else "Potential"
    if r == 3:
        return "Loyal" if f >= 4 and repeat else "Need attention"
    return "At risk" if f >= 3 and repeat else "Hibernating"


#: :func:`segment_of` for every R score, F score and one order or more (indexed [r - 1, f - 1, repeat]).
_SEGMENTS = np.array([[[segment_of(r, f, orders) for orders in (1, 2)] for f in range(1, 6)] for r in range(1, 6)],
                     dtype=object)
