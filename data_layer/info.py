"""What ``bi-app info`` shows of a database: its masked URL, backend, tables' row counts and data version."""

from __future__ import annotations

from typing import TypedDict

from sqlalchemy import Connection, Engine, func, inspect, select

from data_layer.engine import run, safe_url
from data_layer.meta import read_meta
from data_layer.schema import bi_metadata, sales
from data_layer.summaries import daily, dimension_values, order_source


class DatabaseInfo(TypedDict):
    """What :func:`database_info` returns."""

    database: str
    backend: str
    tables: dict[str, int | None]
    data_version: str | None
    loaded_at: str | None
    last_load: str | None


def database_info(engine: Engine) -> DatabaseInfo:
    """What ``bi-app info`` shows: the masked URL, backend, row counts and data version."""
    url = engine.url.render_as_string(hide_password=False)
    with engine.connect() as conn:
        meta = read_meta(conn)
        counts = table_row_counts(conn)
    return DatabaseInfo(**{
        "database": safe_url(url),
        "backend": engine.dialect.name,
        "tables": counts,
        "data_version": meta.get("data_version"),
        "loaded_at": meta.get("loaded_at"),
        "last_load": meta.get("last_load_source"),
    })


def table_row_counts(conn: Connection) -> dict[str, int | None]:
    """Rows in each of the app's tables; None for a table that does not exist."""
    existing = set(inspect(conn).get_table_names())
    return {
        table.name: run(conn, select(func.count()).select_from(table)).scalar_one()
        if table.name in existing
        else None
        for table in (sales, bi_metadata, daily)
    }


def regions_in_data(conn: Connection) -> set[str]:
    """The regions of the stored orders (none when there is no orders table yet)."""
    if not inspect(conn).has_table(sales.name):
        return set()
    return set(dimension_values(conn, order_source(conn)).get("region", []))
