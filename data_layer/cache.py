"""The result cache: flask-caching backends, keyed by query and data version, failing open.

In process (``SimpleCache``) for a single server; Redis (``BI_CACHE_URL=
redis://...``) to share results between gunicorn workers and app servers. Keys
hold the data version, so a new load is never served stale. A cache that
fails (Redis down, a value that cannot be stored) is a miss: the answer is
computed and a warning logged, never an error.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from flask_caching.backends import RedisCache, SimpleCache
from flask_caching.backends.base import BaseCache

from data_layer.engine import safe_url

log = logging.getLogger(__name__)
T = TypeVar("T")

KEY_PREFIX = "bi:v1:"
#: Results of a database we never loaded (no data version) are kept this long only.
UNVERSIONED_TIMEOUT_S = 60
WARNING_INTERVAL_S = 60.0


class ResultCache:
    """get-or-compute over a flask-caching backend that never raises."""

    def __init__(self, backend: BaseCache, description: str) -> None:
        self.backend = backend
        self.description = description
        self._last_warning = 0.0
        self._warning_lock = threading.Lock()
        #: Told of each lookup's result: ``hit``, ``miss`` or ``error`` (the app's metrics).
        self.on_lookup: Callable[[str], None] = lambda _result: None

    @classmethod
    def from_url(cls, url: str | None) -> ResultCache:
        """In-process cache for ``None``; Redis for ``redis://`` / ``rediss://`` URLs."""
        if not url:
            return cls(SimpleCache(threshold=5000, default_timeout=0), "in-process")
        if url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
            return cls(RedisCache(host=client, default_timeout=0, key_prefix=KEY_PREFIX), f"redis {safe_url(url)}")
        raise ValueError(f"BI_CACHE_URL must be a redis:// URL or unset, got {safe_url(url)!r}")

    def get_or_compute(self, key: str, compute: Callable[[], T], *, timeout: int | None = None) -> T:
        """The cached value for ``key``, or ``compute()`` stored under it."""
        try:
            value = self.backend.get(key)
        except Exception as exc:  # noqa: BLE001 - any cache failure is a miss
            self._warn("read", exc)
            self.on_lookup("error")
            return compute()
        if value is not None:
            self.on_lookup("hit")
            return value
        self.on_lookup("miss")
        value = compute()
        try:
            self.backend.set(key, value, timeout=timeout)
        except Exception as exc:  # noqa: BLE001
            self._warn("write", exc)
        return value

    def clear(self) -> None:
        """Drop every cached result (tests, and after a schema change)."""
        try:
            self.backend.clear()
        except Exception as exc:  # noqa: BLE001
            self._warn("clear", exc)

    def _warn(self, action: str, exc: Exception) -> None:
        with self._warning_lock:
            now = time.monotonic()
            if now - self._last_warning < WARNING_INTERVAL_S:
                return
            self._last_warning = now
        log.warning("Cache %s failed on %s (%s: %s); computing without the cache",
                    action, self.description, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")


def result_key(name: str, data_version: str | None, *parts: object) -> str:
    """A short, stable key for result ``name`` of ``data_version`` and its parameters."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]
    return f"{name}:{data_version or 'unversioned'}:{digest}"
