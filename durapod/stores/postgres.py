"""PostgresStore: the store contract in a PostgreSQL database (asyncpg), shared by any number of processes.

Tables live in their own schema (``durapod`` unless told), created and migrated on first use; the schema
version is kept in its ``migrations`` table (the migrations and every statement are in
:mod:`durapod.stores._postgres_sql`, the migration is run by :mod:`durapod.stores._postgres_schema` in the
pool :mod:`durapod.stores._postgres_pool` keeps). Each operation is atomic (claims lock the rows they take
with ``FOR UPDATE SKIP LOCKED``, so workers claiming at once never wait on each other or take one job twice).
The SQL each operation runs is in :mod:`durapod.stores._postgres_ops` (jobs, leases, journals, event logs)
and :mod:`durapod.stores._postgres_coordination` (control requests, worker ids, schedules); this module
holds the store itself.

Group commit (:mod:`durapod.stores._postgres_writer`): the writes a process queues while its previous batch
commits go together in one transaction; the creates, saves and step appends of different jobs in a batch
are written by one statement per kind (``unnest`` of arrays, :mod:`durapod.stores._postgres_grouped`), and
a batch that is one such group is that one statement alone, in one round trip.

Wake-ups (:mod:`durapod.stores._postgres_listen`): a write that makes a job claimable sends ``NOTIFY`` on
``<schema>_wake`` (payload: the agent) and a control request on ``<schema>_control``; ``serve()`` and the
lease keepers ``LISTEN`` on one held connection, so new work and cross-process pause/cancel land at once
instead of at the next poll.

A job's JSON record (its fields that differ from their defaults: ``_codec._job_json``) is the truth for
everything except the columns the store maintains (``owner``, ``lease_until``, ``epoch``, ``version``;
``steps`` is the journal's length, counted on read), as in the SQLite store. Times are integer microseconds
since the Unix epoch (UTC).

Event logs: the ``events`` table holds the appended events (``job_id, seq, record``); a journaled step whose
record (in ``steps``) has an ``event_seq`` gives the log its ``step`` event, derived when the log is read
(one query: the events and those steps, by ``seq``), never written to ``events``.

Expiry (:mod:`durapod.stores._postgres_expiry`): with ``ttl_seconds`` a job that becomes completed, failed
or cancelled is deleted with its journal, events and controls that many seconds later, by a delete that the
store runs at most every ``ttl_seconds / 10`` seconds (and at least every minute) as it writes. Seconds are
the runtime's clock's: a job ends at its ``updated_at``, and the delete's "now" is the latest end it writes.

Cancellation: a coroutine cancelled while it awaits a write may or may not have committed it, exactly as
with a lost reply; re-read the job (or retry the compare-and-set, which fails safely) to find out.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import JsonValue

from durapod.errors import JobNotFound, StaleOwnerError, StoreError, StoreUnavailable
from durapod.models import Job, JobStatus, StepRecord
from durapod.schedules import ScheduleState
from durapod.stores._codec import (
    _decode_job,
    _decode_schedule,
    _encode_json,
    _micros,
    _moment,
    _redact,
    _status_seq,
)
from durapod.stores._postgres_coordination import (
    _GET_SCHEDULE_SQL,
    _LIST_SCHEDULES_SQL,
    _LIST_WORKERS_SQL,
    _decode_controls,
    _op_delete_schedule,
    _op_register_worker,
    _op_renew_worker,
    _op_request_control,
    _op_save_schedule,
    _op_take_controls,
    _op_unregister_worker,
)
from durapod.stores._postgres_expiry import _Expiry
from durapod.stores._postgres_grouped import _event_columns, _GroupedWrites
from durapod.stores._postgres_listen import _Listener
from durapod.stores._postgres_ops import (
    _NEXT_WAKE_SQL,
    _READ_LOG_ALL_STEPS_SQL,
    _READ_LOG_SQL,
    _READ_STEPS_SQL,
    _decode_steps,
    _list_query,
    _merge_log,
    _op_append_events,
    _op_claim,
    _op_claim_orphans,
    _op_delete,
    _op_release,
    _op_renew_leases,
    _page,
)
from durapod.stores._postgres_pool import _PoolKeeper
from durapod.stores._postgres_schema import _Schema
from durapod.stores._postgres_sql import _CLAIMABLE, _JOB_COLUMNS
from durapod.stores._postgres_writer import _Grouped, _Op, _Writer
from durapod.stores.base import ControlRequest, Page, Store, WorkerRecord, control_kind, list_arguments

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PostgresStore"]


class PostgresStore(Store):
    """Jobs, journals, events, leases, schedules and control requests in PostgreSQL (``pip install
    durapod[postgres]``, which brings asyncpg).

    For teams that run Postgres already: any number of worker processes on any number of machines share
    one database. The schema's tables are created on the first operation.

    Args:
        dsn_or_pool: a connection URL (``postgresql://user:password@host:5432/db``) or an
            ``asyncpg.Pool`` that the caller owns (``close`` leaves it open).
        schema: the Postgres schema that holds durapod's tables (created if missing): lower-case letters,
            digits and ``_``, at most 41 characters.
        ttl_seconds: if set, a job that becomes completed, failed or cancelled is deleted (with its journal
            and events) that many seconds later, by the clock of the runtime that ended it.
        min_size: the fewest connections the store's own pool keeps open.
        max_size: the most connections the store's own pool opens. The store holds one of them for LISTEN
            and, when the pool (its own or the one passed) has three or more, one for its writes.

    Raises:
        ValueError: ``schema``, ``ttl_seconds`` or a pool size is not valid (naming the value).

    Example:
        >>> store = PostgresStore("postgresql://postgres@127.0.0.1:5432/app")
        >>> store
        PostgresStore('postgresql://postgres@127.0.0.1:5432/app', schema='durapod')
    """

    notifies: ClassVar[bool] = True

    def __init__(
        self,
        dsn_or_pool: str | asyncpg.Pool[Any],
        *,
        schema: str = "durapod",
        ttl_seconds: float | None = None,
        min_size: int = 2,
        max_size: int = 10,
    ) -> None:
        # each part checks its own settings (ValueError), in this order: schema, ttl_seconds, pool sizes
        self._schema = _Schema(schema)
        self._sql = self._schema.sql
        self._expiry = _Expiry(ttl_seconds, self._schema)
        where = dsn_or_pool if isinstance(dsn_or_pool, str) else "pool"
        self._repr = f"PostgresStore({_redact(where)!r}, schema={schema!r})"
        self._pools = _PoolKeeper(dsn_or_pool, self._schema, min_size=min_size, max_size=max_size, label=self._repr)
        # bound once: the writer groups the writes of one kind by these
        grouped = _GroupedWrites(self._schema, self._expiry)
        self._create_all = grouped.create_all
        self._save_all = grouped.save_all
        self._append_steps = grouped.append_steps
        self._closed = False
        self._listener = _Listener(self._schema.wake_channel, self._schema.control_channel)
        # group commit; the writer holds its connection while the pool has room for the listener's and a
        # read's besides
        pool_size = max_size if isinstance(dsn_or_pool, str) else dsn_or_pool.get_max_size()
        self._writer = _Writer(self._pools.open, self._repr, hold=pool_size >= 3)

    def __repr__(self) -> str:
        return self._repr

    @property
    def schema(self) -> str:
        """The Postgres schema that holds the store's tables."""
        return self._schema.name

    @property
    def ttl_seconds(self) -> float | None:
        """Seconds a completed, failed or cancelled job is kept (None: for ever)."""
        return self._expiry.ttl_seconds

    # -- plumbing --------------------------------------------------------------------------------------

    def _connection(self) -> contextlib.AbstractAsyncContextManager[asyncpg.pool.PoolConnectionProxy[Any]]:
        """A connection for a read, once the writes this process queued before it are committed."""
        return self._pools.connection(self._writer.barrier())

    @property
    def batches(self) -> int:
        """Transactions the store's writer has run so far (each commits the writes queued together)."""
        return self._writer.batches

    def _write(self, op: _Op | _Grouped) -> asyncio.Future[Any]:
        """Queue a write; the future has its result once the batch holding it is committed (see
        :mod:`durapod.stores._postgres_writer`)."""
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        return self._writer.write(op)

    # -- the Store protocol ----------------------------------------------------------------------------

    async def create(self, job: Job, *, status_seq: int | None = None) -> tuple[Job, bool]:
        """Insert ``job`` if no job has its id. With ``status_seq`` the statement that inserts it logs the
        ``job_status`` event at that ``seq``, wrapping the record it writes (the job is serialised and sent
        once); nothing is logged when the id exists.

        Returns:
            The stored job and True if it was created; the existing job and False otherwise.

        Raises:
            CorruptRecord: the existing job's record cannot be decoded.
            InvalidInput: ``status_seq`` is not an int; nothing is written.
        """
        status = _status_seq(job.id, status_seq)
        found: tuple[Job, bool] | None = await self._write(_Grouped(self._create_all, job.id, (job, status)))
        if found is None:  # deleted between the two statements
            return await self.create(job, status_seq=status)
        return found

    async def get(self, job_id: str) -> Job | None:
        """The job with that id, or None.

        Raises:
            CorruptRecord: its record cannot be decoded (``.key`` is the job id).
        """
        async with self._connection() as connection:
            row = await connection.fetchrow(self._sql(f"SELECT {_JOB_COLUMNS} FROM {{s}}.jobs WHERE id = $1"), job_id)
        return None if row is None else _decode_job(tuple(row))

    async def save(
        self,
        job: Job,
        *,
        expected_version: int,
        events: Sequence[Mapping[str, JsonValue]] = (),
        status_seq: int | None = None,
    ) -> Job:
        """Compare-and-set write of ``job``: only if the stored version is ``expected_version``.

        ``job.version`` must be ``expected_version + 1``. The stored lease and step count are kept as the
        store rules say (see :mod:`durapod.stores.base`). ``events`` are logged in the same statement, then
        with ``status_seq`` the ``job_status`` event at that ``seq``, which the statement makes by wrapping
        the record it writes (the job is serialised and sent once).

        Returns:
            The job as stored.

        Raises:
            JobNotFound: no job has that id.
            VersionConflict: the stored version is not ``expected_version``, or ``job.version`` is not
                one higher.
            InvalidInput: an event is not JSON or has no int ``seq``, or ``status_seq`` is not an int;
                nothing is written.
        """
        seqs, records = _event_columns(job.id, events)
        status = _status_seq(job.id, status_seq)
        lease_micros, steps = await self._write(
            _Grouped(self._save_all, job.id, (job, expected_version, seqs, records, status))
        )
        lease_until = None if lease_micros is None else _moment(lease_micros)
        if lease_until != job.lease_until or steps != job.steps:
            job = job.model_copy(update={"lease_until": lease_until, "steps": steps})
        return job

    async def list(
        self,
        *,
        status: Collection[JobStatus] | None = None,
        agent: str | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        """Jobs newest first (``created_at``, then id, descending), filtered, one page of ``limit``.

        Args:
            status: keep jobs in one of these statuses (a single status is accepted too).
            agent: keep jobs of this agent.
            metadata: keep jobs whose metadata has all these keys with equal values.
            limit: the page size (None: every matching job).
            cursor: a previous page's ``next_cursor``.

        Raises:
            ValueError: an invalid cursor, status or limit (naming it).
        A record that cannot be decoded is skipped and logged as a warning naming its job.
        """
        statuses, start = list_arguments(status, limit, cursor)
        query = _list_query(statuses, agent, start, metadata)
        if query is None:
            return Page([], None)
        sql, params = query
        prefetch = 200 if limit is None else min(limit + 1, 500)
        async with self._connection() as connection, connection.transaction(readonly=True):
            return await _page(connection.cursor(self._sql(sql), *params, prefetch=prefetch), limit, metadata)

    async def delete(self, job_id: str) -> bool:
        """Remove a job with its journal, events and control requests. True if it existed."""
        deleted = await self._write(_op_delete(self._sql, job_id))
        return bool(deleted)

    async def append_step(self, record: StepRecord, *, events: Sequence[Mapping[str, JsonValue]] = ()) -> None:
        """Journal one step, fenced: the job must be running with ``record.epoch`` and its journal must not
        hold ``record.index`` yet (the job's row is share-locked, so a concurrent claim waits or wins).
        ``events`` are logged in the same transaction, only if the step is journaled. A record with an
        ``event_seq`` gives the log its ``step`` event, derived from the journal by :meth:`read_events`
        (not logged twice).

        Raises:
            JobNotFound: no job has that id.
            StaleOwnerError: the job is not running with ``record.epoch``, or ``record.index`` is journaled.
        """

        seqs, records = _event_columns(record.job_id, events)
        found = await self._write(_Grouped(self._append_steps, record.job_id, (record, seqs, records)))
        if found is None:  # journaled
            return
        if found is False:
            raise JobNotFound(record.job_id)
        current_status, current_epoch = found
        if current_status != JobStatus.RUNNING:
            raise StaleOwnerError(record.job_id, record.epoch, current_epoch, f"job is {current_status}")
        if current_epoch != record.epoch:
            raise StaleOwnerError(record.job_id, record.epoch, current_epoch, "another worker claimed it")
        raise StaleOwnerError(record.job_id, record.epoch, current_epoch, f"step #{record.index} is journaled")

    async def read_steps(self, job_id: str) -> builtins.list[StepRecord]:
        """The job's journal, in order (empty for an unknown job).

        Raises:
            CorruptRecord: a step cannot be decoded (``.key`` is ``"<job id>/steps/<index>"``).
        """
        async with self._connection() as connection:
            rows = await connection.fetch(self._sql(_READ_STEPS_SQL), job_id)
        return _decode_steps(job_id, rows)

    async def append_events(
        self, job_id: str, events: Sequence[Mapping[str, JsonValue]], *, epoch: int | None = None
    ) -> None:
        """Append events (JSON objects, each with an int ``seq``) to the job's event log.

        An event whose ``seq`` is already logged for the job is ignored (the first one stays).

        Raises:
            InvalidInput: an event is not JSON or has no int ``seq``; nothing is written.
            StaleOwnerError: ``epoch`` was given and the job does not have it; nothing is written.
        """
        seqs, records = _event_columns(job_id, events)
        if not seqs:
            return
        await self._write(_op_append_events(self._sql, job_id, seqs, records, epoch))

    async def read_events(self, job_id: str, *, after: int = -1) -> builtins.list[dict[str, JsonValue]]:
        """The job's logged events whose ``seq`` is greater than ``after``, in ``seq`` order: those appended,
        merged with the ``step`` events of journaled steps with an ``event_seq`` (an appended event keeps
        its ``seq``).

        One query reads both: the events, and the steps whose record's ``event_seq`` (read by SQL's JSON
        functions) is above ``after``, the only ones decoded. If a step record is not JSON, a second query
        reads every step, to decode in Python and name the corrupt one.

        Raises:
            CorruptRecord: an event (``.key`` is ``"<job id>/events/<seq>"``) or a step (``.key`` is
                ``"<job id>/steps/<index>"``) cannot be decoded.
        """
        import asyncpg

        async with self._connection() as connection:
            try:
                rows = await connection.fetch(self._sql(_READ_LOG_SQL), job_id, after)
            except asyncpg.DataError:  # a step record that SQL cannot read: each is decoded in Python
                rows = await connection.fetch(self._sql(_READ_LOG_ALL_STEPS_SQL), job_id, after)
        return _merge_log(job_id, after, rows)

    async def claim(
        self, job_id: str, owner: str, *, lease_until: datetime, now: datetime, reclaim_own: bool = False
    ) -> Job | None:
        """Take the lease of a pending or running job whose lease is free (see :class:`Store`).

        Returns:
            The claimed job (``epoch`` and ``version`` one higher, one more recovery if it was running),
            or None if it is not claimable.

        Raises:
            CorruptRecord: the job's record cannot be decoded; nothing is written.
        """
        found: Job | None = await self._write(_op_claim(self._sql, job_id, owner, lease_until, now, reclaim_own))
        return found

    async def claim_orphans(
        self,
        agent: str | None,
        owner: str,
        *,
        lease_until: datetime,
        now: datetime,
        limit: int,
        reclaim_own: bool = False,
    ) -> builtins.list[Job]:
        """Claim up to ``limit`` claimable jobs (as :meth:`claim`) of ``agent`` (None: any agent), oldest first.

        Rows another worker is claiming at the same moment are skipped (``SKIP LOCKED``), not waited for. A
        job whose record cannot be decoded is skipped (it stays where it is), so that one bad record does
        not stop every worker from taking the others.
        """
        if limit <= 0:
            return []
        claimed: builtins.list[Job] = await self._write(
            _op_claim_orphans(self._sql, agent, owner, lease_until, now, limit, reclaim_own)
        )
        return claimed

    async def renew_leases(
        self, owner: str, job_ids: Collection[str], *, lease_until: datetime, now: datetime | None = None
    ) -> set[str]:
        """Extend the leases ``owner`` holds on ``job_ids``; returns the ids it still holds.

        Does not change ``version``. Jobs another worker claimed, settled jobs and unknown ids are left out.
        """
        if not job_ids:
            return set()
        held: builtins.list[str] = await self._write(_op_renew_leases(self._sql, owner, job_ids, lease_until))
        return set(held)

    async def next_wake(self, agent: str | None, *, now: datetime) -> datetime | None:
        """When the next sleeping job of ``agent`` (None: any) wakes; see :meth:`Store.next_wake`."""
        async with self._connection() as connection:
            wake = await connection.fetchval(self._sql(_NEXT_WAKE_SQL), _CLAIMABLE, _micros(now), agent)
        return None if wake is None else _moment(wake)

    async def release(self, job_id: str, owner: str) -> bool:
        """Clear ``owner``'s lease on the job so any worker may claim it. False if ``owner`` is not its owner."""
        released: bool = await self._write(_op_release(self._sql, self._schema.wake_channel, job_id, owner))
        return released

    async def request_control(self, request: ControlRequest) -> None:
        """Record a control request for the job's owner to act on, and wake the owners' lease keepers.

        Raises:
            JobNotFound: no job has that id.
            InvalidInput: the payload is not JSON.
        """
        kind = control_kind(request.kind, request.job_id)
        payload = _encode_json(request.payload, "control payload", request.job_id)
        await self._write(_op_request_control(self._sql, self._schema.control_channel, request, kind, payload))

    async def wait_for_control(self, timeout: float) -> None:
        """Wait until some process asks for a pause, resume or cancel (NOTIFY), or ``timeout`` seconds pass."""
        await self._wait("\x00control", timeout)

    async def wait_for_work(self, agent: str, timeout: float) -> None:
        """Wait until a job of ``agent`` (or of any agent, ``""``) may have become claimable, or ``timeout``.

        Woken by NOTIFY from the write that makes a job claimable (created, queued again, released), so an
        idle worker takes new work at once. An expired lease wakes nobody: the caller claims again after
        ``timeout``. Without LISTEN (a lost connection) it just waits ``timeout``.
        """
        await self._wait(agent, timeout)

    async def _wait(self, key: str, timeout: float) -> None:
        if timeout <= 0:
            await asyncio.sleep(0)
            return
        try:
            pool = await self._pools.open()
            event = await self._listener.watch(pool, key)
        except StoreUnavailable:
            event = None
        if event is None:
            await asyncio.sleep(timeout)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
        event.clear()

    async def take_controls(self, job_ids: Collection[str]) -> builtins.list[ControlRequest]:
        """Remove and return the control requests of ``job_ids``, oldest first."""
        if not job_ids:
            return []
        rows = await self._write(_op_take_controls(self._sql, job_ids))
        return _decode_controls(rows)

    async def register_worker(
        self,
        worker_id: str,
        token: str,
        *,
        info: str,
        lease_until: datetime,
        now: datetime,
        replace: str | None = None,
    ) -> str | None:
        """Claim ``worker_id`` for ``token`` (see :meth:`Store.register_worker`). Returns the live holder's
        info when refused, else None."""
        refused: str | None = await self._write(
            _op_register_worker(self._sql, worker_id, token, info, lease_until, now, replace)
        )
        return refused

    async def renew_worker(
        self, worker_id: str, token: str, *, lease_until: datetime, now: datetime | None = None
    ) -> bool:
        """Extend the claim ``token`` holds on ``worker_id``. False if it holds it no longer."""
        renewed = await self._write(_op_renew_worker(self._sql, worker_id, token, lease_until))
        return bool(renewed)

    async def unregister_worker(self, worker_id: str, token: str) -> None:
        """Let go of the claim ``token`` holds on ``worker_id``."""
        await self._write(_op_unregister_worker(self._sql, worker_id, token))

    async def list_workers(self, *, now: datetime) -> builtins.list[WorkerRecord]:
        """The worker ids registered with a lease that has not ended at ``now``, by id."""
        async with self._connection() as connection:
            rows = await connection.fetch(self._sql(_LIST_WORKERS_SQL), _micros(now))
        return [WorkerRecord(row[0], row[1], _moment(row[2])) for row in rows]

    async def get_schedule(self, agent: str, name: str) -> ScheduleState | None:
        """The schedule ``name`` of ``agent``, or None.

        Raises:
            CorruptRecord: its record cannot be decoded (``.key`` is ``"schedules/<agent>/<name>"``).
        """
        async with self._connection() as connection:
            record = await connection.fetchval(self._sql(_GET_SCHEDULE_SQL), agent, name)
        return None if record is None else _decode_schedule(agent, name, record)

    async def save_schedule(self, state: ScheduleState, *, expected_version: int | None) -> ScheduleState:
        """Compare-and-set write of a schedule.

        With ``expected_version`` None the schedule is created and must not exist; otherwise the stored
        one must have ``expected_version`` and ``state.version`` must be one higher.

        Returns:
            ``state``, as stored.

        Raises:
            VersionConflict: any of those does not hold (``.job_id`` is ``"schedule <agent>/<name>"``).
        """
        record = state.model_dump_json()
        saved: ScheduleState = await self._write(_op_save_schedule(self._sql, state, record, expected_version))
        return saved

    async def list_schedules(self, agent: str | None = None) -> builtins.list[ScheduleState]:
        """The schedules of ``agent`` (None: every agent), by agent and name."""
        async with self._connection() as connection:
            rows = await connection.fetch(self._sql(_LIST_SCHEDULES_SQL), agent)
        return [_decode_schedule(*row) for row in rows]

    async def delete_schedule(self, agent: str, name: str) -> bool:
        """Remove a schedule. True if it existed."""
        deleted = await self._write(_op_delete_schedule(self._sql, agent, name))
        return bool(deleted)

    async def drop_schema(self) -> None:
        """Drop the store's schema with every table and row in it (for tests and tear-downs)."""
        async with self._connection() as connection:
            await connection.execute(self._sql("DROP SCHEMA IF EXISTS {s} CASCADE"))

    async def close(self) -> None:
        """Close the store's own pool (a pool passed in stays open). Idempotent.

        Operations called after ``close`` raise :class:`StoreError`.
        """
        if self._closed:
            return
        self._closed = True
        self._pools.refuse()
        await self._writer.close(self._pools.pool)  # what is queued is written, then the writer ends
        await self._listener.close(self._pools.pool)
        await self._pools.close()
