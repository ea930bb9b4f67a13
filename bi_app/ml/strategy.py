"""The five recommendations, computed from the data under the filters, with projections from
assumptions the user sets (nothing here is a figure about the business: only defaults for the
assumptions, which every answer shows beside its projection)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from bi_app.analytics.breakdowns import regions as regions_breakdown
from bi_app.analytics.stats import pearson, ratio
from bi_app.ml.analyses import scored_customers
from bi_app.ml.churn import DEFAULT_HORIZON_DAYS
from bi_app.ml.features import reference_date
from bi_app.ml.models import BEING_TRAINED, TrainedModels
from bi_app.money import DEFAULT_FORMAT, MoneyFormat, data_money_format
from data_layer.filters import Filters
from data_layer.measures import correlation_sums, customer_revenue, discount_numbers
from data_layer.meta import absent_fields


@dataclass(frozen=True)
class Assumption:
    """A number the user sets. ``target`` ones change who is targeted (and need the data again);
    the others only change the projection."""

    name: str
    recommendation: str
    label: str
    default: int
    minimum: int
    maximum: int
    unit: str
    target: bool = False


ASSUMPTIONS: tuple[Assumption, ...] = (
    Assumption("vip_top_percent", "vip", "VIP customers: top % by spend", 10, 1, 50, "%", target=True),
    Assumption("vip_uplift_percent", "vip", "Extra spend from VIPs", 10, 0, 100, "%"),
    Assumption("vip_cost_per_customer", "vip", "Programme cost per VIP", 50, 0, 100_000, "money"),
    Assumption("cross_sell_response_percent", "cross_sell", "Customers who buy another category", 8, 0, 100, "%"),
    Assumption("cross_sell_cost_per_customer", "cross_sell", "Campaign cost per customer", 1, 0, 10_000, "money"),
    Assumption("region_gap_closed_percent", "regional", "Share of the gap closed", 20, 0, 100, "%"),
    Assumption("region_campaign_cost", "regional", "Campaign cost", 20_000, 0, 100_000_000, "money"),
    Assumption("churn_threshold_percent", "churn_prevention", "At risk from churn probability", 90, 1, 99, "%",
               target=True),
    Assumption("churn_save_percent", "churn_prevention", "Share of the revenue at risk kept", 10, 0, 100, "%"),
    Assumption("churn_cost_per_customer", "churn_prevention", "Cost per contacted customer", 5, 0, 10_000, "money"),
    Assumption("pricing_discount_cut_points", "pricing", "Cut in every discount", 2, 0, 50, "points"),
    Assumption("pricing_volume_loss_percent", "pricing", "Discounted orders lost", 3, 0, 100, "%"),
)
DEFAULTS = {a.name: a.default for a in ASSUMPTIONS}
TITLES = {
    "vip": "VIP programme",
    "cross_sell": "Cross-sell",
    "regional": "Regional expansion",
    "churn_prevention": "Churn prevention",
    "pricing": "Pricing and discounts",
}


def recommendations(conn: Connection, filters: Filters, models: TrainedModels, **assumptions: int) -> dict[str, Any]:
    """Each recommendation's finding, the numbers behind it, its assumptions and projected impact."""
    chosen = {**DEFAULTS, **assumptions}
    # The orders' side (database work) runs on a second connection while the customers are scored
    # here (pandas and the models): 0.25 s less of 1.2 s at 1M orders.
    with ThreadPoolExecutor(max_workers=1) as pool, conn.engine.connect() as other:
        orders_side = pool.submit(_order_numbers, other, filters)
        customers = scored_customers(conn, filters, models, labels=("churn",))
        recent, regional, pricing = orders_side.result()
    customers["recent_spent"] = recent.reindex(customers["customer_id"]).fillna(0.0).to_numpy()
    numbers = {
        "vip": vip_numbers(customers, chosen["vip_top_percent"]),
        "cross_sell": cross_sell_numbers(customers, has_categories="category" not in absent_fields(conn)),
        "regional": regional,
        "churn_prevention": churn_numbers(customers, models, chosen["churn_threshold_percent"]),
        "pricing": pricing,
    }
    money = data_money_format(conn)
    return {name: describe(name, numbers[name], chosen, money) for name in TITLES}


def _order_numbers(conn: Connection, filters: Filters) -> tuple[pd.Series, dict[str, Any], dict[str, Any]]:
    """What the recommendations read of the orders rather than of the scored customers."""
    return (recent_spend(conn, filters, DEFAULT_HORIZON_DAYS), regional_numbers(conn, filters),
            pricing_numbers(conn, filters, recent_days=DEFAULT_HORIZON_DAYS))


def describe(name: str, numbers: dict[str, Any], assumptions: dict[str, int], money: MoneyFormat = DEFAULT_FORMAT
             ) -> dict[str, Any]:
    """One recommendation: title, finding (money written in ``money``), numbers, its assumptions and
    the projection they give."""
    own = {a.name: assumptions.get(a.name, a.default) for a in ASSUMPTIONS if a.recommendation == name}
    available = numbers.get("available", True)
    return {
        "name": name,
        "title": TITLES[name],
        "available": available,
        "finding": FINDINGS[name](numbers, lambda value: money(value, whole=True)) if available else numbers["reason"],
        "numbers": numbers,
        "assumptions": own,
        "projection": project(name, numbers, own) if available else None,
    }


def project(name: str, numbers: dict[str, Any], a: dict[str, int]) -> dict[str, Any]:
    """Projected extra revenue, cost and net effect of one recommendation under assumptions ``a``.

    The extra revenue is at most what the customers it targets spent in the last
    :data:`DEFAULT_HORIZON_DAYS` days (``numbers["recent_revenue"]``, where the recommendation
    targets customers): a projection never promises more than they brought in an equal past span.
    """
    if name == "vip":
        gain = numbers["revenue"] * a["vip_uplift_percent"] / 100
        cost = numbers["customers"] * a["vip_cost_per_customer"]
        how = "VIP revenue × uplift − VIPs × cost per VIP"
    elif name == "cross_sell":
        gain = numbers["customers"] * a["cross_sell_response_percent"] / 100 * numbers["average_order_value"]
        cost = numbers["customers"] * a["cross_sell_cost_per_customer"]
        how = "single-category customers × response × their average order − customers × cost"
    elif name == "regional":
        gain = numbers["laggard_customers"] * numbers["gap_per_customer"] * a["region_gap_closed_percent"] / 100
        cost = a["region_campaign_cost"]
        how = "laggard's customers × revenue-per-customer gap × share closed − campaign cost"
    elif name == "churn_prevention":
        gain = numbers["expected_revenue_at_risk"] * a["churn_save_percent"] / 100
        cost = numbers["customers"] * a["churn_cost_per_customer"]
        how = "expected revenue at risk × share kept − at-risk customers × cost"
    elif name == "pricing":
        kept = 1 - a["pricing_volume_loss_percent"] / 100
        gain = (numbers["discounted_subtotal"] * a["pricing_discount_cut_points"] / 100 * kept
                - numbers["discounted_revenue"] * (1 - kept))
        cost = 0.0
        how = "discounted subtotal × cut × orders kept − discounted revenue × orders lost"
    else:
        raise KeyError(name)
    recent = numbers.get("recent_revenue")
    capped = recent is not None and gain > recent
    if recent is not None and capped:
        gain = max(0.0, recent)
    if recent is not None:
        how += f", at most what they spent in the last {DEFAULT_HORIZON_DAYS} days"
    return {"revenue": round(float(gain), 2), "cost": round(float(cost), 2), "net": round(float(gain - cost), 2),
            "formula": how, "capped": capped}


def spent_lately(customers: pd.DataFrame) -> float | None:
    """What ``customers`` spent in the recent span (their ``recent_spent``), or None without it."""
    if "recent_spent" not in customers:
        return None
    return round(float(customers["recent_spent"].sum()), 2)


def vip_numbers(customers: pd.DataFrame, top_percent: int) -> dict[str, Any]:
    """The top ``top_percent``% of ``customers`` by spend (with ``recent_spent``: what they spent lately)."""
    total = float(customers["total_spent"].sum())
    vips = top_customers(customers, top_percent)
    return {
        "recent_revenue": spent_lately(vips),
        "customers": len(vips),
        "all_customers": len(customers),
        "revenue": round(float(vips["total_spent"].sum()), 2),
        "revenue_share": ratio(vips["total_spent"].sum(), total),
        "average_spent": float(vips["total_spent"].mean()) if len(vips) else None,
        "average_spent_all": float(customers["total_spent"].mean()) if len(customers) else None,
        "available": len(vips) > 0,
        **({} if len(vips) else {"reason": "no customer matches the filters"}),
    }


def top_customers(customers: pd.DataFrame, top_percent: int) -> pd.DataFrame:
    """The ``top_percent``% of customers with the largest spend (at least one when there are any)."""
    count = int(np.ceil(len(customers) * top_percent / 100))
    if count == 0:
        return customers.iloc[:0]
    # Only customers who spent at least the count-th largest amount can be among them: sorting those
    # (by spend, then id for ties) rather than everyone is 10x quicker at 200,000 customers.
    spent = np.nan_to_num(customers["total_spent"].to_numpy(dtype=float), nan=-np.inf)
    least = np.partition(spent, len(spent) - count)[len(spent) - count]
    candidates = customers[spent >= least]
    return candidates.sort_values(["total_spent", "customer_id"], ascending=[False, True]).head(count)


def cross_sell_numbers(customers: pd.DataFrame, *, has_categories: bool = True) -> dict[str, Any]:
    """Customers who bought from one category only (none to tell when the data has no categories)."""
    single = customers[customers["single_category"].astype(bool)]
    orders = single["order_count"].sum()
    reason = ("this data has no product categories" if not has_categories else
              "no customer matches the filters" if customers.empty else
              "every matching customer already buys from several categories")
    available = has_categories and len(single) > 0
    return {
        "recent_revenue": spent_lately(single),
        "customers": len(single),
        "share": ratio(len(single), len(customers)),
        "revenue": round(float(single["total_spent"].sum()), 2),
        "average_order_value": float(single["total_spent"].sum() / orders) if orders else 0.0,
        "available": available,
        **({} if available else {"reason": reason}),
    }


#: A region's revenue per customer is compared only over this many customers or more (fewer is noise:
#: one big buyer would make a region "lead").
MIN_REGION_CUSTOMERS = 10


def regional_numbers(conn: Connection, filters: Filters) -> dict[str, Any]:
    """The regions with the most and the least revenue per customer, among those with at least
    :data:`MIN_REGION_CUSTOMERS` customers."""
    frame = regions_breakdown(conn, filters).dropna(subset=["revenue_per_customer"])
    frame = frame[frame["customers"] >= MIN_REGION_CUSTOMERS]
    if len(frame) < 2:
        return {"available": False, "reason": f"fewer than two regions with {MIN_REGION_CUSTOMERS} customers or "
                                              "more match the filters; nothing to compare"}
    ranked = frame.sort_values("revenue_per_customer", ascending=False)
    leader, laggard = ranked.iloc[0], ranked.iloc[-1]
    return {
        "available": True,
        "leader": leader["region"],
        "leader_revenue_per_customer": float(leader["revenue_per_customer"]),
        "leader_customers": int(leader["customers"]),
        "laggard": laggard["region"],
        "laggard_revenue_per_customer": float(laggard["revenue_per_customer"]),
        "laggard_customers": int(laggard["customers"]),
        "gap_per_customer": float(leader["revenue_per_customer"] - laggard["revenue_per_customer"]),
        "recent_revenue": round(float(recent_spend(conn, replace(filters, regions=(laggard["region"],)),
                                                   DEFAULT_HORIZON_DAYS).sum()), 2),
    }


def recent_window(conn: Connection, filters: Filters, days: int) -> Filters | None:
    """``filters`` narrowed to the ``days`` days up to the reference date
    (:func:`bi_app.ml.features.reference_date`); None without orders."""
    as_of = reference_date(conn, filters)
    if as_of is None:
        return None
    first = as_of - timedelta(days=days - 1)
    return replace(filters, start=max(filters.start, first) if filters.start else first, end=as_of)


def recent_spend(conn: Connection, filters: Filters, days: int) -> pd.Series:
    """Each customer's net revenue (currency) in the ``days`` days up to the reference date
    (:func:`bi_app.ml.features.reference_date`), under ``filters``; indexed by customer id."""
    window = recent_window(conn, filters, days)
    if window is None:
        return pd.Series(dtype=float)
    # The customer aggregates the features are built from, without the features (nor taking the
    # place of the page's feature table in their memo).
    spent = customer_revenue(conn, window)
    return pd.Series(spent["revenue"].to_numpy(dtype=float), index=spent["customer_id"].astype(str).to_numpy(),
                     dtype=float)


def churn_numbers(customers: pd.DataFrame, models: TrainedModels, threshold_percent: int,
                  horizon_days: int = DEFAULT_HORIZON_DAYS) -> dict[str, Any]:
    """The customers at risk and the revenue they would bring in the next ``horizon_days`` days at
    their past rate, weighted by their churn probability, and capped by what they actually spent
    in the last ``horizon_days`` days (their ``recent_spent``): a projection never promises
    more than those customers brought in an equal past span."""
    if models.pending:
        return {"available": False, "pending": True, "reason": BEING_TRAINED}
    if models.churn is None:
        reasons = [problem.removeprefix("churn: ") for problem in models.problems if problem.startswith("churn: ")]
        return {"available": False, "reason": "no churn model: " + ("; ".join(reasons) or "not trained")}
    evaluation = models.churn_evaluation or {}  # saved with every churn model
    at_risk = at_risk_customers(customers, threshold_percent)
    # Revenue a customer brings in the horizon at their past rate, weighted by the risk of losing it.
    rate = at_risk["total_spent"] / np.maximum(at_risk["tenure_days"] + 1, horizon_days) * horizon_days
    expected = float((rate * at_risk["churn_probability"]).sum())
    lately = spent_lately(at_risk)
    spent_recently = expected if lately is None else lately
    return {
        "available": True,
        "customers": len(at_risk),
        "share": ratio(len(at_risk), len(customers)),
        "threshold": threshold_percent / 100,
        "horizon_days": horizon_days,
        "expected_revenue_at_risk": round(min(expected, spent_recently), 2),
        "uncapped_revenue_at_risk": round(expected, 2),
        "recent_revenue": round(spent_recently, 2),
        "capped": expected > spent_recently,
        "lifetime_revenue": round(float(at_risk["total_spent"].sum()), 2),
        "model_roc_auc": evaluation["roc_auc"],
        "model_used": evaluation.get("used_name", "gradient-boosted trees"),
    }


def at_risk_customers(customers: pd.DataFrame, threshold_percent: int) -> pd.DataFrame:
    """Customers whose churn probability is at least ``threshold_percent``%."""
    return customers[customers["churn_probability"].astype(float) >= threshold_percent / 100]


def pricing_numbers(conn: Connection, filters: Filters, recent_days: int | None = None) -> dict[str, Any]:
    """Discounted orders (an order with a discounted line) against orders at full price: counts,
    averages (net of nothing: merchandise amounts), the discounted lines' subtotal and revenue, and
    the correlation of discount rate with order size. With ``recent_days``, also the discounted lines'
    revenue in that many days up to the reference date (``recent_revenue``: what the projection is capped by)."""
    row = discount_numbers(conn, filters)
    terms = correlation_sums(conn, filters, [("discount_rate", "subtotal")])[("discount_rate", "subtotal")]
    orders, discounted_orders = int(row["orders"]), int(row["discounted_orders"])
    revenue, discounted_order_revenue = float(row["revenue"]), float(row["discounted_order_revenue"])
    available = discounted_orders > 0
    window = recent_window(conn, filters, recent_days) if recent_days and available else None
    recent = {"recent_revenue": pricing_numbers(conn, window)["discounted_revenue"]} if window else {}
    return {
        "available": available,
        **({} if available else {"reason": "no matching order was discounted"}),
        "orders": orders,
        "discounted_orders": discounted_orders,
        "discounted_share": ratio(discounted_orders, orders),
        "average_discount_rate": ratio(row["rate_sum"], row["discounted_lines"]),
        "discounted_subtotal": round(float(row["discounted_subtotal"]), 2),
        "discounted_revenue": round(float(row["discounted_revenue"]), 2),
        "average_order_discounted": ratio(discounted_order_revenue, discounted_orders),
        "average_order_full_price": ratio(revenue - discounted_order_revenue, orders - discounted_orders),
        "discount_order_size_correlation": pearson(*terms),
        **recent,
    }


def target_customers(conn: Connection, filters: Filters, models: TrainedModels, name: str,
                     **assumptions: int) -> pd.DataFrame:
    """The customers a recommendation targets, scored like every customer export."""
    chosen = {**DEFAULTS, **assumptions}
    if name == "regional":
        numbers = regional_numbers(conn, filters)
        if not numbers["available"]:
            return scored_customers(conn, filters, models).head(0)
        return scored_customers(conn, replace(filters, regions=(numbers["laggard"],)), models)
    customers = scored_customers(conn, filters, models)
    if name == "vip":
        return top_customers(customers, chosen["vip_top_percent"])
    if name == "cross_sell":
        return customers[customers["single_category"].astype(bool)]
    if name == "churn_prevention":
        return at_risk_customers(customers, chosen["churn_threshold_percent"]) if models.churn else customers.head(0)
    if name == "pricing":
        return customers[customers["total_discounts"] > 0]
    raise KeyError(name)


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _decimal(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


#: Each recommendation's finding, from its numbers and a function that writes money.
FINDINGS = {
    "vip": lambda n, _money: (
        f"The top {n['customers']:,} of {n['all_customers']:,} customers bring {_money(n['revenue'])}, "
        f"{_share(n['revenue_share'])} of revenue: {_money(n['average_spent'])} each against "
        f"{_money(n['average_spent_all'])} for the average customer."
    ),
    "cross_sell": lambda n, _money: (
        f"{n['customers']:,} customers ({_share(n['share'])}) have bought from one category only; "
        f"their average order is {_money(n['average_order_value'])}."
    ),
    "regional": lambda n, _money: (
        f"{n['leader']} leads with {_money(n['leader_revenue_per_customer'])} of revenue per customer; "
        f"{n['laggard']} trails at {_money(n['laggard_revenue_per_customer'])} "
        f"({_money(n['gap_per_customer'])} less) across {n['laggard_customers']:,} customers."
    ),
    "churn_prevention": lambda n, _money: (
        f"{n['customers']:,} customers ({_share(n['share'])}) have a churn probability of {n['threshold']:.0%} "
        f"or more; they would bring {_money(n['expected_revenue_at_risk'])} (risk-weighted) in the next "
        f"{n['horizon_days']} days"
        + (f": what they spent in the last {n['horizon_days']} days, since their lifetime rate "
           f"({_money(n['uncapped_revenue_at_risk'])}) would promise more" if n.get("capped") else
           " at their lifetime rate")
        + f". Probabilities from the {n['model_used']}, "
        f"ROC AUC {n['model_roc_auc']:.2f} on held-out customers."
    ),
    "pricing": lambda n, _money: (
        f"{_share(n['discounted_share'])} of orders are discounted, by {_share(n['average_discount_rate'])} on "
        f"average; discounted orders average {_money(n['average_order_discounted'])} against "
        f"{_money(n['average_order_full_price'])} at full price (discount rate vs order size "
        f"r = {_decimal(n['discount_order_size_correlation'])})."
    ),
}
