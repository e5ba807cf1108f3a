"""PostgresStore: the store contract in a PostgreSQL database (asyncpg), shared by any number of processes.

Tables live in their own schema (``durapod`` unless told), created and migrated on first use; the schema
version is kept in its ``migrations`` table (the migrations and every statement are in
:mod:`durapod.stores._postgres_sql`). Each operation is atomic (claims lock the rows they take with
``FOR UPDATE SKIP LOCKED``, so workers claiming at once never wait on each other or take one job twice).

Group commit (:mod:`durapod.stores._postgres_writer`): the writes a process queues while its previous batch
commits go together in one transaction; the creates, saves and step appends of different jobs in a batch
are written by one statement per kind (``unnest`` of arrays), and a batch that is one such group is that
one statement alone, in one round trip.

Wake-ups (:mod:`durapod.stores._postgres_listen`): a write that makes a job claimable sends ``NOTIFY`` on
``<schema>_wake`` (payload: the agent) and a control request on ``<schema>_control``; ``serve()`` and the
lease keepers ``LISTEN`` on one held connection, so new work and cross-process pause/cancel land at once
instead of at the next poll.

A job's JSON record (``Job.model_dump_json()``) is the truth for everything except the columns the store
maintains (``owner``, ``lease_until``, ``epoch``, ``version``; ``steps`` is the journal's length, counted on
read), as in the SQLite store. Times are integer microseconds since the Unix epoch (UTC).

Expiry (:mod:`durapod.stores._postgres_expiry`): with ``ttl_seconds`` a job that becomes completed, failed
or cancelled is deleted with its journal, events and controls that many seconds later, by a delete that the
store runs at most every ``ttl_seconds / 10`` seconds (and at least every minute) as it writes.

Cancellation: a coroutine cancelled while it awaits a write may or may not have committed it, exactly as
with a lost reply; re-read the job (or retry the compare-and-set, which fails safely) to find out.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import math
import re
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

from pydantic import JsonValue

from durapod._log import get_logger
from durapod.errors import (
    CorruptRecord,
    DurapodError,
    JobNotFound,
    StaleOwnerError,
    StoreError,
    StoreUnavailable,
    VersionConflict,
)
from durapod.models import Job, JobStatus, StepRecord
from durapod.schedules import ScheduleState
from durapod.stores._codec import (
    _decode_event,
    _decode_job,
    _decode_schedule,
    _encode_json,
    _micros,
    _moment,
    _optional_micros,
    _reason,
    _redact,
)
from durapod.stores._postgres_expiry import _Expiry
from durapod.stores._postgres_grouped import _event_columns, _GroupedWrites
from durapod.stores._postgres_listen import _Listener
from durapod.stores._postgres_pool import _PoolKeeper
from durapod.stores._postgres_schema import _Schema
from durapod.stores._postgres_sql import (
    _CLAIMABLE,
    _CLAIMABLE_SQL,
    _INSERT_EVENTS_SQL,
    _JOB_COLUMNS,
    _WRITE_CLAIM_SQL,
)
from durapod.stores._postgres_writer import _Grouped, _Op, _unavailable, _Writer
from durapod.stores.base import (
    ControlRequest,
    Page,
    Store,
    claimed_job,
    control_kind,
    encode_cursor,
    list_arguments,
    matches,
)

if TYPE_CHECKING:
    import asyncpg

    _Connection = asyncpg.pool.PoolConnectionProxy[Any]

T = TypeVar("T")
__all__ = ["PostgresStore"]

_log = get_logger("durapod.stores.postgres")
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,40}")
_PLAIN_TEXT: Final = re.compile(r"[A-Za-z0-9_\-.:@ ]+")  # written as it is in a JSON record


def _claim_row(job: Job) -> tuple[Any, ...]:
    return (job.id, job.owner, _optional_micros(job.lease_until), job.epoch, job.version, job.model_dump_json())


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
            and events) that many seconds later.
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
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"invalid schema {schema!r}: expected [a-z_][a-z0-9_]*, at most 41 characters")
        if ttl_seconds is not None and (
            isinstance(ttl_seconds, bool)
            or not isinstance(ttl_seconds, int | float)
            or not math.isfinite(ttl_seconds)
            or ttl_seconds < 0.001
        ):
            raise ValueError(f"invalid ttl_seconds {ttl_seconds!r}: expected None or seconds >= 0.001")
        for name, size in (("min_size", min_size), ("max_size", max_size)):
            # one connection of the store's own pool is held for LISTEN: writes and reads need another
            least = 0 if name == "min_size" else 2
            if isinstance(size, bool) or not isinstance(size, int) or size < least:
                raise ValueError(f"invalid {name} {size!r}: expected an int >= {least}")
        if min_size > max_size:
            raise ValueError(f"invalid min_size {min_size!r}: more than max_size {max_size!r}")
        where = dsn_or_pool if isinstance(dsn_or_pool, str) else "pool"
        self._repr = f"PostgresStore({_redact(where)!r}, schema={schema!r})"
        self._schema = _Schema(schema)
        self._sql = self._schema.sql
        self._pools = _PoolKeeper(dsn_or_pool, self._schema, min_size=min_size, max_size=max_size, label=self._repr)
        self._expiry = _Expiry(ttl_seconds, self._schema)
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

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy[Any]]:
        """A connection for a read, once the writes this process queued before it are committed."""
        barrier = self._writer.barrier()
        if barrier is not None:
            await asyncio.shield(barrier)
        pool = await self._pools.open()
        try:
            async with pool.acquire() as connection:
                yield connection
        except DurapodError:
            raise
        except Exception as exc:
            if _unavailable(exc):
                raise StoreUnavailable(f"{self!r}: {_reason(exc)}") from exc
            raise StoreError(f"{self!r}: {_reason(exc)}") from exc

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

    async def create(self, job: Job) -> tuple[Job, bool]:
        """Insert ``job`` if no job has its id.

        Returns:
            The stored job and True if it was created; the existing job and False otherwise.

        Raises:
            CorruptRecord: the existing job's record cannot be decoded.
        """
        found: tuple[Job, bool] | None = await self._write(_Grouped(self._create_all, job.id, job))
        if found is None:  # deleted between the two statements
            return await self.create(job)
        return found

    async def get(self, job_id: str) -> Job | None:
        """The job with that id, or None.

        Raises:
            CorruptRecord: its record cannot be decoded (``.key`` is the job id).
        """
        async with self._connection() as connection:
            row = await connection.fetchrow(self._sql(f"SELECT {_JOB_COLUMNS} FROM {{s}}.jobs WHERE id = $1"), job_id)
        return None if row is None else _decode_job(tuple(row))

    async def save(self, job: Job, *, expected_version: int, events: Sequence[Mapping[str, JsonValue]] = ()) -> Job:
        """Compare-and-set write of ``job``: only if the stored version is ``expected_version``.

        ``job.version`` must be ``expected_version + 1``. The stored lease and step count are kept as the
        store rules say (see :mod:`durapod.stores.base`). ``events`` are logged in the same statement.

        Returns:
            The job as stored.

        Raises:
            JobNotFound: no job has that id.
            VersionConflict: the stored version is not ``expected_version``, or ``job.version`` is not
                one higher.
        """
        seqs, records = _event_columns(job.id, events)
        lease_micros, steps = await self._write(
            _Grouped(self._save_all, job.id, (job, expected_version, seqs, records))
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
        where: builtins.list[str] = []
        params: builtins.list[Any] = []
        if statuses is not None:
            if not statuses:
                return Page([], None)
            params.append(statuses)
            where.append(f"status = ANY(${len(params)}::text[])")
        if agent is not None:
            params.append(agent)
            where.append(f"agent = ${len(params)}")
        if start is not None:
            params.extend((_micros(start[0]), start[1]))
            where.append(f"(created_at, id) < (${len(params) - 1}, ${len(params)})")
        for value in (metadata or {}).values():
            # narrows the scan to records holding the value's text; ``matches`` below decides
            if isinstance(value, str) and _PLAIN_TEXT.fullmatch(value):
                params.append(value)
                where.append(f"strpos(record, ${len(params)}) > 0")
        sql = f"SELECT {_JOB_COLUMNS} FROM {{s}}.jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC"
        found: builtins.list[Job] = []
        prefetch = 200 if limit is None else min(limit + 1, 500)
        async with self._connection() as connection, connection.transaction(readonly=True):
            async for row in connection.cursor(self._sql(sql), *params, prefetch=prefetch):
                try:
                    job = _decode_job(tuple(row))
                except CorruptRecord as exc:  # one bad record never hides the others
                    _log.warning("corrupt job record skipped in a listing", job_id=row[0], error=str(exc))
                    continue
                if metadata and not matches(job, None, None, metadata):
                    continue
                found.append(job)
                if limit is not None and len(found) > limit:
                    page = found[:limit]
                    return Page(page, encode_cursor(page[-1]) if page else None)
        return Page(found, None)

    async def delete(self, job_id: str) -> bool:
        """Remove a job with its journal, events and control requests. True if it existed."""

        async def op(connection: _Connection) -> Any:
            for table in ("steps", "events", "controls"):
                await connection.execute(self._sql(f"DELETE FROM {{s}}.{table} WHERE job_id = $1"), job_id)
            return await connection.fetchval(self._sql("DELETE FROM {s}.jobs WHERE id = $1 RETURNING true"), job_id)

        deleted = await self._write(op)
        return bool(deleted)

    async def append_step(self, record: StepRecord, *, events: Sequence[Mapping[str, JsonValue]] = ()) -> None:
        """Journal one step, fenced: the job must be running with ``record.epoch`` and its journal must not
        hold ``record.index`` yet (the job's row is share-locked, so a concurrent claim waits or wins).
        ``events`` are logged in the same transaction, only if the step is journaled.

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
            rows = await connection.fetch(
                self._sql("SELECT idx, record FROM {s}.steps WHERE job_id = $1 ORDER BY idx"), job_id
            )
        steps: builtins.list[StepRecord] = []
        for index, record in rows:
            try:
                steps.append(StepRecord.model_validate_json(record))
            except (ValueError, TypeError) as exc:
                raise CorruptRecord(f"{job_id}/steps/{index}", _reason(exc)) from None
        return steps

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

        async def op(connection: _Connection) -> Any:
            if epoch is not None:  # fenced: only the job's current owner adds to its log
                current = await connection.fetchval(
                    self._sql("SELECT epoch FROM {s}.jobs WHERE id = $1 FOR SHARE"), job_id
                )
                if current != epoch:
                    raise StaleOwnerError(job_id, epoch, current, "event log")
            await connection.execute(self._sql(_INSERT_EVENTS_SQL), job_id, seqs, records)

        await self._write(op)

    async def read_events(self, job_id: str, *, after: int = -1) -> builtins.list[dict[str, JsonValue]]:
        """The job's logged events whose ``seq`` is greater than ``after``, in ``seq`` order."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                self._sql("SELECT seq, record FROM {s}.events WHERE job_id = $1 AND seq > $2 ORDER BY seq"),
                job_id,
                after,
            )
        events: builtins.list[dict[str, JsonValue]] = []
        for seq, record in rows:
            events.append(_decode_event(job_id, seq, record))
        return events

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

        async def op(connection: _Connection) -> Any:
            row = await connection.fetchrow(
                self._sql(f"SELECT {_JOB_COLUMNS} FROM {{s}}.jobs WHERE id = $1 AND {_CLAIMABLE_SQL} FOR UPDATE"),
                job_id,
                _CLAIMABLE,
                _micros(now),
                reclaim_own,
                owner,
            )
            if row is None:
                return None
            claimed = claimed_job(_decode_job(tuple(row)), owner, lease_until, now)
            await connection.execute(self._sql(_WRITE_CLAIM_SQL), *_claim_row(claimed))
            return claimed

        found: Job | None = await self._write(op)
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

        async def op(connection: _Connection) -> Any:
            claimed: builtins.list[Job] = []
            rows = await connection.fetch(
                self._sql(
                    f"SELECT {_JOB_COLUMNS} FROM {{s}}.jobs WHERE {_CLAIMABLE_SQL}"
                    " AND ($1::text IS NULL OR agent = $1) ORDER BY created_at, id LIMIT $6 FOR UPDATE SKIP LOCKED"
                ),
                agent,
                _CLAIMABLE,
                _micros(now),
                reclaim_own,
                owner,
                limit,
            )
            for row in rows:
                try:
                    job = _decode_job(tuple(row))
                except CorruptRecord as exc:  # one undecodable job must not stop every worker
                    _log.warning("corrupt job skipped by claim", job_id=row[0], error=str(exc))
                    continue
                claimed.append(claimed_job(job, owner, lease_until, now))
            if claimed:
                await connection.executemany(self._sql(_WRITE_CLAIM_SQL), [_claim_row(job) for job in claimed])
            return claimed

        claimed: builtins.list[Job] = await self._write(op)
        return claimed

    async def renew_leases(
        self, owner: str, job_ids: Collection[str], *, lease_until: datetime, now: datetime | None = None
    ) -> set[str]:
        """Extend the leases ``owner`` holds on ``job_ids``; returns the ids it still holds.

        Does not change ``version``. Jobs another worker claimed, settled jobs and unknown ids are left out.
        """
        if not job_ids:
            return set()

        async def op(connection: _Connection) -> Any:
            rows = await connection.fetch(
                self._sql(
                    "UPDATE {s}.jobs SET lease_until = $1 WHERE owner = $2 AND status = ANY($3::text[])"
                    " AND id = ANY($4::text[]) RETURNING id"
                ),
                _micros(lease_until),
                owner,
                _CLAIMABLE,
                builtins.list(job_ids),
            )
            return [row[0] for row in rows]

        held: builtins.list[str] = await self._write(op)
        return set(held)

    async def next_wake(self, agent: str | None, *, now: datetime) -> datetime | None:
        """When the next sleeping job of ``agent`` (None: any) wakes; see :meth:`Store.next_wake`."""
        async with self._connection() as connection:
            wake = await connection.fetchval(
                self._sql(
                    "SELECT min(lease_until) FROM {s}.jobs WHERE status = ANY($1::text[]) AND owner IS NULL"
                    " AND lease_until >= $2 AND ($3::text IS NULL OR agent = $3)"
                ),
                _CLAIMABLE,
                _micros(now),
                agent,
            )
        return None if wake is None else _moment(wake)

    async def release(self, job_id: str, owner: str) -> bool:
        """Clear ``owner``'s lease on the job so any worker may claim it. False if ``owner`` is not its owner."""

        async def op(connection: _Connection) -> Any:
            agent = await connection.fetchval(
                self._sql("UPDATE {s}.jobs SET lease_until = NULL WHERE id = $1 AND owner = $2 RETURNING agent"),
                job_id,
                owner,
            )
            if agent is None:
                return False
            await connection.execute("SELECT pg_notify($1, $2)", self._schema.wake_channel, agent)
            return True

        released: bool = await self._write(op)
        return released

    async def request_control(self, request: ControlRequest) -> None:
        """Record a control request for the job's owner to act on, and wake the owners' lease keepers.

        Raises:
            JobNotFound: no job has that id.
            InvalidInput: the payload is not JSON.
        """
        kind = control_kind(request.kind, request.job_id)
        payload = _encode_json(request.payload, "control payload", request.job_id)

        async def op(connection: _Connection) -> Any:
            inserted = await connection.fetchval(
                self._sql(
                    "INSERT INTO {s}.controls (job_id, kind, payload, requested_at)"
                    " SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM {s}.jobs WHERE id = $1) RETURNING true"
                ),
                request.job_id,
                str(kind.value),
                payload,
                _micros(request.requested_at),
            )
            if not inserted:
                raise JobNotFound(request.job_id)
            await connection.execute("SELECT pg_notify($1, $2)", self._schema.control_channel, request.job_id)

        await self._write(op)

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

        async def op(connection: _Connection) -> Any:
            rows = await connection.fetch(
                self._sql(
                    "DELETE FROM {s}.controls WHERE job_id = ANY($1::text[])"
                    " RETURNING id, job_id, kind, payload, requested_at"
                ),
                builtins.list(job_ids),
            )
            return [tuple(row) for row in rows]

        rows = await self._write(op)
        taken: builtins.list[tuple[int, int, ControlRequest]] = []
        for control_id, job_id, kind, payload, requested_at in rows:
            try:
                decoded = json.loads(payload)
            except (ValueError, TypeError) as exc:
                _log.warning("control request ignored", job_id=job_id, kind=kind, error=_reason(exc))
                continue
            try:
                taken.append((requested_at, control_id, ControlRequest(job_id, kind, _moment(requested_at), decoded)))
            except ValueError as exc:  # garbage in the table: dropped, and said so
                _log.warning("control request ignored", job_id=job_id, kind=kind, error=str(exc))
        taken.sort(key=lambda item: (item[0], item[1]))
        return [request for _, _, request in taken]

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

        async def op(connection: _Connection) -> Any:
            taken = await connection.fetchval(
                self._sql(
                    "INSERT INTO {s}.workers (id, token, info, lease_until) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (id) DO UPDATE SET token = $2, info = $3, lease_until = $4"
                    " WHERE workers.token = $2 OR workers.lease_until < $5"
                    " OR workers.token IS NOT DISTINCT FROM $6::text RETURNING true"
                ),
                worker_id,
                token,
                info,
                _micros(lease_until),
                _micros(now),
                replace,
            )
            if taken:
                return None
            holder = await connection.fetchval(self._sql("SELECT info FROM {s}.workers WHERE id = $1"), worker_id)
            return "" if holder is None else str(holder)

        refused: str | None = await self._write(op)
        return refused

    async def renew_worker(
        self, worker_id: str, token: str, *, lease_until: datetime, now: datetime | None = None
    ) -> bool:
        """Extend the claim ``token`` holds on ``worker_id``. False if it holds it no longer."""

        async def op(connection: _Connection) -> Any:
            return await connection.fetchval(
                self._sql("UPDATE {s}.workers SET lease_until = $3 WHERE id = $1 AND token = $2 RETURNING true"),
                worker_id,
                token,
                _micros(lease_until),
            )

        renewed = await self._write(op)
        return bool(renewed)

    async def unregister_worker(self, worker_id: str, token: str) -> None:
        """Let go of the claim ``token`` holds on ``worker_id``."""

        async def op(connection: _Connection) -> Any:
            await connection.execute(
                self._sql("DELETE FROM {s}.workers WHERE id = $1 AND token = $2"), worker_id, token
            )

        await self._write(op)

    async def get_schedule(self, agent: str, name: str) -> ScheduleState | None:
        """The schedule ``name`` of ``agent``, or None.

        Raises:
            CorruptRecord: its record cannot be decoded (``.key`` is ``"schedules/<agent>/<name>"``).
        """
        async with self._connection() as connection:
            record = await connection.fetchval(
                self._sql("SELECT record FROM {s}.schedules WHERE agent = $1 AND name = $2"), agent, name
            )
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

        async def op(connection: _Connection) -> Any:
            if expected_version is None:
                written = await connection.fetchval(
                    self._sql(
                        "INSERT INTO {s}.schedules (agent, name, version, record) VALUES ($1, $2, $3, $4)"
                        " ON CONFLICT DO NOTHING RETURNING true"
                    ),
                    state.agent,
                    state.name,
                    state.version,
                    record,
                )
            elif state.version == expected_version + 1:
                written = await connection.fetchval(
                    self._sql(
                        "UPDATE {s}.schedules SET version = $3, record = $4 WHERE agent = $1 AND name = $2"
                        " AND version = $5 RETURNING true"
                    ),
                    state.agent,
                    state.name,
                    state.version,
                    record,
                    expected_version,
                )
            else:
                written = None
            if written:
                return state
            found = await connection.fetchval(
                self._sql("SELECT version FROM {s}.schedules WHERE agent = $1 AND name = $2"), state.agent, state.name
            )
            raise VersionConflict(
                f"schedule {state.agent}/{state.name}", 0 if expected_version is None else expected_version, found
            )

        saved: ScheduleState = await self._write(op)
        return saved

    async def list_schedules(self, agent: str | None = None) -> builtins.list[ScheduleState]:
        """The schedules of ``agent`` (None: every agent), by agent and name."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                self._sql(
                    "SELECT agent, name, record FROM {s}.schedules WHERE $1::text IS NULL OR agent = $1"
                    " ORDER BY agent, name"
                ),
                agent,
            )
        return [_decode_schedule(*row) for row in rows]

    async def delete_schedule(self, agent: str, name: str) -> bool:
        """Remove a schedule. True if it existed."""

        async def op(connection: _Connection) -> Any:
            return await connection.fetchval(
                self._sql("DELETE FROM {s}.schedules WHERE agent = $1 AND name = $2 RETURNING true"), agent, name
            )

        deleted = await self._write(op)
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
