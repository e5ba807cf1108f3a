"""SQLiteStore: the store contract in one SQLite file, with group commit across jobs.

Writes are group-committed by a writer thread and reads batched on a reader thread
(:mod:`durapod.stores._sqlite_worker`), to which :mod:`durapod.stores._sqlite_queue` queues each
operation; no sqlite call ever runs on the event loop. A third thread copies the write-ahead log into the
file (:mod:`durapod.stores._sqlite_checkpoint`), so that no write waits for that copy and its fsyncs. The
file's tables, migrations and connection setup
are in :mod:`durapod.stores._sqlite_schema`, how a job is encoded in its row in
:mod:`durapod.stores._codec`, and the SQL each operation runs in :mod:`durapod.stores._sqlite_ops`.

Durability: with ``durability="normal"`` (WAL, ``synchronous=NORMAL``) a committed write survives a
process crash; ``"full"`` (``synchronous=FULL``) also survives power loss, at the price of an fsync per
batch. Several processes on one host may share the file: every check (version, epoch, lease, journal
length) is made inside the writing transaction, so it holds across processes.

Cancellation: a coroutine cancelled while it awaits a write does not cancel the write. The write may
have been committed or not; the caller cannot tell, exactly as with a lost reply from a server. Re-read
the job (or retry the compare-and-set, which fails safely) to find out.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import json
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import JsonValue

from durapod.models import Job, JobStatus, StepRecord
from durapod.schedules import ScheduleState
from durapod.stores._codec import (
    _create_columns,
    _encode_events,
    _encode_json,
    _job_json,
    _micros,
    _moment,
    _record_json,
    _save_columns,
    _status_seq,
)

# the operations are looked up here, by name, when a method runs (so a test can patch one in this module)
from durapod.stores._sqlite_ops import (
    _op_append_events,
    _op_append_step,
    _op_claim,
    _op_claim_orphans,
    _op_create,
    _op_delete,
    _op_delete_schedule,
    _op_get,
    _op_get_schedule,
    _op_has_controls,
    _op_list,
    _op_list_schedules,
    _op_list_workers,
    _op_next_wake,
    _op_read_events,
    _op_read_steps,
    _op_register_worker,
    _op_release,
    _op_renew_leases,
    _op_renew_worker,
    _op_request_control,
    _op_save,
    _op_save_schedule,
    _op_take_controls,
    _op_unregister_worker,
)
from durapod.stores._sqlite_queue import _Dispatcher
from durapod.stores._sqlite_schema import _connect_for_checkpoints, _IntegrityCheck, _open
from durapod.stores.base import (
    ControlRequest,
    Page,
    Store,
    WorkerRecord,
    control_kind,
    encode_cursor,
    list_arguments,
)

__all__ = ["SQLiteStore"]

T = TypeVar("T")


class SQLiteStore(Store):
    """Jobs, journals, events, leases and control requests in one SQLite file (WAL mode).

    The embedded default for anything that must survive a restart. Writes from many coroutines are
    committed together (group commit): each caller continues once its own write is committed. Several
    processes on one host may share the file. Threads start on the first operation; the file is created
    (or its schema checked) then, so a bad path fails the first operation with :class:`StoreError`.

    Args:
        path: the database file (created if missing). ``":memory:"`` keeps everything in memory.
        durability: ``"normal"`` (``synchronous=NORMAL``: committed writes survive a process crash) or
            ``"full"`` (``synchronous=FULL``: they also survive power loss; an fsync per commit).
        busy_timeout: seconds to wait for another process's write lock before
            :class:`StoreUnavailable`.

    Raises:
        ValueError: ``durability`` or ``busy_timeout`` is not valid (naming the value).

    Example:
        >>> store = SQLiteStore("jobs.db")
        >>> store
        SQLiteStore('jobs.db')
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Literal["normal", "full"] = "normal",
        busy_timeout: float = 30.0,
    ) -> None:
        if durability not in ("normal", "full"):
            raise ValueError(f"invalid durability {durability!r}: expected 'normal' or 'full'")
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float) or not 0 <= busy_timeout < 1e9:
            raise ValueError(f"invalid busy_timeout {busy_timeout!r}: expected seconds >= 0")
        self._path = os.fspath(path)
        in_memory = self._path in (":memory:", "")
        file = self._path if in_memory else os.path.abspath(self._path)
        synchronous = "FULL" if durability == "full" else "NORMAL"
        self._durability = durability
        connect = functools.partial(_open, self._path, file, synchronous, float(busy_timeout), _IntegrityCheck())
        # the threads and the queueing of operations (it must not hold the store: see _Dispatcher)
        self._dispatcher = _Dispatcher(
            repr(self),
            self._path,
            connect,
            # an in-memory database lives in one connection: reads go to the writer too
            shares_connection=in_memory,
            file=None if in_memory else file,
            # the log is copied into the file by a thread of its own, not by whichever write fills it
            checkpoint_connect=None
            if in_memory
            else functools.partial(
                _connect_for_checkpoints, file, synchronous=synchronous, busy_timeout=float(busy_timeout)
            ),
        )

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r})"

    @property
    def path(self) -> str:
        """The database file, as given."""
        return self._path

    @property
    def durability(self) -> Literal["normal", "full"]:
        """``"normal"`` or ``"full"`` (see the class docstring)."""
        return self._durability

    # -- plumbing ------------------------------------------------------------------------------------

    def _write(self, op: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return self._dispatcher.submit(False, op, args)

    def _read(self, op: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return self._dispatcher.submit(True, op, args)

    # -- the Store protocol ----------------------------------------------------------------------------

    async def create(self, job: Job, *, status_seq: int | None = None) -> tuple[Job, bool]:
        """Insert ``job`` if no job has its id (with ``status_seq``, and its ``job_status`` event: see
        :meth:`Store.create`).

        Returns:
            The stored job and True if it was created; the existing job and False otherwise.

        Raises:
            CorruptRecord: the existing job's record cannot be decoded.
        """
        # the journal's length is the truth for ``steps``, and a new job's journal is empty
        values = (*_create_columns(job), 0, _job_json(job), _status_seq(job.id, status_seq))
        existing = await self._write(_op_create, values)
        return (job, True) if existing is None else (existing, False)

    async def get(self, job_id: str) -> Job | None:
        """The job with that id, or None.

        Raises:
            CorruptRecord: its record cannot be decoded (``.key`` is the job id).
        """
        return await self._read(_op_get, job_id)

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
        store rules say (see :mod:`durapod.stores.base`). ``events`` are logged in the same transaction,
        then with ``status_seq`` a ``job_status`` event made of the record written (not serialised again).

        Returns:
            The job as stored.

        Raises:
            JobNotFound: no job has that id.
            VersionConflict: the stored version is not ``expected_version``, or ``job.version`` is not
                one higher.
        """
        values = (*_save_columns(job, expected_version), _status_seq(job.id, status_seq))
        rows = self._event_rows(job.id, events) if events else None
        lease_micros, steps = await self._write(_op_save, values, rows)
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

        A record that cannot be decoded is skipped and logged (a warning naming the job): one bad record
        never hides the others, and :meth:`get` reports it with :class:`CorruptRecord`.

        Raises:
            ValueError: an invalid cursor, status or limit (naming it).
        """
        statuses, start = list_arguments(status, limit, cursor)
        if statuses == []:
            return Page([], None)
        after = None if start is None else (_micros(start[0]), start[1])
        listed = tuple(statuses) if statuses is not None else None
        jobs, has_more = await self._read(_op_list, listed, agent, dict(metadata) if metadata else None, limit, after)
        return Page(jobs, encode_cursor(jobs[-1]) if has_more and jobs else None)

    async def delete(self, job_id: str) -> bool:
        """Remove a job with its journal, events and control requests. True if it existed."""
        return await self._write(_op_delete, job_id)

    async def append_step(self, record: StepRecord, *, events: Sequence[Mapping[str, JsonValue]] = ()) -> None:
        """Journal one step, fenced: the job must be running with ``record.epoch`` and its journal must not
        hold ``record.index`` yet. Counts it in the job's ``steps`` without changing its version.

        Raises:
            JobNotFound: no job has that id.
            StaleOwnerError: the job is not running with ``record.epoch``, or ``record.index`` is journaled.
        """
        rows = self._event_rows(record.job_id, events) if events else None
        await self._write(_op_append_step, record.job_id, record.index, record.epoch, _record_json(record), rows)

    async def read_steps(self, job_id: str) -> builtins.list[StepRecord]:
        """The job's journal, in order (empty for an unknown job).

        Raises:
            CorruptRecord: a step cannot be decoded (``.key`` is ``"<job id>/steps/<index>"``).
        """
        return await self._read(_op_read_steps, job_id)

    async def append_events(
        self, job_id: str, events: Sequence[Mapping[str, JsonValue]], *, epoch: int | None = None
    ) -> None:
        """Append events (JSON objects, each with an int ``seq``) to the job's event log.

        An event whose ``seq`` is already logged for the job is ignored (the first one stays).

        Raises:
            InvalidInput: an event is not JSON or has no int ``seq``; nothing is written.
            StaleOwnerError: ``epoch`` was given and the job does not have it; nothing is written.
        """
        rows = self._event_rows(job_id, events)
        if rows:
            await self._write(_op_append_events, rows, job_id, epoch)

    @staticmethod
    def _event_rows(job_id: str, events: Sequence[Mapping[str, JsonValue]]) -> builtins.list[tuple[str, int, str]]:
        return [(job_id, seq, text) for seq, text in _encode_events(job_id, events)]

    async def read_events(self, job_id: str, *, after: int = -1) -> builtins.list[dict[str, JsonValue]]:
        """The job's logged events whose ``seq`` is greater than ``after``, in ``seq`` order, with the step
        events derived from its journal (see :meth:`Store.read_events`).

        Raises:
            CorruptRecord: an event or a step cannot be decoded (``.key`` names it).
        """
        return await self._read(_op_read_events, job_id, after)

    async def claim(
        self, job_id: str, owner: str, *, lease_until: datetime, now: datetime, reclaim_own: bool = False
    ) -> Job | None:
        """Take the lease of a pending or running job whose lease is free (see :class:`Store`).

        The lease is free when its ``lease_until`` is None or before ``now`` (a job with no owner but a
        ``lease_until``, one asleep in ``ctx.sleep``, is free from then); with
        ``reclaim_own`` also when ``owner`` holds it already.

        Returns:
            The claimed job (``epoch`` and ``version`` one higher, one more recovery if it was running),
            or None if it is not claimable.

        Raises:
            CorruptRecord: the job's record cannot be decoded; nothing is written.
        """
        return await self._write(_op_claim, job_id, owner, lease_until, _micros(now), reclaim_own)

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

        A job whose record cannot be decoded is skipped (it stays where it is), so that one bad record
        does not stop every worker from taking the others.
        """
        if limit <= 0:
            return []
        return await self._write(_op_claim_orphans, agent, owner, lease_until, _micros(now), limit, reclaim_own)

    async def renew_leases(
        self, owner: str, job_ids: Collection[str], *, lease_until: datetime, now: datetime | None = None
    ) -> set[str]:
        """Extend the leases ``owner`` holds on ``job_ids``; returns the ids it still holds.

        Does not change ``version``. Jobs another worker claimed, settled jobs and unknown ids are left
        out.
        """
        if not job_ids:
            return set()
        return await self._write(_op_renew_leases, owner, json.dumps(list(job_ids)), _micros(lease_until))

    async def next_wake(self, agent: str | None, *, now: datetime) -> datetime | None:
        """When the next sleeping job of ``agent`` (None: any) wakes; see :meth:`Store.next_wake`."""
        wake = await self._read(_op_next_wake, agent, _micros(now))
        return None if wake is None else _moment(wake)

    async def release(self, job_id: str, owner: str) -> bool:
        """Clear ``owner``'s lease on the job so any worker may claim it. False if ``owner`` is not its owner."""
        return await self._write(_op_release, job_id, owner)

    async def request_control(self, request: ControlRequest) -> None:
        """Record a control request for the job's owner to act on.

        Raises:
            JobNotFound: no job has that id.
            InvalidInput: the payload is not JSON.
            ValueError: the request's kind is not a :class:`ControlKind`; nothing is written.
        """
        payload = _encode_json(request.payload, "control payload", request.job_id)
        kind = control_kind(request.kind, request.job_id).value
        await self._write(_op_request_control, request.job_id, kind, payload, _micros(request.requested_at))

    async def take_controls(self, job_ids: Collection[str]) -> builtins.list[ControlRequest]:
        """Remove and return the control requests of ``job_ids``, oldest first."""
        if not job_ids:
            return []
        ids = json.dumps(list(job_ids))
        # the owners' lease keepers ask often: a read first, a write transaction only when there is work
        if not await self._read(_op_has_controls, ids):
            return []
        return await self._write(_op_take_controls, ids)

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
        return await self._write(
            _op_register_worker, worker_id, token, info, _micros(lease_until), _micros(now), replace
        )

    async def renew_worker(
        self, worker_id: str, token: str, *, lease_until: datetime, now: datetime | None = None
    ) -> bool:
        """Extend the claim ``token`` holds on ``worker_id``. False if it holds it no longer."""
        return await self._write(_op_renew_worker, worker_id, token, _micros(lease_until))

    async def unregister_worker(self, worker_id: str, token: str) -> None:
        """Let go of the claim ``token`` holds on ``worker_id``."""
        await self._write(_op_unregister_worker, worker_id, token)

    async def list_workers(self, *, now: datetime) -> builtins.list[WorkerRecord]:
        """The worker ids registered with a lease that has not ended at ``now``, by id."""
        rows = await self._read(_op_list_workers, _micros(now))
        return [WorkerRecord(worker_id, info, _moment(lease)) for worker_id, info, lease in rows]

    async def get_schedule(self, agent: str, name: str) -> ScheduleState | None:
        """The schedule ``name`` of ``agent``, or None.

        Raises:
            CorruptRecord: its record cannot be decoded (``.key`` is ``"schedules/<agent>/<name>"``).
        """
        return await self._read(_op_get_schedule, agent, name)

    async def save_schedule(self, state: ScheduleState, *, expected_version: int | None) -> ScheduleState:
        """Compare-and-set write of a schedule.

        With ``expected_version`` None the schedule is created and must not exist; otherwise the stored
        one must have ``expected_version`` and ``state.version`` must be one higher.

        Returns:
            ``state``, as stored.

        Raises:
            VersionConflict: any of those does not hold (``.job_id`` is ``"schedule <agent>/<name>"``).
        """
        await self._write(
            _op_save_schedule, state.agent, state.name, state.version, expected_version, state.model_dump_json()
        )
        return state

    async def list_schedules(self, agent: str | None = None) -> builtins.list[ScheduleState]:
        """The schedules of ``agent`` (None: every agent), by agent and name."""
        return await self._read(_op_list_schedules, agent)

    async def delete_schedule(self, agent: str, name: str) -> bool:
        """Remove a schedule. True if it existed."""
        return await self._write(_op_delete_schedule, agent, name)

    async def close(self) -> None:
        """Commit what is queued, stop the threads and close the connections. Idempotent.

        Operations called after ``close`` raise :class:`StoreError`.
        """
        for future in self._dispatcher.close():
            await asyncio.shield(future)
