"""How SQLiteStore's operations reach its threads: the writer and reader workers, and a loop turn's writes.

A write joins the group of its event loop's turn, handed to the writer as the turn ends (one item per
turn: see :class:`~durapod.stores._sqlite_worker._Group`). A read goes to the reader, unless writes asked
for before it are not committed yet: then it queues behind them on the writer, so that it sees them. An
in-memory database lives in one connection, so its reads go to the writer too. The threads start on the
first operation that needs them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from durapod.errors import StoreError
from durapod.stores._sqlite_worker import _Group, _Stop, _Worker

T = TypeVar("T")


class _Dispatcher:
    """The threads of one SQLiteStore and the queueing of its operations. Only its store holds it, so a
    store dropped without ``close()`` drops it too, and its finalizer stops the threads.

    Args:
        name: the store, as errors name it (its repr).
        path: the database file, as given (errors from the threads name it).
        connect: opens a connection to the file (called on the worker's thread).
        shares_connection: reads go to the writer too (an in-memory database lives in one connection).
        file: the file the workers watch for being deleted or replaced (None: nothing to watch).
        checkpoint_connect: opens the connection of the writer's checkpointer thread (None: no such thread;
            see :mod:`durapod.stores._sqlite_checkpoint`).
    """

    __slots__ = (
        "__weakref__",
        "_checkpoint_connect",
        "_closed",
        "_connect",
        "_file",
        "_lock",
        "_name",
        "_path",
        "_pending",
        "_reader",
        "_shares_connection",
        "_stopped",
        "_writer",
    )

    def __init__(
        self,
        name: str,
        path: str,
        connect: Callable[[], sqlite3.Connection],
        *,
        shares_connection: bool,
        file: str | None,
        checkpoint_connect: Callable[[], sqlite3.Connection] | None = None,
    ) -> None:
        self._name = name
        self._path = path
        self._connect = connect
        self._shares_connection = shares_connection
        self._file = file
        self._checkpoint_connect = checkpoint_connect
        self._lock = threading.Lock()
        self._closed = False
        self._writer: _Worker | None = None
        # the last group of operations for the writer (open until the end of its loop's turn; see submit)
        self._pending: _Group | None = None
        self._reader: _Worker | None = None
        self._stopped: list[asyncio.Future[None]] = []

    def _worker(self, role: str) -> _Worker:
        # the worker must not hold the dispatcher, so that a store dropped without close() is collected
        # and this finalizer stops the thread
        writes = role == "writer"
        worker = _Worker(
            self._path,
            role,
            self._connect,
            writes=writes,
            file=self._file,
            checkpoint_connect=self._checkpoint_connect if writes else None,
        )
        weakref.finalize(self, worker.queue.put, _Stop(None))
        return worker

    def submit(self, reads: bool, op: Callable[..., T], args: tuple[Any, ...]) -> asyncio.Future[T]:
        """Queue ``op(conn, *args)`` (a read if ``reads``); the future is resolved on this loop with its result.

        Raises:
            StoreError: the store is closed (naming it).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:  # so that nothing is queued after the stop item, nor joins a group once taken
            if self._closed:
                raise StoreError(f"{self._name} is closed")
            # A read goes to the reader, unless writes asked for before it are not committed yet: then
            # it queues behind them on the writer, so that it sees them.
            group = self._pending
            writes_ahead = group is not None and not group.committed
            if reads and not self._shares_connection and not writes_ahead:
                if self._reader is None:
                    self._reader = self._worker("reader")
                self._reader.queue.put((op, args, future))
            else:
                if self._writer is None:
                    self._writer = self._worker("writer")
                # The writes of one loop turn go to the writer together, handed over as the turn ends.
                if group is None or group.closed or group.loop is not loop:
                    group = self._pending = _Group(loop)
                    loop.call_soon(self._hand_over, group)
                group.works.append((op, args, future))
        return future

    def _hand_over(self, group: _Group) -> None:
        """Give the writer a loop turn's group of operations (unless :meth:`close` did already)."""
        with self._lock:
            if not group.closed:
                group.closed = True
                assert self._writer is not None
                self._writer.queue.put(group)

    def close(self) -> list[asyncio.Future[None]]:
        """Refuse operations from now on, and queue what is queued this turn then the stop items (the first
        time). Idempotent.

        Returns:
            The futures on the running loop that are resolved once the threads have stopped (made by the
            first call, if it ran on this loop; already done once they have).
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._closed:
                self._closed = True
                pending = self._pending
                if pending is not None and not pending.closed:  # queued this turn: committed before the stop
                    pending.closed = True
                    assert self._writer is not None
                    self._writer.queue.put(pending)
                for worker in (self._writer, self._reader):
                    if worker is not None:
                        done: asyncio.Future[None] = loop.create_future()
                        self._stopped.append(done)
                        worker.queue.put(_Stop(done))
            return [future for future in self._stopped if future.get_loop() is loop]
