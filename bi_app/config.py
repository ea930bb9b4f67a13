"""Configuration: defaults in code, overridden by environment variables.

Secrets (database passwords) come only from the environment and are masked
wherever a URL is displayed (see :func:`data_layer.engine.safe_url`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from data_layer.importer import ReadLimits

DEFAULT_DATA_DIR = "data"
EMBEDDED_DB_NAME = "bi_demo.sqlite"


class ConfigError(ValueError):
    """A setting has a value we cannot use."""


@dataclass(frozen=True)
class Setting:
    """One setting: its environment variable, the :class:`Config` field it fills, the value when the
    variable is unset or empty, how its text is read (raising :class:`ConfigError`) and what it does."""

    env: str
    field: str
    default: Any
    read: Callable[[str, str], Any]
    help: str
    #: Never shown (``bi-app info`` says only whether it is set).
    secret: bool = False

    def value(self, environ: Mapping[str, str]) -> Any:
        raw = (environ.get(self.env) or "").strip()
        return self.default if raw == "" else self.read(self.env, raw)

    @property
    def shown_default(self) -> str:
        """The default as the README writes it (``unset`` for None)."""
        return shown_value(self.default)


def shown_value(value: Any) -> str:
    """A setting's value as its variable would be written (``unset`` for None, ``1``/``0`` for a flag)."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _positive(name: str, raw: str) -> int:
    value = _int(name, raw)
    if value < 1:
        raise ConfigError(f"{name} must be 1 or more, got {raw!r}")
    return value


def _smtp_url(name: str, raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname or parts.password:
        raise ConfigError(f"{name} must be smtp://[user@]host[:port] or smtps://[user@]host[:port] (the password "
                          "goes in BI_SMTP_PASSWORD, never in the URL)")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        raise ConfigError(f"{name} has a port that is not a number: {raw!r}") from None
    return raw.strip()


def _base_url(name: str, raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{name} must be an http(s) address such as https://bi.example.com, got {raw!r}")
    return raw.strip().rstrip("/")


def _count(name: str, raw: str) -> int:
    value = _int(name, raw)
    if value < 0:
        raise ConfigError(f"{name} must be 0 or more, got {raw!r}")
    return value


def _log_level(name: str, raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"{name} must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}")
    return level


def _log_format(name: str, raw: str) -> str:
    if raw.lower() not in ("text", "json"):
        raise ConfigError(f"{name} must be text or json, got {raw!r}")
    return raw.lower()


def _cache_url(name: str, url: str) -> str:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        scheme = url.split(":", 1)[0]
        raise ConfigError(f"{name} must be a redis://, rediss:// or unix:// URL, or unset, got {scheme!r}")
    return url


def _flag(name: str, raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")


def _memory(name: str, size: str) -> str:
    """A memory size as DuckDB reads it: a number above 0 and a unit (500MB, 1.5GB, 2GiB)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)", size, re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"{name} must be a size such as 500MB or 2GB, got {size!r}")
    return size


#: The shortest secret key accepted: 256 bits of a URL-safe base64 text are 43 characters.
MIN_SECRET_KEY_LENGTH = 32


def _secret_key(name: str, key: str) -> str:
    if len(key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(f"{name} must be at least {MIN_SECRET_KEY_LENGTH} random characters (make one with: "
                          "python3 -c 'import secrets; print(secrets.token_urlsafe(48))')")
    return key


def _period(name: str, period: str) -> str:
    from data_layer.filters import PERIODS

    if period not in PERIODS:
        raise ConfigError(f"{name} must be one of {', '.join(PERIODS)}, got {period!r}")
    return period


def _currency(name: str, code: str) -> str:
    from babel.numbers import list_currencies

    code = code.upper()
    if code not in list_currencies():
        raise ConfigError(f"{name} must be an ISO 4217 code such as EUR, GBP or USD, got {code!r}")
    return code


def _locale(name: str, locale: str) -> str:
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(locale)
    except (ValueError, UnknownLocaleError):
        raise ConfigError(f"{name} must be a locale such as en_US, en_GB or de_DE, got {locale!r}") from None
    return locale


def _timezone(name: str, zone: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name} must be an IANA time zone such as Europe/Paris, got {zone!r}") from None
    return zone


#: Every setting: the one place its variable, default and reading are written. The README's
#: configuration table and ``bi-app info`` are tested against it (tests/test_docs.py).
SETTINGS: tuple[Setting, ...] = (
    Setting("BI_DATABASE_URL", "database_url", None, lambda _name, url: normalise_database_url(url),
            "SQLAlchemy URL of the database (`DATABASE_URL` is accepted too). Unset: an embedded SQLite file "
            "under `BI_DATA_DIR`, seeded with demo data on first run."),
    Setting("BI_DATABASE_WRITE_URL", "write_database_url", None, lambda _name, url: normalise_database_url(url),
            "SQLAlchemy URL the app writes with: imports, users, API tokens and the audit log. Unset: "
            "`BI_DATABASE_URL`. Set it to run the dashboards' queries as a read-only database role."),
    Setting("BI_DATABASE_READ_URL", "read_database_url", None, lambda _name, url: normalise_database_url(url),
            "SQLAlchemy URL of a read replica (an RDS read replica, a streaming standby) that the dashboards, the "
            "API and the exports query. Sign-in, loads, imports, users, tokens and the audit log keep to the "
            "primary (`BI_DATABASE_WRITE_URL`, else `BI_DATABASE_URL`). Unset: `BI_DATABASE_URL`."),
    Setting("BI_DATA_DIR", "data_dir", Path(DEFAULT_DATA_DIR), lambda _name, raw: Path(raw),
            "Folder for local data: the embedded SQLite file, the columnar snapshots and the trained models."),
    Setting("BI_IMPORT_MAX_ROWS", "import_max_rows", 10_000_000, _positive,
            "The most rows an import reads; a larger file is refused with the reason, before it is read on."),
    Setting("BI_IMPORT_MAX_COLUMNS", "import_max_columns", 1_000, _positive,
            "The most columns an import reads; a wider file is refused with the reason, before it is read on."),
    Setting("BI_HEAVY_WORK_LIMIT", "heavy_work_limit", 2, _positive,
            "Heavy requests (customer downloads, workbooks, imports) each server process runs at once; one more "
            "is answered \"busy, try again\" (503 with Retry-After) at once instead of queueing."),
    Setting("BI_WORK_TIME_LIMIT_S", "work_time_limit_s", 100, _positive,
            "Seconds one request's heavy work (an import, a file's check, customer scoring, a workbook) may run; "
            "past it, or once its client has gone, the work stops with nothing written. Keep it below the "
            "proxy's read timeout (120 s in deploy/nginx-site.conf), so the user is told why."),
    Setting("BI_DEMO_ROWS", "demo_rows", 2000, _positive, "Orders generated when the embedded database is first made."),
    Setting("BI_DEMO_SEED", "demo_seed", 42, _int, "Random seed of those demo orders."),
    Setting("BI_CACHE_URL", "cache_url", None, _cache_url,
            "Cache backend: unset for in-process, `redis://host:6379/0` to share between workers and servers."),
    Setting("BI_STATEMENT_TIMEOUT_MS", "statement_timeout_ms", 30_000, _positive,
            "PostgreSQL statement timeout for app queries, in milliseconds."),
    Setting("BI_CONNECT_TIMEOUT_S", "connect_timeout_s", 5, _positive,
            "Seconds to wait when connecting to PostgreSQL."),
    Setting("BI_LOG_LEVEL", "log_level", "INFO", _log_level, "Logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL."),
    Setting("BI_LOG_FORMAT", "log_format", "text", _log_format,
            "`text` (a line for people) or `json` (one JSON object a line, for a log collector); every line "
            "written during a request carries its request id and user."),
    Setting("BI_HTTPS", "https", False, _flag,
            "`1` when users reach the app over HTTPS (nginx holding the certificate): browsers are told to "
            "keep to HTTPS (HSTS) and cookies are sent over HTTPS only. The app itself never redirects."),
    Setting("BI_SECRET_KEY", "secret_key", None, _secret_key,
            "Signs sign-in sessions and form tokens; setting it turns sign-in on (users: `bi-app users add`). "
            "Unset: demo mode, no sign-in, served to this machine only. At least 32 random characters, kept "
            "outside git (e.g. in `/etc/bi-app/env`); changing it signs everyone out.", secret=True),
    Setting("BI_SESSION_HOURS", "session_hours", 12, _positive,
            "Hours a sign-in lasts (from the last request) before the user signs in again."),
    Setting("BI_TRUSTED_PROXIES", "trusted_proxies", 0, _count,
            "Proxies in front of the app whose `X-Forwarded-For` gives the user's address (for sign-in limits "
            "and the audit log): `1` behind the nginx of `deploy/`, `0` when users connect directly."),
    Setting("BI_COLUMNAR", "columnar", True, _flag,
            "`1`: each server keeps a columnar (DuckDB) snapshot of the current data version under "
            "`BI_DATA_DIR/columnar` for fast customer-level analytics; `0`: query the database only."),
    Setting("BI_COLUMNAR_MEMORY", "columnar_memory", "256MB", _memory,
            "Memory limit of the columnar engine per process; beyond it, work goes to disk beside the snapshot. "
            "Keeps a worker under 600 MB at 1M orders; raise it for tens of millions (an aggregate of 2M "
            "customers over 10M lines took 17.8 s at 256MB, 7.3 s at 1GB)."),
    Setting("BI_CURRENCY", "currency", "USD", _currency,
            "ISO 4217 code of the data's currency when the imported data has no currency column."),
    Setting("BI_LOCALE", "locale", "en_US", _locale,
            "Locale money and numbers are written in, e.g. `en_GB` or `de_DE`."),
    Setting("BI_DEFAULT_PERIOD", "default_period", None, _period,
            "The date preset the dashboard opens on: `last-7-days`, `last-30-days`, `last-90-days`, "
            "`month-to-date`, `quarter-to-date`, `year-to-date`, `last-12-months`, `previous-week`, "
            "`previous-month`, `previous-quarter` or `all`. Unset: the last 90 days against the previous 90 (or 30, "
            "or 7: the longest the data covers twice, so the cards compare like with like)."),
    Setting("BI_BASE_URL", "base_url", None, _base_url,
            "The address people reach the dashboard at (`https://bi.example.com`): the links in emailed summaries "
            "and alerts. Unset: emails carry no link."),
    Setting("BI_SMTP_URL", "smtp_url", None, _smtp_url,
            "The mail server emailed reports and alerts go through: `smtp://[user@]host[:587]` (upgraded to TLS "
            "with STARTTLS when the server offers it, and only so when a user is given) or "
            "`smtps://[user@]host[:465]` (TLS from the start). Unset: reports and alerts are not sent."),
    Setting("BI_SMTP_PASSWORD", "smtp_password", None, lambda _name, raw: raw,
            "The mail server user's password (kept outside git, e.g. in `/etc/bi-app/env`).", secret=True),
    Setting("BI_MAIL_FROM", "mail_from", "bi-app@localhost", lambda _name, raw: raw,
            "The sender of emailed reports and alerts, e.g. `Reports <bi@example.com>`."),
    Setting("BI_BROWSER", "browser", None, lambda _name, raw: raw,
            "The Chromium or Chrome that prints executive summaries to PDF. Unset: `chromium`, "
            "`chromium-browser` or `google-chrome` from the PATH."),
    Setting("BI_TIMEZONE", "timezone", None, _timezone,
            "IANA time zone (e.g. `Europe/Paris`) that imported timestamps with a UTC offset are put on their "
            "day in. Unset: each on the calendar day it was written with."),
)


@dataclass(frozen=True)
class Config:
    """Settings of one app or CLI process (read from the environment by :meth:`from_env`; see
    :data:`SETTINGS` for each field's variable and default)."""

    database_url: str
    embedded: bool
    data_dir: Path
    demo_rows: int
    demo_seed: int
    cache_url: str | None
    statement_timeout_ms: int
    connect_timeout_s: int
    log_level: str
    log_format: str
    https: bool
    columnar: bool
    columnar_memory: str
    currency: str
    locale: str
    timezone: str | None
    default_period: str | None
    write_database_url: str | None
    read_database_url: str | None
    secret_key: str | None
    session_hours: int
    trusted_proxies: int
    import_max_rows: int
    import_max_columns: int
    heavy_work_limit: int
    work_time_limit_s: int
    browser: str | None
    base_url: str | None
    smtp_url: str | None
    smtp_password: str | None
    mail_from: str

    @property
    def dashboard_database_url(self) -> str:
        """The database the dashboards, the API and the exports read: the replica when there is one."""
        return self.read_database_url or self.database_url

    @property
    def read_limits(self) -> ReadLimits:
        """How much of a file an import reads at most."""
        from data_layer.importer import ReadLimits

        return ReadLimits(max_rows=self.import_max_rows, max_columns=self.import_max_columns)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build a config from the ``BI_*`` environment variables of :data:`SETTINGS`, then apply
        ``overrides``; :class:`ConfigError` names the variable whose value cannot be used."""
        env = os.environ if environ is None else environ
        values = {setting.field: setting.value(env) for setting in SETTINGS}
        if values["database_url"] is None and (env.get("DATABASE_URL") or "").strip():
            values["database_url"] = normalise_database_url(env["DATABASE_URL"])
        values["embedded"] = values["database_url"] is None
        if values["embedded"]:
            values["database_url"] = f"sqlite:///{(values['data_dir'] / EMBEDDED_DB_NAME).resolve()}"
        config = cls(**values)
        return replace(config, **overrides) if overrides else config


def write_engine_for(config: Config) -> Engine:
    """This process's engine for the primary of ``config``'s database (``BI_DATABASE_WRITE_URL``, else
    ``BI_DATABASE_URL``): writes, and reads that must see them at once (sign-in, sessions)."""
    return _engine(config, config.write_database_url or config.database_url)


def engine_for(config: Config) -> Engine:
    """This process's engine for the database the dashboards read (``BI_DATABASE_READ_URL``, else
    ``BI_DATABASE_URL``)."""
    return _engine(config, config.dashboard_database_url)


def _engine(config: Config, url: str) -> Engine:
    from data_layer.engine import get_engine

    return get_engine(
        url,
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
