"""LISTEN for PostgresStore: wake-ups of idle workers and lease keepers on NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from durapod.errors import StoreError
from durapod.stores._postgres_writer import _unavailable

if TYPE_CHECKING:
    import asyncpg


class _Listener:
    """``LISTEN`` on the store's channels over one held connection: an event per agent, set on NOTIFY."""

    def __init__(self, wake_channel: str, control_channel: str) -> None:
        self._wake_channel = wake_channel
        self._control_channel = control_channel
        self._connection: asyncpg.pool.PoolConnectionProxy[Any] | None = None
        self._events: dict[str, asyncio.Event] = {}
        self._lock: asyncio.Lock | None = None

    async def watch(self, pool: asyncpg.Pool[Any], agent: str) -> asyncio.Event | None:
        """The event of ``agent`` (``\\x00control`` for control requests); None if LISTEN is not available."""
        event = self._events.setdefault(agent, asyncio.Event())
        if self._connection is not None and self._connection.is_closed():
            self._connection = None
        if self._connection is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._connection is None:
                    try:
                        connection = await pool.acquire()
                        await connection.add_listener(self._wake_channel, self._woken)
                        await connection.add_listener(self._control_channel, self._woken)
                    except Exception as exc:
                        if not _unavailable(exc) and not isinstance(exc, StoreError):
                            raise
                        return None
                    self._connection = connection
        return event

    def _woken(self, connection: object, pid: int, channel: str, payload: object) -> None:
        if channel == self._control_channel:
            key: str | None = "\x00control"
        else:
            key = str(payload) or None  # a job any agent may take wakes every waiting worker
        for name, event in self._events.items():
            if key is None or name == key or (name != "\x00control" and not name):
                event.set()

    async def close(self, pool: asyncpg.Pool[Any] | None) -> None:
        connection, self._connection = self._connection, None
        if connection is None or pool is None:
            return
        with contextlib.suppress(Exception):
            await connection.remove_listener(self._wake_channel, self._woken)
            await connection.remove_listener(self._control_channel, self._woken)
        with contextlib.suppress(Exception):
            await pool.release(connection)
