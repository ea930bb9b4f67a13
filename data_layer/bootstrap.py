"""Demo data into a database: the CLI's ``demo-data`` and the embedded first run."""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, func, inspect, select

from data_layer.demo_data import END_DATE, START_DATE, generate_orders
from data_layer.engine import run
from data_layer.loader import LoadResult, load_orders
from data_layer.queries import has_sales_data
from data_layer.schema import SALES_TABLE, sales

log = logging.getLogger(__name__)


def load_demo_data(
    engine: Engine,
    rows: int,
    seed: int,
    *,
    replace: bool,
    on_progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Generate ``rows`` demo orders and load them (replacing or appending) in one transaction."""
    first_order_number = 1
    if not replace:
        with engine.connect() as conn:
            if inspect(conn).has_table(SALES_TABLE):
                first_order_number += run(conn, select(func.count()).select_from(sales)).scalar_one()
    return load_orders(
        engine,
        generate_orders(rows, seed, first_order_number=first_order_number),
        mode="replace" if replace else "append",
        source=f"demo-data rows={rows} seed={seed}",
        date_bounds=(START_DATE, END_DATE + timedelta(days=1)),
        on_progress=on_progress,
    )


def ensure_demo_database(engine: Engine, data_dir: Path, rows: int, seed: int) -> LoadResult | None:
    """Seed the embedded database with demo orders unless it already holds orders.

    A lock file makes concurrent first starts (several workers) seed only once.
    Returns the load, or None when there was nothing to do.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / ".seed.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with engine.connect() as conn:
            if has_sales_data(conn):
                return None
        log.info("Embedded database is empty: generating %s demo orders (seed %s)", rows, seed)
        result = load_demo_data(engine, rows, seed, replace=True)
        log.info("Loaded %s demo orders in %.1f s", result.rows_in, result.seconds)
        return result
