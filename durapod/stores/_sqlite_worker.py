"""The SQLite store's worker threads: one owns the write connection and group-commits, one reads.

Every write is queued to one writer thread that owns the write connection. The writer takes everything
queued (a batch), runs it in one ``BEGIN IMMEDIATE`` transaction, commits once, and then wakes the
awaiting coroutines of each event loop with one ``call_soon_threadsafe``. A refused operation (a
:class:`VersionConflict`, a fenced step) gets its own exception and the rest of the batch commits: every
operation makes its checks before its first write, so a refusal has nothing to undo (this is checked; an
operation that breaks the rule, or an unexpected failure such as a full disk, makes the writer run the
batch again one operation per transaction, so each still gets its own answer). Reads run on a second
connection in a reader thread, batched the same way. No sqlite call ever runs on the event loop.

Before each batch a worker checks that its path still names the file its connection opened (same device
and inode): a file deleted or replaced under a running store would otherwise take every later write into
a file nobody can open again. When it changed, the batch and every later one fail with a
:class:`StoreError` naming the path, and nothing more is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from durapod._log import get_logger
from durapod.errors import DurapodError, StoreError, StoreUnavailable
from durapod.stores._sqlite_checkpoint import BACKSTOP_PAGES, _Checkpointer

_log = get_logger("durapod.stores.sqlite")


class _Stop:
    """The last item a worker takes: it closes its connection, then resolves ``done`` (if any)."""

    __slots__ = ("done",)

    def __init__(self, done: asyncio.Future[None] | None) -> None:
        self.done = done


_Work = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


class _Group:
    """Operations queued on one event loop during one turn of it, in order.

    The store's dispatcher (:mod:`durapod.stores._sqlite_queue`) hands the group to the writer at the end
    of the loop's turn (a ``call_soon`` made with its first operation), closed: later operations start a
    new group. So the writer gets every write of a turn in one item, and takes nothing the loop still adds
    to: no lock between the two threads. The writer sets ``committed`` once the batch that holds the group
    has ended (committed, or failed as a whole): a read asked for after that need not queue behind it.
    """

    __slots__ = ("closed", "committed", "loop", "works")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.works: list[_Work] = []
        self.closed = False
        self.committed = False


# one operation, a group of them, or the stop item
_Item = _Work | _Group | _Stop
# (future, succeeded, result or exception)
_Outcome = tuple["asyncio.Future[Any]", bool, Any]


def _settle(outcomes: list[_Outcome]) -> None:
    """Resolve futures on their own loop. A future its caller cancelled is done already and skipped."""
    for future, succeeded, value in outcomes:
        if future.done():
            continue
        if succeeded:
            future.set_result(value)
        else:
            future.set_exception(value)


def _deliver(outcomes: list[_Outcome]) -> None:
    """One ``call_soon_threadsafe`` per event loop for the whole batch (most batches come from one)."""
    loop = outcomes[0][0].get_loop()
    by_loop = {loop: outcomes}
    if any(outcome[0].get_loop() is not loop for outcome in outcomes):
        by_loop = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for target, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits these any more
            target.call_soon_threadsafe(_settle, settled)


def _store_error(path: str, exc: BaseException) -> StoreError:
    error: StoreError
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        error = StoreUnavailable(f"SQLite store {path!r} stayed locked: {exc}")
    else:
        error = StoreError(f"SQLite store {path!r}: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


class _Worker:
    """A thread that owns one connection and runs the operations queued for it, a batch at a time."""

    max_batch = 1000

    def __init__(
        self,
        path: str,
        role: str,
        connect: Callable[[], sqlite3.Connection],
        *,
        writes: bool,
        file: str | None = None,
        checkpoint_connect: Callable[[], sqlite3.Connection] | None = None,
    ) -> None:
        self.queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._path = path
        self._connect = connect
        self._writes = writes
        self._conn: sqlite3.Connection | None = None
        self._file = file  # None: in memory, nothing to watch
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file the connection opened
        self._lost: StoreError | None = None  # set once the file was deleted or replaced: no more work
        # copies the log into the file in a thread of its own (a writer on a file only), started with the
        # writer's connection; the writer tells it of each commit
        self._checkpoint_connect = checkpoint_connect
        self.checkpointer: _Checkpointer | None = None
        self._thread = threading.Thread(target=self._main, name=f"durapod-sqlite-{role}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        stop: _Stop | None = None
        try:
            while stop is None:
                batch: list[_Work] = []
                groups: list[_Group] = []
                item = self.queue.get()
                while True:
                    if isinstance(item, _Stop):
                        stop = item
                        break
                    if isinstance(item, _Group):
                        groups.append(item)
                        batch.extend(item.works)
                    else:
                        batch.append(item)
                    if len(batch) >= self.max_batch:
                        break
                    try:
                        item = self.queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    try:
                        outcomes = self._run(batch)
                    except Exception as exc:  # a bug here must not stop the thread nor strand the callers
                        outcomes = [(future, False, _store_error(self._path, exc)) for _, _, future in batch]
                    for group in groups:
                        group.committed = True
                    _deliver(outcomes)
                    if self.checkpointer is not None:
                        self.checkpointer.committed()
                    # the thread waits for the next batch: it must not keep this one's results alive
                    del outcomes, batch, groups, item
        finally:
            if self.checkpointer is not None:  # first: the last connection to close checkpoints the whole log
                self.checkpointer.stop()
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if stop is not None and stop.done is not None:
                _deliver([(stop.done, True, None)])

    def _run(self, batch: list[_Work]) -> list[_Outcome]:
        if self._conn is None:
            try:
                self._conn = self._connect()
            except StoreError as exc:  # the file cannot be opened: the next batch tries again
                return [(future, False, StoreError(str(exc))) for _, _, future in batch]
            self._identity = self._file_identity()
            if self._checkpoint_connect is not None:
                self._start_checkpointer(self._conn)
        lost = self._lost or self._check_file()
        if lost is not None:
            return [(future, False, StoreError(str(lost))) for _, _, future in batch]
        conn = self._conn
        if not self._writes:
            return [self._run_one(conn, op, args, future) for op, args, future in batch]
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # another process held the write lock beyond busy_timeout
            return [(future, False, _store_error(self._path, exc)) for _, _, future in batch]
        try:
            return self._run_together(conn, batch)
        except Exception:
            # something failed that should not (an I/O error, a full disk, a refusal after a write):
            # nothing of the batch is committed, so run each operation alone to give each its own answer
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return [self._run_alone(conn, op, args, future) for op, args, future in batch]

    def _start_checkpointer(self, conn: sqlite3.Connection) -> None:
        """Leave copying the log into the file to a thread of its own, SQLite's own checkpoint in this
        connection kept as a backstop (see :mod:`durapod.stores._sqlite_checkpoint`)."""
        assert self._checkpoint_connect is not None
        other: sqlite3.Connection | None = None
        try:
            other = self._checkpoint_connect()
            conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
        except sqlite3.Error as exc:  # SQLite's own checkpoints go on as they would without the thread
            if other is not None:
                other.close()
            _log.warning("no background checkpoints for this store", path=self._path, error=repr(exc))
            return
        self.checkpointer = _Checkpointer(self._path, other)

    def _file_identity(self) -> tuple[int, int] | None:
        if self._file is None:
            return None
        try:
            found = os.stat(self._file)
        except OSError:
            return None
        return (found.st_dev, found.st_ino)

    def _check_file(self) -> StoreError | None:
        """The error to give every operation from now on if the file was deleted or replaced, else None."""
        if self._file is None or self._identity is None:
            return None
        now = self._file_identity()
        if now == self._identity:
            return None
        what = "deleted" if now is None else "replaced by another file"
        self._lost = StoreError(
            f"SQLite store {self._path!r}: the file {self._file!r} was {what} while the store had it open;"
            " nothing more is written (restore the file and open the store again)"
        )
        return self._lost

    def _run_one(
        self, conn: sqlite3.Connection, op: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any]
    ) -> _Outcome:
        try:
            return (future, True, op(conn, *args))
        except DurapodError as exc:
            return (future, False, exc)
        except Exception as exc:
            return (future, False, _store_error(self._path, exc))

    def _run_together(self, conn: sqlite3.Connection, batch: list[_Work]) -> list[_Outcome]:
        """Group commit: the whole batch in the transaction begun by the caller, committed once."""
        outcomes: list[_Outcome] = []
        for op, args, future in batch:
            changes = conn.total_changes
            try:
                outcomes.append((future, True, op(conn, *args)))
            except DurapodError as exc:
                if conn.total_changes != changes:
                    raise  # refused after writing: only a transaction of its own can undo it
                outcomes.append((future, False, exc))
        conn.execute("COMMIT")
        return outcomes

    def _run_alone(
        self, conn: sqlite3.Connection, op: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any]
    ) -> _Outcome:
        """One operation in a transaction of its own, rolled back unless it succeeds."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return (future, False, _store_error(self._path, exc))
        outcome = self._run_one(conn, op, args, future)
        try:
            conn.execute("COMMIT" if outcome[1] else "ROLLBACK")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return (future, False, _store_error(self._path, exc))
        return outcome

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
