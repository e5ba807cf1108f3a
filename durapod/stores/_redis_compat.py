"""The parts of redis-py that RedisStore uses and that differ between the releases it supports (5.0.2 to 8.x).

Each difference is told apart by what the objects offer, never by ``redis.__version__``:

* ``ConnectionPool.get_connection``: before 5.3 it needs a command name; from 5.3 on a name is deprecated
  (a warning), and ``get_connection()`` takes none.
* Whether an idle connection was closed by the server: ``Connection.can_read()`` from 8.0 on, before that
  ``can_read_destructive()`` (deprecated in 8.0). Before 5.0.8 the latter, with redis-py's own (not
  hiredis) parser, reads one byte and returns it: ``b""`` then means the server closed the connection.
* A connection torn down while a command is sent or read (``CLIENT KILL``, a server restart) raises
  ``ConnectionError`` or an ``OSError`` most of the time, but some releases raise ``AttributeError``
  (their reader or writer is ``None`` by then): :data:`CONNECTION_ERRORS` holds all three.
* From 8.0 on a client has a ``socket_timeout`` (5 s) unless told otherwise, and with one redis-py sends
  through ``asyncio.wait_for``, which on Python 3.11 returns normally when the calling task is cancelled
  just as the send completes: the cancellation is lost. Commands sent in the caller's task (``SUBSCRIBE``)
  must raise it again.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: What redis-py raises when a connection breaks under a command: the command's outcome is unknown and
#: the store is "unavailable" (callers retry), never failed for good.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError, AttributeError)

#: The command name given to ``get_connection`` where it needs one (redis-py before 5.3 ignores it).
_COMMAND_NAME = "EVALSHA"


def _connection_getter(pool: ConnectionPool) -> Callable[[], Awaitable[AbstractConnection]]:
    """A function that takes a connection from ``pool``, in the way that pool's redis-py release asks."""
    get_connection: Callable[..., Awaitable[AbstractConnection]] = pool.get_connection
    try:
        parameter = inspect.signature(get_connection).parameters.get("command_name")
    except (TypeError, ValueError):
        parameter = None
    if parameter is not None and parameter.default is inspect.Parameter.empty:
        return lambda: get_connection(_COMMAND_NAME)
    return get_connection


async def _is_stale(connection: AbstractConnection) -> bool:
    """True if an idle connection was closed (a server ``timeout``, a restart) or holds stray data.

    The connection is dropped then, so what the older redis-py releases read to find out is lost with it.
    """
    probe: Callable[[], Awaitable[Any]] | None = getattr(connection, "can_read", None)
    if probe is None:
        probe = connection.can_read_destructive
    try:
        readable = await probe()
    except (RedisError, OSError):  # ConnectionError, or "Buffer is closed." (a disconnected connection)
        return True
    return bool(readable) or isinstance(readable, bytes)  # b"": end of stream, before redis-py 5.0.8


async def _subscribe(pubsub: PubSub, channels: list[str]) -> None:
    """``pubsub.subscribe(*channels)``, raising a cancellation of the calling task that redis-py lost."""
    task = asyncio.current_task()
    cancelling = 0 if task is None else task.cancelling()
    await pubsub.subscribe(*channels)
    if task is not None and task.cancelling() > cancelling:
        raise asyncio.CancelledError  # cancelled during the send: asyncio.wait_for returned instead
