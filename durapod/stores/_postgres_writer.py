"""PostgresStore's group commit: a writer task runs, in one transaction, the writes queued while its
previous batch was committing (one transaction and one WAL flush for all of them).

Within a batch the grouped writes of different jobs (creates, saves, step appends) run together, one
statement per kind; any other write runs alone, in its place, and a grouped write of a job already in
the group starts a new one after it. Writes queued together are concurrent, so any order of different
jobs' writes is one they could have had; one job's writes keep their order.

A write that refuses (a DurapodError raised before it wrote anything) does not undo the others. A
statement that fails (a deadlock, a lost connection) rolls the batch back: then each write runs again in
a transaction of its own, so that only its own caller gets its error. A cancelled caller does not cancel
its write (it may be committed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from durapod._util import cancel_and_wait
from durapod.errors import DurapodError, StoreError, StoreUnavailable
from durapod.stores._codec import _reason

if TYPE_CHECKING:
    import asyncpg

    _Connection = asyncpg.pool.PoolConnectionProxy[Any]

__all__ = ["_Grouped", "_Op", "_Outcome", "_Writer", "_unavailable"]

#: A write: runs inside the batch's transaction; refuses by raising a DurapodError before it writes.
_Op = Callable[["_Connection"], Awaitable[Any]]
#: A write's outcome in a batch: ``(True, its value)``, or ``(False, the DurapodError it refused with)``.
_Outcome = tuple[bool, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class _Grouped:
    """A write that runs in one statement with the other writes of its kind in the same batch.

    ``run(connection, items)`` writes every item (those it refuses write nothing) and returns one outcome
    per item, in order. It writes in its first statement only (what follows reads, or tidies up what no
    write of the batch depends on): so a batch that is one group needs no transaction of its own.
    """

    run: Callable[[_Connection, list[Any]], Awaitable[list[_Outcome]]]
    job_id: str
    item: Any


def _unavailable(exc: BaseException) -> bool:
    """True for an error that says the server cannot be reached (as opposed to a refused statement)."""
    import asyncpg

    if isinstance(exc, asyncpg.InterfaceError):  # also raised for misuse (a wrong argument count...)
        return "connection" in str(exc).lower() or "closed" in str(exc).lower()
    return isinstance(
        exc,
        OSError
        | asyncpg.ConnectionDoesNotExistError
        | asyncpg.CannotConnectNowError
        | asyncpg.TooManyConnectionsError
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError,
    )


def _driver_error(label: str, exc: Exception) -> StoreError:
    """The store's error for a failure of the driver: :class:`StoreUnavailable` if the server cannot be
    reached, else :class:`StoreError`, each naming the store (``label``)."""
    if _unavailable(exc):
        return StoreUnavailable(f"{label}: {_reason(exc)}")
    return StoreError(f"{label}: {_reason(exc)}")


class _Writer:
    """One group-committing writer. ``hold``: keep its connection from batch to batch (a pool's acquire
    and release cost round trips) rather than take one from the pool for each batch."""

    def __init__(self, open_pool: Callable[[], Awaitable[asyncpg.Pool[Any]]], label: str, *, hold: bool) -> None:
        self._open_pool = open_pool
        self._label = label
        self._hold = hold
        self._held: asyncpg.pool.PoolConnectionProxy[Any] | None = None
        self._queued: list[tuple[_Op | _Grouped, asyncio.Future[Any]]] = []
        self._queued_event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # done when the batch that will hold the queued writes (or the one being written) is committed:
        # a read waits for it, so that a process reads its own writes, cancelled callers' included
        self._queued_commit: asyncio.Future[None] | None = None
        self._writing_commit: asyncio.Future[None] | None = None
        self._closing = False
        self.batches = 0

    def write(self, op: _Op | _Grouped) -> asyncio.Future[Any]:
        """Queue a write; the future has its result once the batch holding it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((op, future))
        if self._queued_commit is None:
            self._queued_commit = loop.create_future()
        if self._queued_event is None:
            self._queued_event = asyncio.Event()
        self._queued_event.set()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._write_batches(), name=f"durapod-postgres-writer-{self._label}")
        return future

    def barrier(self) -> asyncio.Future[None] | None:
        """Done once every write queued so far is committed (None: nothing is queued or being written)."""
        return self._queued_commit or self._writing_commit

    async def close(self, pool: asyncpg.Pool[Any] | None) -> None:
        """Write what is queued (for up to 10 s), then stop and give the held connection back to ``pool``."""
        self._closing = True
        task = self._task
        if task is not None and not task.done():
            assert self._queued_event is not None
            self._queued_event.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), timeout=10)
            await cancel_and_wait(task)
        connection, self._held = self._held, None
        if connection is not None and pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.release(connection), timeout=5)

    async def _write_batches(self) -> None:
        assert self._queued_event is not None
        while True:
            if not self._queued:
                if self._closing:
                    return
                await self._queued_event.wait()
                self._queued_event.clear()
                continue
            batch, self._queued = self._queued, []
            commit, self._queued_commit = self._queued_commit, None
            self._writing_commit = commit
            self.batches += 1
            try:
                await self._run_batch(batch)
            finally:
                self._writing_commit = None
                if commit is not None and not commit.done():
                    commit.set_result(None)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy[Any]]:
        pool = await self._open_pool()
        if not self._hold:
            async with pool.acquire() as connection:
                yield connection
            return
        held = self._held
        if held is not None and held.is_closed():  # lost: its holder goes back to the pool
            self._held = None
            with contextlib.suppress(Exception):
                await pool.release(held)
            held = None
        if held is None:
            held = self._held = await pool.acquire()
        yield held

    async def _run_batch(self, batch: list[tuple[_Op | _Grouped, asyncio.Future[Any]]]) -> None:
        """Run ``batch`` in one transaction; after a failed statement, each write in one of its own."""
        ops = [op for op, _ in batch]
        try:
            async with self._connection() as connection:
                group = _one_group(ops)
                if group is not None:  # one statement writes it all: its own transaction, one round trip
                    outcomes = await group[0](connection, group[1])
                else:
                    async with connection.transaction():
                        outcomes = await self._run_writes(connection, ops)
        except asyncio.CancelledError:
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreError(f"{self._label} is closed"))
            raise
        except Exception as exc:
            if len(batch) > 1 and not isinstance(exc, DurapodError):
                for item in batch:
                    await self._run_batch([item])
                return
            error = exc if isinstance(exc, DurapodError) else _driver_error(self._label, exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (ok, value), (_, future) in zip(outcomes, batch, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    async def _run_writes(self, connection: _Connection, ops: Sequence[_Op | _Grouped]) -> list[_Outcome]:
        """Run ``ops`` in order, the grouped writes of different jobs together (see the module's docstring)."""
        outcomes: list[_Outcome] = [(False, None)] * len(ops)
        groups: dict[Callable[..., Any], list[tuple[int, Any]]] = {}
        jobs: set[str] = set()

        async def run_groups() -> None:
            for run, items in groups.items():
                results = await run(connection, [item for _, item in items])
                for (index, _), outcome in zip(items, results, strict=True):
                    outcomes[index] = outcome
            groups.clear()
            jobs.clear()

        for index, op in enumerate(ops):
            if isinstance(op, _Grouped):
                if op.job_id in jobs:
                    await run_groups()
                groups.setdefault(op.run, []).append((index, op.item))
                jobs.add(op.job_id)
                continue
            await run_groups()
            try:
                outcomes[index] = (True, await op(connection))
            except DurapodError as refused:  # raised before the op wrote: the others stand
                outcomes[index] = (False, refused)
        await run_groups()
        return outcomes


def _one_group(ops: Sequence[_Op | _Grouped]) -> tuple[Callable[..., Awaitable[list[_Outcome]]], list[Any]] | None:
    """The run and items of ``ops`` if they are grouped writes of one kind and of different jobs."""
    first = ops[0]
    if not isinstance(first, _Grouped):
        return None
    jobs: set[str] = set()
    for op in ops:
        if not isinstance(op, _Grouped) or op.run != first.run or op.job_id in jobs:
            return None
        jobs.add(op.job_id)
    return first.run, [op.item for op in ops if isinstance(op, _Grouped)]
