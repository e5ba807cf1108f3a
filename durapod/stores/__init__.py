"""Stores: where jobs, journals, events, leases and control requests live.

``open_store(url)`` builds one from a URL: ``memory://``, ``sqlite:///relative.db``,
``sqlite:////absolute/path.db``, ``redis://host:port/0``, ``rediss://...`` or
``postgresql://user@host:5432/db`` (with ``?schema=name`` for a schema other than ``durapod``).
"""

from __future__ import annotations

import importlib
import urllib.parse
from collections.abc import Callable

from durapod.stores.base import ControlRequest, Page, Store, WorkerRecord
from durapod.stores.memory import MemoryStore

__all__ = ["ControlRequest", "MemoryStore", "Page", "Store", "WorkerRecord", "open_store"]


def open_store(url: str) -> Store:
    """Build the store a URL names.

    Args:
        url: ``memory://``; ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``;
            ``redis://[user:password@]host:port/db`` or ``rediss://`` for TLS;
            ``postgresql://[user[:password]@]host[:port]/db[?schema=name]`` (or ``postgres://``; needs the
            ``postgres`` extra).

    Raises:
        ValueError: the URL's scheme is not one of those, naming the URL.

    Example:
        >>> open_store("memory://")
        MemoryStore(jobs=0)
    """
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ValueError(f"invalid store URL {url!r}: expected memory://, sqlite:///path or redis://host")
    factory = _SCHEMES.get(scheme)
    if factory is None:
        known = ", ".join(sorted(_SCHEMES))
        raise ValueError(f"invalid store URL {url!r}: unknown scheme {scheme!r} (known: {known})")
    return factory(url)


def _memory(url: str) -> Store:
    return MemoryStore()


def _sqlite(url: str) -> Store:
    from durapod.stores.sqlite import SQLiteStore

    rest = url.partition("://")[2]
    if not rest.startswith("/") or rest == "/":
        raise ValueError(f"invalid SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////abs.db")
    return SQLiteStore(rest[1:])


def _redis(url: str) -> Store:
    redis_module = importlib.import_module("durapod.stores.redis")
    redis_store: Store = redis_module.RedisStore.from_url(url)
    return redis_store


def _postgres(url: str) -> Store:
    from durapod.stores.postgres import PostgresStore

    dsn, schema = _take_query_param(url, "schema")
    return PostgresStore(dsn, schema=schema) if schema is not None else PostgresStore(dsn)


#: URL scheme -> the function that builds its store from the whole URL. A new backend adds its schemes
#: here; its module is imported only when a URL names it, so an optional driver stays optional.
_SCHEMES: dict[str, Callable[[str], Store]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
    "postgresql": _postgres,
    "postgres": _postgres,
}


def _take_query_param(url: str, name: str) -> tuple[str, str | None]:
    """``url`` without the query parameter ``name``, and that parameter's value (None if absent)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    values = [value for key, value in query if key == name]
    rest = urllib.parse.urlencode([(key, value) for key, value in query if key != name])
    return urllib.parse.urlunsplit(parts._replace(query=rest)), (values[-1] if values else None)
