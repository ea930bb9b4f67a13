"""Configuration: defaults in code, overridden by environment variables.

Secrets (database passwords) come only from the environment and are masked
wherever a URL is displayed (see :func:`data_layer.engine.safe_url`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

#: Every setting, its environment variable and what it does (shown in the README).
SETTINGS_HELP: dict[str, str] = {
    "BI_DATABASE_URL": "SQLAlchemy URL of the database (DATABASE_URL is accepted too). "
    "Unset: an embedded SQLite file under BI_DATA_DIR, seeded with demo data on first run.",
    "BI_DATA_DIR": "Folder for local data such as the embedded SQLite file (default ./data).",
    "BI_DEMO_ROWS": "Orders generated when the embedded database is first created (default 2000).",
    "BI_DEMO_SEED": "Random seed of those demo orders (default 42).",
    "BI_CACHE_URL": "Cache backend: unset for in-process, redis://host:6379/0 to share between workers.",
    "BI_STATEMENT_TIMEOUT_MS": "PostgreSQL statement timeout for app queries, in ms (default 30000).",
    "BI_CONNECT_TIMEOUT_S": "Seconds to wait when connecting to PostgreSQL (default 5).",
    "BI_COLUMNAR": "1 (default) keeps a columnar DuckDB snapshot of each data version under "
    "BI_DATA_DIR/columnar for fast customer-level analytics; 0 queries the database only.",
    "BI_COLUMNAR_MEMORY": "Memory limit of the columnar engine per process (default 256MB; beyond it, work goes "
                          "to disk beside the snapshot).",
    "BI_LOG_LEVEL": "Logging level (default INFO).",
    "BI_CURRENCY": "ISO 4217 code of the data's currency when the imported data has no currency column "
    "(default USD).",
    "BI_LOCALE": "Locale that money and numbers are written in, e.g. en_GB or de_DE (default en_US).",
    "BI_DEFAULT_PERIOD": "The date preset the dashboard opens on (last-7-days, last-30-days, last-90-days, "
    "month-to-date, quarter-to-date, year-to-date, last-12-months, previous-month, previous-quarter, all). "
    "Unset: the last 90 days against the previous 90 (or 30, or 7, the longest the data covers twice).",
    "BI_TIMEZONE": "IANA time zone (e.g. Europe/Paris) that imported timestamps with a UTC offset are put on "
    "their day in. Unset: each on the calendar day it was written with.",
}

DEFAULT_DATA_DIR = "data"
EMBEDDED_DB_NAME = "bi_demo.sqlite"


@dataclass(frozen=True)
class Config:
    """Settings of one app or CLI process."""

    database_url: str
    embedded: bool = False
    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR))
    demo_rows: int = 2000
    demo_seed: int = 42
    cache_url: str | None = None
    statement_timeout_ms: int = 30_000
    connect_timeout_s: int = 5
    log_level: str = "INFO"
    columnar: bool = True
    columnar_memory: str = "256MB"
    currency: str = "USD"
    locale: str = "en_US"
    timezone: str | None = None
    default_period: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build a config from ``BI_*`` environment variables, then apply ``overrides``."""
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("BI_DATA_DIR") or DEFAULT_DATA_DIR)
        url = env.get("BI_DATABASE_URL") or env.get("DATABASE_URL") or ""
        embedded = not url
        if embedded:
            url = f"sqlite:///{(data_dir / EMBEDDED_DB_NAME).resolve()}"
        config = cls(
            database_url=normalise_database_url(url),
            embedded=embedded,
            data_dir=data_dir,
            demo_rows=_int(env, "BI_DEMO_ROWS", 2000),
            demo_seed=_int(env, "BI_DEMO_SEED", 42),
            cache_url=env.get("BI_CACHE_URL") or None,
            statement_timeout_ms=_int(env, "BI_STATEMENT_TIMEOUT_MS", 30_000),
            connect_timeout_s=_int(env, "BI_CONNECT_TIMEOUT_S", 5),
            log_level=(env.get("BI_LOG_LEVEL") or "INFO").upper(),
            columnar=_flag(env, "BI_COLUMNAR", True),
            columnar_memory=_memory(env.get("BI_COLUMNAR_MEMORY") or "256MB"),
            currency=_currency(env.get("BI_CURRENCY") or "USD"),
            locale=_locale(env.get("BI_LOCALE") or "en_US"),
            timezone=_timezone(env.get("BI_TIMEZONE") or None),
            default_period=_period(env.get("BI_DEFAULT_PERIOD") or None),
        )
        return replace(config, **overrides) if overrides else config


class ConfigError(ValueError):
    """A setting has a value we cannot use."""


def engine_for(config: Config) -> Engine:
    """This process's engine for ``config``'s database."""
    from data_layer.engine import get_engine

    return get_engine(
        config.database_url,
        statement_timeout_ms=config.statement_timeout_ms,
        connect_timeout_s=config.connect_timeout_s,
    )


def normalise_database_url(url: str) -> str:
    """Accept the common spellings of a database URL and return SQLAlchemy's.

    ``postgres://`` (Heroku, RDS consoles) becomes ``postgresql://``; everything
    else, query string included (``?sslmode=require``), is kept as given.
    """
    url = url.strip()
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if not url.startswith(("postgresql", "sqlite")):
        scheme = url.split(":", 1)[0] if ":" in url else url
        raise ConfigError(
            f"unsupported database URL scheme {scheme!r}: use postgresql://... or sqlite:///..."
        )
    return url


def _memory(size: str) -> str:
    """A memory size as DuckDB reads it: a number and a unit (500MB, 1.5GB, 2GiB)."""
    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*", size, re.IGNORECASE):
        raise ConfigError(f"BI_COLUMNAR_MEMORY must be a size such as 500MB or 2GB, got {size!r}")
    return size.strip()


def _period(name: str | None) -> str | None:
    from data_layer.filters import PERIODS

    if name is not None and name not in PERIODS:
        raise ConfigError(f"BI_DEFAULT_PERIOD must be one of {', '.join(PERIODS)}, got {name!r}")
    return name


def _currency(code: str) -> str:
    from babel.numbers import list_currencies

    code = code.strip().upper()
    if code not in list_currencies():
        raise ConfigError(f"BI_CURRENCY must be an ISO 4217 code such as EUR, GBP or USD, got {code!r}")
    return code


def _locale(name: str) -> str:
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(name)
    except (ValueError, UnknownLocaleError):
        raise ConfigError(f"BI_LOCALE must be a locale such as en_US, en_GB or de_DE, got {name!r}") from None
    return name


def _timezone(name: str | None) -> str | None:
    if name is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"BI_TIMEZONE must be an IANA time zone such as Europe/Paris, got {name!r}") from None
    return name


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0, got {env.get(name)!r}")
