"""The running app's config and engine, for pages and routes inside a request."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import Engine

from bi_app.config import Config
from data_layer.cache import ResultCache
from data_layer.engine import get_engine

CONFIG_KEY = "BI_CONFIG"
CACHE_KEY = "BI_CACHE"


def current_config() -> Config:
    """The :class:`Config` of the app serving this request."""
    return current_app.config[CONFIG_KEY]


def engine_for(config: Config) -> Engine:
    """This process's engine for ``config``'s database."""
    return get_engine(
        config.database_url,
        statement_timeout_ms=config.statement_timeout_ms,
        connect_timeout_s=config.connect_timeout_s,
    )


def current_engine() -> Engine:
    """This process's engine for the database of the app serving this request."""
    return engine_for(current_config())


def current_cache() -> ResultCache:
    """The result cache of the app serving this request."""
    return current_app.config[CACHE_KEY]
