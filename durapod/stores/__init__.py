"""Stores: where jobs, journals, events, leases and control requests live.

``open_store(url)`` builds one from a URL: ``memory://``, ``sqlite:///relative.db``,
``sqlite:////absolute/path.db``, ``redis://host:port/0`` or ``rediss://...``.
"""

from __future__ import annotations

import importlib

from durapod.stores.base import ControlRequest, Page, Store
from durapod.stores.memory import MemoryStore

__all__ = ["ControlRequest", "MemoryStore", "Page", "Store", "open_store"]


def open_store(url: str) -> Store:
    """Build the store a URL names.

    Args:
        url: ``memory://``; ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``;
            ``redis://[user:password@]host:port/db`` or ``rediss://`` for TLS.

    Raises:
        ValueError: the URL's scheme is not one of those, naming the URL.

    Example:
        >>> open_store("memory://")
        MemoryStore(jobs=0)
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"invalid store URL {url!r}: expected memory://, sqlite:///path or redis://host")
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        from durapod.stores.sqlite import SQLiteStore

        if not rest.startswith("/") or rest == "/":
            raise ValueError(f"invalid SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////abs.db")
        return SQLiteStore(rest[1:])
    if scheme in ("redis", "rediss", "unix"):
        redis_module = importlib.import_module("durapod.stores.redis")
        redis_store: Store = redis_module.RedisStore.from_url(url)
        return redis_store
    raise ValueError(f"invalid store URL {url!r}: unknown scheme {scheme!r}")
