"""The database schema, defined once for SQLite and PostgreSQL.

``advanced_sales_data`` is the seed document's table: the same 20 columns,
names, types and 4 indexes, so a database created by the seed's own pipeline
is readable as is, plus ``line_number``: a row is an order *line*, and an
order (one ``order_id``) may have several (imported data; demo and seed-style
orders have one, line 1). The primary key is (order_id, line_number).
``customer_id`` may be NULL (guest checkouts) and so may
``satisfaction_rating`` (not every shop asks).

Money is a ledger (schema version 3): every line is stored with its sign and a
``line_type`` (:data:`LINE_TYPES`): ``sale`` lines (zero or positive),
``return`` lines (negative: returns, cancellations), and ``adjustment`` and
``fee`` lines (either sign). ``refunded_amount`` is the part of a line refunded
afterwards (a refunded or partially refunded order), netted, never dropped.
Text columns hold :data:`TEXT_LIMIT` characters (ids :data:`ID_LIMIT`): real
product titles are long, and nothing is ever cut. A unit price has
:data:`PRICE_DECIMALS` decimals (0.065 a piece is a real wholesale price). A table without
``line_number`` (the seed's, or one from an older version of this app) is
read as is and upgraded by the next load (:func:`data_layer.loader.upgrade_sales_table`).
``bi_metadata`` is the app's own small key/value table (data version, last load); it may be absent in such a
database, and every reader copes with that.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from sqlalchemy import (
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

if TYPE_CHECKING:
    import pandas as pd

metadata = MetaData()

class Day(TypeDecorator):
    """A day, read as a ``date`` from another tool's timestamps too (pandas' to_sql writes dates as
    timestamps: a TIMESTAMP column on PostgreSQL, text such as "2024-01-01 00:00:00.000000" on SQLite)."""

    impl = Date
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine:
        if dialect.name == "sqlite":  # the value's leading date, whatever follows it
            return dialect.type_descriptor(sqlite.DATE(regexp=r"(\d{4})-(\d{2})-(\d{2})"))
        return dialect.type_descriptor(Date())

    def process_result_value(self, value: object, dialect: Dialect) -> object:
        return value.date() if isinstance(value, datetime) else value


DAY = Day()

#: The longest product, category, region and segment name stored (and accepted in a URL).
TEXT_LIMIT = 255
#: The longest order id and customer id stored.
ID_LIMIT = 64
#: Decimals of a unit price (wholesale prices such as 0.065 are real); amounts keep cents.
PRICE_DECIMALS = 6
#: What a line is: merchandise sold, merchandise returned or cancelled, or an adjustment or fee.
LINE_TYPES = ("sale", "return", "adjustment", "fee")


Amounts = TypeVar("Amounts", "np.ndarray", "pd.Series")


def half_away(amounts: Amounts, decimals: int = 2) -> Amounts:
    """Amounts (a numpy array or pandas Series of floats) rounded to ``decimals`` (cents by default) half
    away from zero, as invoices round and as the database rounds the figures written out (1 x 0.125 is 0.13;
    numpy's own rounding goes to the even cent, and binary fractions such as 1.005 fall below the half).
    Exact up to about 10 million at cents (the nudge of 1e-7 of a unit must exceed the float's error)."""
    unit = 10.0 ** decimals
    return np.sign(amounts) * np.floor(np.abs(amounts) * unit + 0.5 + 1e-7) / unit


SALES_TABLE = "advanced_sales_data"
METADATA_TABLE = "bi_metadata"

sales = Table(
    SALES_TABLE,
    metadata,
    Column("order_id", String(ID_LIMIT), primary_key=True),
    Column("customer_id", String(ID_LIMIT)),
    Column("order_date", DAY, nullable=False),
    Column("category", String(TEXT_LIMIT), nullable=False),
    Column("product", String(TEXT_LIMIT), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Numeric(14, PRICE_DECIMALS, asdecimal=False), nullable=False),
    Column("subtotal", Numeric(10, 2, asdecimal=False), nullable=False),
    Column("discount_rate", Numeric(5, 4, asdecimal=False), server_default="0"),
    Column("discount_amount", Numeric(10, 2, asdecimal=False), server_default="0"),
    Column("shipping_cost", Numeric(10, 2, asdecimal=False), server_default="0"),
    Column("total_amount", Numeric(10, 2, asdecimal=False), nullable=False),
    Column("region", String(TEXT_LIMIT), nullable=False),
    Column("customer_segment", String(TEXT_LIMIT), nullable=False),
    Column("satisfaction_rating", Numeric(2, 1, asdecimal=False)),
    Column("day_of_week", String(10)),
    Column("month", Integer),
    Column("quarter", String(5)),
    Column("is_weekend", Integer, server_default="0"),
    Column("is_holiday_season", Integer, server_default="0"),
    Column("line_number", Integer, primary_key=True, server_default="1"),
    Column("line_type", String(12), nullable=False, server_default="sale"),
    Column("refunded_amount", Numeric(10, 2, asdecimal=False), nullable=False, server_default="0"),
)

#: The money columns of a line (in the data's currency).
MONEY_COLUMNS: tuple[str, ...] = ("unit_price", "subtotal", "discount_amount", "shipping_cost", "total_amount",
                                  "refunded_amount")

#: The seed's four indexes, by their seed names.
SALES_INDEXES = (
    Index("idx_customer_id", sales.c.customer_id),
    Index("idx_order_date", sales.c.order_date),
    Index("idx_region", sales.c.region),
    Index("idx_segment", sales.c.customer_segment),
)

SALES_COLUMNS: tuple[str, ...] = tuple(c.name for c in sales.columns)
#: The seed's 20 columns (a table without ``line_number`` has these).
SEED_COLUMNS: tuple[str, ...] = SALES_COLUMNS[:20]
#: The columns of schema version 2 (line numbers, before the ledger columns).
LINE_COLUMNS: tuple[str, ...] = SALES_COLUMNS[:21]
#: The ledger's columns, added by schema version 3.
LEDGER_COLUMNS: tuple[str, ...] = ("line_type", "refunded_amount")
#: Stamped in ``bi_metadata`` by every load: the table has every column of :data:`sales`.
SCHEMA_VERSION = "3"

#: Columns that must never be NULL in a usable row (checked by the quality report).
CRITICAL_COLUMNS: tuple[str, ...] = (
    "order_id",
    "order_date",
    "category",
    "product",
    "quantity",
    "unit_price",
    "subtotal",
    "total_amount",
    "region",
    "customer_segment",
)

bi_metadata = Table(
    METADATA_TABLE,
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
