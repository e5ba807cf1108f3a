"""PostgresStore's connection pool: made (or the caller's taken) and the schema migrated on first use,
lending connections to reads, closed with the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from durapod.errors import DurapodError, StoreError, StoreUnavailable
from durapod.stores._codec import _reason
from durapod.stores._postgres_writer import _driver_error, _unavailable

if TYPE_CHECKING:
    import asyncpg

    from durapod.stores._postgres_schema import _Schema


class _PoolKeeper:
    """The store's pool: its own, made from ``dsn_or_pool`` (a URL), or the ``asyncpg.Pool`` given, which
    stays open when the store closes. ``label`` names the store in errors.

    Raises:
        ValueError: ``min_size`` or ``max_size`` is not valid (naming the value).
    """

    def __init__(
        self, dsn_or_pool: str | asyncpg.Pool[Any], schema: _Schema, *, min_size: int, max_size: int, label: str
    ) -> None:
        for name, size in (("min_size", min_size), ("max_size", max_size)):
            # one connection of the store's own pool is held for LISTEN: writes and reads need another
            least = 0 if name == "min_size" else 2
            if isinstance(size, bool) or not isinstance(size, int) or size < least:
                raise ValueError(f"invalid {name} {size!r}: expected an int >= {least}")
        if min_size > max_size:
            raise ValueError(f"invalid min_size {min_size!r}: more than max_size {max_size!r}")
        if isinstance(dsn_or_pool, str):
            self._dsn: str | None = dsn_or_pool
            self._pool: asyncpg.Pool[Any] | None = None
            self._owns_pool = True
        else:
            self._dsn = None
            self._pool = dsn_or_pool
            self._owns_pool = False
        self._schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._label = label
        self._ready = False
        self._opening: asyncio.Lock | None = None
        self._closed = False

    @property
    def pool(self) -> asyncpg.Pool[Any] | None:
        """The pool, once made (the one given at once); None after :meth:`close` closed the store's own."""
        return self._pool

    async def open(self) -> asyncpg.Pool[Any]:
        """The pool, made and its schema migrated on the first call.

        Raises:
            StoreError: the store is closed (:meth:`refuse`), asyncpg is missing, or the schema cannot be
                migrated.
            StoreUnavailable: the server cannot be reached.
        """
        if self._closed:
            raise StoreError(f"{self._label} is closed")
        if self._ready and self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._closed:
                raise StoreError(f"{self._label} is closed")
            if not self._ready:
                try:
                    import asyncpg
                except ImportError as exc:  # pragma: no cover - the extra is missing
                    raise StoreError("PostgresStore needs asyncpg: pip install 'durapod[postgres]'") from exc
                try:
                    if self._pool is None:
                        self._pool = await asyncpg.create_pool(
                            self._dsn, min_size=self._min_size, max_size=self._max_size, reset=_keep_session
                        )
                    async with self._pool.acquire() as connection:
                        await self._schema.migrate(connection, self._label)
                except DurapodError:
                    raise
                except Exception as exc:
                    if _unavailable(exc):
                        raise StoreUnavailable(f"cannot reach {self._label}: {_reason(exc)}") from exc
                    raise StoreError(f"cannot open {self._label}: {_reason(exc)}") from exc
                self._ready = True
        assert self._pool is not None
        return self._pool

    @contextlib.asynccontextmanager
    async def connection(
        self, barrier: asyncio.Future[None] | None
    ) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy[Any]]:
        """A connection of the pool, once ``barrier`` (None: nothing to wait for) is done.

        Raises:
            StoreUnavailable: the server cannot be reached.
            StoreError: any other error of the driver, with the store's label.
        """
        if barrier is not None:
            await asyncio.shield(barrier)
        pool = await self.open()
        try:
            async with pool.acquire() as connection:
                yield connection
        except DurapodError:
            raise
        except Exception as exc:
            raise _driver_error(self._label, exc) from exc

    def refuse(self) -> None:
        """From now on :meth:`open` raises :class:`StoreError` (the store is closing)."""
        self._closed = True

    async def close(self) -> None:
        """Close the store's own pool (a pool passed in stays open)."""
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), timeout=5)
            if not pool.is_closing():  # a connection is still in use: do not wait for it
                pool.terminate()


async def _keep_session(connection: object) -> None:
    """The store's own pool's reset: none. Its connections keep no session state (no ``SET``, no session
    locks, no cursors outside a transaction; LISTEN is undone by its holder), and asyncpg's default reset
    would cost a round trip per release."""
