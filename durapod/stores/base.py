"""The store contract: what every store (memory, SQLite, Redis) offers, each operation atomic.

A store holds jobs, their step journals, their event logs, schedules, leases (in the job record: ``owner``,
``lease_until``, ``epoch``) and control requests. Every store passes the same contract test suite
(``tests/test_store_contract.py``).

Rules every implementation follows:

- ``save`` is a compare-and-set on ``version``: it writes ``job`` only if the stored version equals
  ``expected_version`` and ``job.version == expected_version + 1``; otherwise :class:`VersionConflict`.
- The lease belongs to the store: ``save`` keeps the stored ``lease_until`` when ``job`` has the same
  ``owner`` and ``epoch`` as the stored record (so a job actor's write never shortens a lease the lease
  keeper renewed), clears it when ``job`` is settled (paused, completed, failed, cancelled), and takes
  ``job.lease_until`` otherwise (a new owner).
- ``append_step`` is fenced: the job must be running with the record's ``epoch``, and the record's
  ``index`` must be the journal's length; otherwise :class:`StaleOwnerError` (a step whose index is
  already journaled is refused, so no step is ever recorded twice). It also sets the job's ``steps``
  count without changing its ``version``.
- A record that cannot be decoded raises :class:`CorruptRecord` naming its key (a listing skips it and logs
  it); it never crashes a worker.
- Leases are judged on one clock. ``lease_until`` and ``now`` come from the caller's clock; MemoryStore,
  SQLiteStore and PostgresStore compare them as given (SQLite: one host, every worker of a file shares its
  clock), RedisStore on the server's clock (``TIME``), taking ``lease_until - now`` as the lease's length,
  so that workers on hosts whose clocks disagree never both hold a job.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import builtins
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from pydantic import JsonValue

from durapod.models import ControlKind, Job, JobStatus, StepRecord
from durapod.schedules import ScheduleState

__all__ = [
    "ControlKind",
    "ControlRequest",
    "Page",
    "Store",
    "WorkerRecord",
    "claimed_job",
    "control_kind",
    "decode_cursor",
    "encode_cursor",
    "list_arguments",
    "matches",
]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of :meth:`Store.list`: jobs newest first, and the cursor of the next page (or None)."""

    jobs: builtins.list[Job]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """A pause, resume or cancel asked by a process that does not own the job.

    Attributes:
        job_id: the job.
        kind: ``"pause"``, ``"resume"`` or ``"cancel"``.
        payload: the new input of a resume (JSON), else None.
        requested_at: when it was asked.
    """

    job_id: str
    kind: ControlKind
    requested_at: datetime
    payload: JsonValue = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", control_kind(self.kind, self.job_id))


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A worker id's live registration, as :meth:`Store.list_workers` returns it.

    Attributes:
        worker_id: the id a worker runs under (``DurableAgent(worker_id=...)``).
        info: what the worker registered with its id (JSON text: its host and pid, and the token that
            proves its claim; show the host and pid, not the token).
        lease_until: when the registration lapses unless the worker renews it.
    """

    worker_id: str
    info: str
    lease_until: datetime


def control_kind(kind: str, job_id: str) -> ControlKind:
    """``kind`` as a :class:`ControlKind`; ``ValueError`` naming it (and the job) if it is none.

    Every store checks a request's kind again when it records it, so that no request of an unknown kind
    is ever written (one found in a store is dropped with a warning when it is taken).
    """
    try:
        return ControlKind(kind)
    except ValueError:
        raise ValueError(
            f"invalid control request kind {kind!r} for job {job_id!r}; expected one of "
            + ", ".join(known.value for known in ControlKind)
        ) from None


def encode_cursor(job: Job) -> str:
    """The opaque cursor that resumes a newest-first listing just after ``job``."""
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Decode :func:`encode_cursor`; raise ``ValueError`` naming the cursor if it is not one."""
    try:
        created, job_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        moment = datetime.fromisoformat(created)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid cursor {cursor!r}") from exc
    if moment.tzinfo is None:
        raise ValueError(f"invalid cursor {cursor!r}")
    return moment, str(job_id)


def claimed_job(job: Job, owner: str, lease_until: datetime, now: datetime) -> Job:
    """The next version of ``job`` once ``owner`` claims it (the claim rule every store applies): the lease
    is ``owner``'s until ``lease_until``, ``epoch`` and ``version`` rise by one, and a job that was running
    (its previous owner died) counts one more recovery."""
    recoveries = job.recoveries + 1 if job.status == JobStatus.RUNNING else job.recoveries
    return job.evolve(owner=owner, lease_until=lease_until, epoch=job.epoch + 1, recoveries=recoveries, updated_at=now)


def list_arguments(
    status: Collection[JobStatus] | None, limit: int | None, cursor: str | None
) -> tuple[builtins.list[str] | None, tuple[datetime, str] | None]:
    """The checked arguments of :meth:`Store.list`, the same for every store: the statuses as sorted,
    distinct strings (None: any; empty: nothing matches), and where the page starts (None: at the newest).

    Raises:
        ValueError: a ``limit`` that is not an int >= 0, an unknown status or an invalid cursor (naming it).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"invalid limit {limit!r}: expected an int >= 0")
    statuses: builtins.list[str] | None = None
    if status is not None:
        if isinstance(status, str):
            status = (JobStatus(status),)
        statuses = sorted({str(JobStatus(value)) for value in status})
    return statuses, (decode_cursor(cursor) if cursor is not None else None)


def matches(
    job: Job,
    status: Collection[JobStatus] | None,
    agent: str | None,
    metadata: Mapping[str, JsonValue] | None,
) -> bool:
    """True if ``job`` passes the filters of :meth:`Store.list` (for stores that filter in Python)."""
    if isinstance(status, str):
        status = (JobStatus(status),)
    if status is not None and job.status not in status:
        return False
    if agent is not None and job.agent != agent:
        return False
    if metadata:
        for key, value in metadata.items():
            if key not in job.metadata or job.metadata[key] != value:
                return False
    return True


class Store(abc.ABC):
    """What a durapod store offers. Every method is one atomic operation.

    A backend subclasses it and implements every abstract method; a subclass that leaves one out fails
    when the class is created (``TypeError`` naming the methods), unless it says it is abstract itself
    (``class Base(Store, abstract=True)``). Two wake-up hooks have polling defaults that a backend with
    notifications (Redis pub/sub, Postgres LISTEN/NOTIFY) overrides: :meth:`wait_for_work` and
    :meth:`wait_for_control`.
    """

    #: True for a store whose :meth:`wait_for_work` and :meth:`wait_for_control` return when notified (so a
    #: waiter need not poll); False for the polling defaults, which just wait their timeout.
    notifies: ClassVar[bool] = False

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        missing = sorted(name for name in dir(cls) if getattr(getattr(cls, name, None), "__isabstractmethod__", False))
        if missing:
            raise TypeError(f"store {cls.__name__} does not implement {', '.join(missing)}")

    async def wait_for_work(self, agent: str, timeout: float) -> None:
        """Wait until a job of ``agent`` (or of any agent, ``""``) may have become claimable, or ``timeout``
        seconds pass. The default just waits ``timeout`` (the caller then polls); a store that can signal
        new work returns as soon as it comes."""
        await asyncio.sleep(max(timeout, 0.0))

    async def wait_for_control(self, timeout: float) -> None:
        """Wait until some process may have left a control request, or ``timeout`` seconds pass. The
        default just waits ``timeout`` (the lease keeper then polls ``take_controls``)."""
        await asyncio.sleep(max(timeout, 0.0))

    async def next_wake(self, agent: str | None, *, now: datetime) -> datetime | None:
        """When the next sleeping job of ``agent`` (None: any agent) wakes, on the caller's clock (``now``).

        A job asleep in ``ctx.sleep`` is claimable with no owner and a ``lease_until`` (its wake time); this
        is the earliest such ``lease_until`` not before ``now``, or None when no job of ``agent`` sleeps.
        Workers arm one timer on it. The default says None: workers then find woken jobs by their periodic
        claims only (every third of the lease), so every store here overrides it.
        """
        return None

    @abc.abstractmethod
    async def create(self, job: Job, *, status_seq: int | None = None) -> tuple[Job, bool]:
        """Insert ``job`` if no job has its id. Returns the stored job and whether it was created.

        With ``status_seq`` a created job's log starts with a ``job_status`` event at that ``seq`` whose
        ``job`` is ``job`` (as :meth:`save` logs one): a job created already running logs its start with
        the one write. Nothing is logged when the id exists.
        """
        ...

    @abc.abstractmethod
    async def get(self, job_id: str) -> Job | None:
        """The job with that id, or None."""
        ...

    @abc.abstractmethod
    async def save(
        self,
        job: Job,
        *,
        expected_version: int,
        events: Sequence[Mapping[str, JsonValue]] = (),
        status_seq: int | None = None,
    ) -> Job:
        """Compare-and-set write of ``job`` (see the module rules). Returns the job as stored.

        ``events`` (each with an int ``seq``) are appended to the job's log in the same atomic operation,
        only if the write succeeds (as :meth:`append_events` would, a logged ``seq`` keeping its event).
        With ``status_seq`` the write also logs, after them, a ``job_status`` event at that ``seq`` whose
        ``job`` is ``job`` as given (``job.model_dump(mode="json")``): derived from the write, so the
        job is serialised once.

        Raises:
            JobNotFound: no job has that id.
            VersionConflict: the stored version is not ``expected_version``.
        """
        ...

    @abc.abstractmethod
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

        ``cursor`` is a previous page's ``next_cursor``; ``next_cursor`` is None on the last page.
        Metadata values compare by JSON equality as Python sees it (``1 == 1.0``).
        A record that cannot be decoded is skipped and logged as a warning naming its job (``get`` raises
        :class:`CorruptRecord` for it): one bad record never breaks a listing of the others.

        Raises:
            ValueError: a negative ``limit`` or an invalid ``cursor``.
        """
        ...

    @abc.abstractmethod
    async def delete(self, job_id: str) -> bool:
        """Remove a job with its journal, events and control requests. True if it existed."""
        ...

    @abc.abstractmethod
    async def append_step(self, record: StepRecord, *, events: Sequence[Mapping[str, JsonValue]] = ()) -> None:
        """Journal one step (fenced, see the module rules).

        ``events`` (each with an int ``seq``) are appended to the job's log in the same atomic operation,
        only if the step is journaled (as :meth:`append_events` would): the events an agent streamed
        before a step are never lost while the step is kept, so a replay that skips it loses no output.
        A record with an ``event_seq`` gives the log its ``step`` event at that ``seq``
        (:meth:`StepRecord.step_event`), derived from the journal when the log is read: it is never
        written twice.

        Raises:
            JobNotFound: no job has that id.
            StaleOwnerError: the job is not running with ``record.epoch``, or ``record.index`` is not
                the journal's length.
        """
        ...

    @abc.abstractmethod
    async def read_steps(self, job_id: str) -> builtins.list[StepRecord]:
        """The job's journal, in order (empty for an unknown job)."""
        ...

    @abc.abstractmethod
    async def append_events(
        self, job_id: str, events: Sequence[Mapping[str, JsonValue]], *, epoch: int | None = None
    ) -> None:
        """Append events (JSON objects, each with an int ``seq``) to the job's event log.

        An event whose ``seq`` is already logged for the job is ignored (a retried flush is harmless);
        an event without an int ``seq`` is refused with :class:`InvalidInput`. With ``epoch`` the write is
        fenced: unless the job exists with that epoch, :class:`StaleOwnerError` and nothing is written
        (a worker that lost the job cannot add to its log).
        """
        ...

    @abc.abstractmethod
    async def read_events(self, job_id: str, *, after: int = -1) -> builtins.list[dict[str, JsonValue]]:
        """The job's logged events whose ``seq`` is greater than ``after``, in ``seq`` order: those
        appended, and the ``step`` events derived from journaled steps with an ``event_seq`` (where a
        ``seq`` was both appended and given to a step, the appended event is the one read)."""
        ...

    @abc.abstractmethod
    async def claim(
        self, job_id: str, owner: str, *, lease_until: datetime, now: datetime, reclaim_own: bool = False
    ) -> Job | None:
        """Take the lease of a pending or running job whose lease is free.

        The lease is free when its ``lease_until`` is None or before ``now`` (a job with no owner but a
        ``lease_until``, one asleep in ``ctx.sleep``, is free from then); with
        ``reclaim_own`` also when ``owner`` holds it already (a restarted worker with the same id takes
        back its jobs at once). On success ``owner`` and ``lease_until`` are set, ``epoch`` and
        ``version`` rise by one, and a running job (its previous owner died) counts one more recovery.
        Returns the claimed job, or None if it is not claimable.
        """
        ...

    @abc.abstractmethod
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
        """Claim up to ``limit`` claimable jobs (as :meth:`claim`) of ``agent`` (None: any agent).

        Oldest first, so that queued jobs run in the order they were submitted. A job whose record is
        corrupt is skipped (and stays where it is), so that one bad record never stops every worker.
        """
        ...

    @abc.abstractmethod
    async def renew_leases(
        self, owner: str, job_ids: Collection[str], *, lease_until: datetime, now: datetime | None = None
    ) -> set[str]:
        """Extend the leases ``owner`` holds on ``job_ids``. Returns the ids it still holds.

        ``now`` is the caller's clock when it computed ``lease_until`` (default: this host's clock).

        Does not change ``version``. A job that another worker claimed, or that is settled, is not renewed
        and is missing from the result.
        """
        ...

    @abc.abstractmethod
    async def release(self, job_id: str, owner: str) -> bool:
        """Let go of ``owner``'s lease on the job (``lease_until`` cleared) so any worker may claim it."""
        ...

    @abc.abstractmethod
    async def request_control(self, request: ControlRequest) -> None:
        """Record a control request for the job's owner to act on."""
        ...

    @abc.abstractmethod
    async def take_controls(self, job_ids: Collection[str]) -> builtins.list[ControlRequest]:
        """Remove and return the control requests of ``job_ids``, oldest first (ties in the order asked)."""
        ...

    @abc.abstractmethod
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
        """Claim ``worker_id`` for the worker holding ``token`` until ``lease_until``.

        The claim succeeds (returns None) when nobody holds the id, when the holder's lease ended before
        ``now``, when ``token`` holds it already, or when ``replace`` is the holder's token (its process is
        known to be gone). Otherwise it returns the holder's ``info`` and changes nothing.

        A registration whose lease ended more than a day before ``now`` is forgotten (as if unregistered):
        each process has an id of its own, and those of processes that died without closing must not pile
        up. The SQL stores delete them when a worker registers, RedisStore lets them expire.
        """
        ...

    @abc.abstractmethod
    async def renew_worker(
        self, worker_id: str, token: str, *, lease_until: datetime, now: datetime | None = None
    ) -> bool:
        """Extend the claim ``token`` holds on ``worker_id`` (``now`` as for :meth:`renew_leases`). False if
        it holds it no longer."""
        ...

    @abc.abstractmethod
    async def unregister_worker(self, worker_id: str, token: str) -> None:
        """Let go of the claim ``token`` holds on ``worker_id`` (nothing if it holds none)."""
        ...

    @abc.abstractmethod
    async def list_workers(self, *, now: datetime) -> builtins.list[WorkerRecord]:
        """The worker ids whose registration is live at ``now`` (judged as :meth:`register_worker` judges
        it), by worker id: every running worker, busy or idle. A worker that died without closing stays
        listed until its lease ends (``lease_ttl`` after its last renewal)."""
        ...

    @abc.abstractmethod
    async def get_schedule(self, agent: str, name: str) -> ScheduleState | None:
        """The schedule ``name`` of ``agent``, or None."""
        ...

    @abc.abstractmethod
    async def save_schedule(self, state: ScheduleState, *, expected_version: int | None) -> ScheduleState:
        """Compare-and-set write of a schedule: create it when ``expected_version`` is None (it must not
        exist), else replace the stored one whose version is ``expected_version`` (``state.version``
        must be one higher). Raises :class:`VersionConflict` otherwise."""
        ...

    @abc.abstractmethod
    async def list_schedules(self, agent: str | None = None) -> builtins.list[ScheduleState]:
        """The schedules of ``agent`` (None: every agent), by agent and name."""
        ...

    @abc.abstractmethod
    async def delete_schedule(self, agent: str, name: str) -> bool:
        """Remove a schedule. True if it existed."""
        ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the store's resources. Idempotent."""
        ...
