"""Queries that aggregate in the database and return small results."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, inspect, select

from data_layer.filters import Filters, conditions
from data_layer.schema import SALES_TABLE, sales


@dataclass(frozen=True)
class Kpis:
    """The overview's headline figures for one filter."""

    revenue: float
    orders: int
    customers: int
    average_order_value: float | None
    average_satisfaction: float | None


def kpis(conn: Connection, filters: Filters) -> Kpis:
    """Revenue, orders, unique customers, average order value and satisfaction."""
    c = sales.c
    row = conn.execute(
        select(
            func.coalesce(func.sum(c.total_amount), 0).label("revenue"),
            func.count(func.distinct(c.order_id)).label("orders"),
            func.count(func.distinct(c.customer_id)).label("customers"),
            func.avg(c.satisfaction_rating).label("satisfaction"),
        ).where(conditions(filters, sales))
    ).one()
    revenue, orders = round(float(row.revenue), 2), int(row.orders)
    return Kpis(
        revenue=revenue,
        orders=orders,
        customers=int(row.customers),
        average_order_value=round(revenue / orders, 2) if orders else None,
        average_satisfaction=float(row.satisfaction) if row.satisfaction is not None else None,
    )


def has_sales_data(conn: Connection) -> bool:
    """True when the sales table exists and holds at least one row."""
    if not inspect(conn).has_table(SALES_TABLE):
        return False
    return conn.execute(select(sales.c.order_id).limit(1)).first() is not None

