"""Client: submit, query, wait for and control jobs. The one implementation DurableAgent shares.

A :class:`Client` runs no job: it is what API servers and the CLI use. A
:class:`~durapod.DurableAgent` holds a client bound to its worker and hands its query and control calls
to it, so ``status``, ``steps``, ``list``, ``page``, ``wait``, ``stream``, ``submit``, ``pause``,
``resume`` and ``cancel`` have one signature and one behaviour on both. The difference is where a job
runs: a client's ``resume`` queues the job for any worker of its agent; an agent's resumes a job of its
own agent in place, in its worker.
"""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import AsyncGenerator, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Self, cast

from pydantic import JsonValue

from durapod._control import ALLOWED, apply_control, get_job, resumed
from durapod._log import get_logger
from durapod._outage import PatientStore
from durapod._stream import EventSource, Subscribers, follow
from durapod._util import seconds
from durapod._waiting import Waiters, parse_statuses
from durapod.actors.job import Cancel, Pause
from durapod.children import cancel_children
from durapod.errors import JobConflictError, JobStateError, VersionConflict
from durapod.events import Event
from durapod.forking import fork_job
from durapod.idempotency import keyed_job_id, with_key
from durapod.lowlevel.clock import SYSTEM_CLOCK, Clock
from durapod.models import (
    ControlKind,
    Job,
    JobStatus,
    Request,
    StepRecord,
    check_json,
    check_metadata,
    new_job,
    validate_job_id,
)
from durapod.schedules import ScheduleState
from durapod.stores.base import Page, Store
from durapod.versioning import VERSION_KEY

if TYPE_CHECKING:
    from durapod.worker import Worker

__all__ = ["ALL_AGENTS", "Client"]

#: ``agent=ALL_AGENTS`` lists jobs of every agent, also from a DurableAgent (whose default is its own).
ALL_AGENTS = "*"


def _timeout(timeout: float | None) -> float | None:
    return None if timeout is None else seconds("timeout", timeout)


def _optional_str(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {value!r}")
    if value is not None:
        check_json(value, name)  # a lone surrogate could not be stored nor looked up
    return value


def _limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be an int >= 0 or None, got {limit!r}")
    return limit


class Client:
    """Submit, query, wait for and control jobs on a store, without running any.

    Pause and cancel reach a job's live owner through the store (a control request its lease keeper
    picks up); a job nobody runs is changed in the store directly. ``resume`` queues a paused job for any
    worker of its agent, ``submit`` queues a new one: a worker's ``serve()`` runs them.

    Args:
        store: the store the workers use.
        poll_interval: the longest gap between two reads while waiting for another process's job.
        store_timeout: how long a call waits out an unreachable store before raising
            ``StoreUnavailable``.
        clock: time source.

    Example:
        >>> client = Client(MemoryStore())                               # doctest: +SKIP
        >>> async with client:                                           # doctest: +SKIP
        ...     await client.submit("job_7", "Process invoice", agent="invoices")
        ...     job = await client.wait("job_7")
    """

    def __init__(
        self,
        store: Store,
        *,
        poll_interval: float = 0.25,
        store_timeout: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(store, Store):
            raise TypeError(f"store must be a durapod store (MemoryStore, SQLiteStore, RedisStore), got {store!r}")
        self.store = store
        self.poll_interval = seconds("poll_interval", poll_interval, allow_zero=False)
        self.store_timeout = seconds("store_timeout", store_timeout, allow_zero=False)
        self.clock: Clock = clock or SYSTEM_CLOCK
        self._log = get_logger("durapod.client")
        # a proxy with every Store method (each made patient), so typed as one
        self._patient: Store = cast(Store, PatientStore(store, self.clock, self.store_timeout, self._log))
        self._waiters = Waiters()
        self._subscribers = Subscribers()
        self._worker: Worker | None = None
        self._scope: str | None = None

    @classmethod
    def _for_worker(
        cls,
        worker: Worker,
        *,
        waiters: Waiters,
        subscribers: Subscribers,
        poll_interval: float,
        store_timeout: float,
    ) -> Client:
        """The client of a DurableAgent: its agent's scope, its worker's waiters and live events."""
        client = cls(worker.store, poll_interval=poll_interval, store_timeout=store_timeout, clock=worker.clock)
        client._worker = worker
        client._scope = worker.name
        client._waiters = waiters
        client._subscribers = subscribers
        client._log = worker.log
        client._patient = cast(Store, PatientStore(worker.store, worker.clock, store_timeout, worker.log))
        return client

    def __repr__(self) -> str:
        return f"Client(store={self.store!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the store."""
        await self.store.close()

    # -- queries ---------------------------------------------------------------------------------

    async def status(self, job_id: str) -> Job | None:
        """The job as stored, or None.

        Raises:
            InvalidJobId: not a valid job id.
        """
        return await self._patient.get(validate_job_id(job_id))

    async def steps(self, job_id: str) -> builtins.list[StepRecord]:
        """The job's step journal, in order (its timeline)."""
        return await self._patient.read_steps(validate_job_id(job_id))

    async def list(
        self,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        *,
        limit: int | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        agent: str | None = None,
        version: str | None = None,
    ) -> builtins.list[Job]:
        """Jobs newest first, filtered by status (one or several), metadata, agent and code version.

        ``agent=None`` means every agent for a ``Client`` and the agent's own jobs for a
        ``DurableAgent``; ``agent="*"`` means every agent on both. ``version`` keeps the jobs created by
        that version of the code (``DurableAgent(version=...)``, ``Job.code_version``).

        Raises:
            ValueError: an unknown status, or a negative limit.
        """
        return (await self.page(status, limit=limit, metadata=metadata, agent=agent, version=version)).jobs

    async def page(
        self,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        *,
        limit: int | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        agent: str | None = None,
        cursor: str | None = None,
        version: str | None = None,
    ) -> Page:
        """One page of :meth:`list`: ``limit`` jobs and the ``next_cursor`` to pass for the next page."""
        if status is not None and not isinstance(status, str | Iterable):
            raise TypeError(f"status must be a job status, several of them or None, got {status!r}")
        if metadata is not None or version is not None:
            metadata = check_metadata(metadata, "metadata filter")
            if version is not None:
                metadata[VERSION_KEY] = _optional_str("version", version)
        return await self._patient.list(
            status=parse_statuses(status),
            agent=self._agent_filter(_optional_str("agent", agent)),
            metadata=metadata,
            limit=_limit(limit),
            cursor=_optional_str("cursor", cursor),
        )

    async def schedules(self, agent: str | None = None) -> builtins.list[ScheduleState]:
        """The schedules in the store, with their next fire times (``agent`` as in :meth:`list`)."""
        return await self._patient.list_schedules(self._agent_filter(agent))

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job settles (completed, failed, cancelled or paused) and return it.

        Raises:
            JobNotFound: no such job.
            TimeoutError: ``timeout`` seconds passed first.
        """
        validate_job_id(job_id)
        timeout = _timeout(timeout)
        return await self._waiters.wait(self._patient, job_id, timeout, self.poll_interval, self._runs_here)

    def _runs_here(self, job_id: str) -> bool:
        return self._worker is not None and self._worker.holds(job_id)

    async def stream(self, job_id: str, *, after: int = -1) -> AsyncGenerator[Event, None]:
        """Yield the job's events after ``after``: first those logged, then live ones, until it settles.

        Works from any coroutine, and from another process on a shared store (by reading the log). A
        consumer that stops reading never stops the job; one that falls behind resumes from the log. Live
        events arrive once written; a ``step_restarted`` event voids the agent events from its
        ``from_seq`` on (see :meth:`DurableAgent.stream`).

        Raises:
            JobNotFound: no job has that id.
            TypeError, ValueError: ``after`` is not an int >= -1.
        """
        validate_job_id(job_id)
        if isinstance(after, bool) or not isinstance(after, int):
            raise TypeError(f"after must be an int (a seq, or -1 for the whole log), got {after!r}")
        if after < -1:
            raise ValueError(f"after must be >= -1 (a seq, or -1 for the whole log), got {after!r}")
        async for event in follow(self._event_source(), job_id, after):
            yield event

    def _event_source(self) -> EventSource:
        return EventSource(self.store, self._subscribers, self.poll_interval)

    # -- submitting ------------------------------------------------------------------------------

    async def submit(
        self,
        job_id: str | None,
        input: JsonValue = None,
        *,
        agent: str | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue a job for a worker of ``agent`` (a Client's None: any worker on the store; an agent's
        None: its own agent) without running it here. Returns the stored job.

        Submitting an existing id with the same input returns the existing job (nothing runs twice).
        The input and metadata must be JSON nested at most ``MAX_JSON_DEPTH`` (64) deep (see
        ``durapod.models``), with no NaN, tuple, non-str key or lone surrogate; nothing is written otherwise.

        A caller that cannot choose ids passes ``None`` and an ``idempotency_key``: the job id is derived
        from the key (``"key-"`` and 40 hex digits of its SHA-256; the key is kept in the metadata under
        ``"durapod.idempotency_key"``), so a key seen before returns its job, as an id does.

        Raises:
            InvalidJobId, InvalidInput: bad id or non-JSON input or metadata (naming which).
            JobConflictError: the id (or key) exists with a different input or agent.
        """
        job_id = keyed_job_id(job_id, idempotency_key)
        input = check_json(input, "input", job_id)
        meta = check_metadata(with_key(metadata, idempotency_key), "metadata", job_id)
        name = _optional_str("agent", agent) or self._scope or ""
        now = self.clock.utcnow()
        job = new_job(id=job_id, agent=name, input=input, metadata=meta, created_at=now, updated_at=now, version=1)
        stored, created = await self._patient.create(job)
        if not created:
            if name and stored.agent != name:
                raise JobConflictError(job_id, f"another agent ({stored.agent!r})")
            if stored.input != input:
                raise JobConflictError(job_id)
        return stored

    async def fork(self, job_id: str, new_id: str, *, from_step: int, input: JsonValue = None) -> Job:
        """Create job ``new_id`` whose journal holds ``job_id``'s steps before position ``from_step``, and
        queue it: it replays those steps and runs from ``from_step`` on (re-run a job from a step after
        fixing a bug). ``input`` replaces the source's input (None: the same). The fork has the source's
        agent and metadata, plus ``"durapod.forked_from"``. A :class:`DurableAgent` runs a fork of its own
        agent here; otherwise any worker of the agent takes it.

        Raises:
            JobNotFound: no job ``job_id``.
            JobConflictError: ``new_id`` exists already.
            InvalidJobId, InvalidInput: a bad id or input.
            TypeError, ValueError: ``from_step`` is not an int >= 0.
        """
        worker = self._worker
        here = worker is not None and worker.is_running
        owner = worker.worker_id if worker is not None and here else f"fork-{uuid.uuid4().hex}"
        lease_ttl = worker.lease_ttl if worker is not None else 30.0
        job = await fork_job(
            self._patient,
            self.clock,
            job_id,
            new_id,
            from_step=from_step,
            input=input,
            owner=owner,
            lease_ttl=lease_ttl,
        )
        if worker is not None and here and job.agent == worker.name:
            await worker.start(job)
        else:
            await self._patient.release(new_id, owner)
        self._log.info("job forked", job_id=new_id, source=job_id, from_step=from_step)
        return job

    # -- control ---------------------------------------------------------------------------------

    async def pause(self, job_id: str, *, wait: bool = True, timeout: float | None = None) -> Job:
        """Pause a pending or running job.

        A running job stops at its next step boundary, or after its worker's ``pause_timeout`` by
        cancelling the step in flight (which runs again on resume). With ``wait`` (the default) this
        returns once the job is durably paused, or settled otherwise (a job that finishes first is
        returned as it ended); with ``wait=False`` it returns as soon as the request is recorded.

        Raises:
            JobNotFound: no job has that id.
            JobStateError: the job is paused, completed, failed or cancelled already.
            TimeoutError: ``timeout`` seconds passed first.
        """
        return await self._control(job_id, ControlKind.PAUSE, wait, timeout)

    async def cancel(self, job_id: str, *, wait: bool = True, timeout: float | None = None) -> Job:
        """Cancel a pending, running or paused job; cancelled is terminal.

        A running agent gets ``CancelledError`` in whatever it awaits. ``wait`` and ``timeout`` as in
        :meth:`pause`.

        Raises:
            JobNotFound: no job has that id.
            JobStateError: the job is completed, failed or cancelled already.
        """
        return await self._control(job_id, ControlKind.CANCEL, wait, timeout)

    async def resume(
        self, job_id: str, new_input: JsonValue = None, *, wait: bool = True, timeout: float | None = None
    ) -> Job:
        """Continue a paused job from its checkpoint.

        ``new_input`` (if not None) is appended to ``job.inputs``; an agent waiting in
        ``ctx.interrupt(prompt)`` receives it as that call's value; a plain agent is called with it. A
        DurableAgent resumes a job of its own agent in its worker; otherwise the job is queued for any
        worker of its agent. With ``wait`` (the default) this returns once the job settles again; with
        ``wait=False`` as soon as the resume is durably recorded.

        Raises:
            JobNotFound: no job has that id.
            JobStateError: the job is not paused.
            InvalidInput: ``new_input`` is not JSON.
            TimeoutError: ``timeout`` seconds passed first.
        """
        validate_job_id(job_id)
        check_json(new_input, "resume input", job_id)
        timeout = _timeout(timeout)
        worker = self._worker
        while True:
            job = await get_job(self._patient, job_id)
            if job.status not in ALLOWED["resume"]:
                raise JobStateError(job_id, job.status, "resume")
            here = worker is not None and worker.is_running and job.agent == worker.name
            if here and worker is not None:
                actor = worker.actor(job_id)
                if actor is not None and actor.task is not None:
                    await asyncio.wait([actor.task])  # the actor that paused it is still stopping
                    continue
                worker.take_waiting(job_id)
            owner = worker.worker_id if here and worker is not None else None
            lease_ttl = worker.lease_ttl if worker is not None else 0.0
            try:
                stored = await self._patient.save(
                    resumed(job, new_input, self.clock, owner=owner, lease_ttl=lease_ttl), expected_version=job.version
                )
            except VersionConflict:
                continue
            break
        self._log.info("job resumed", job_id=job_id, here=owner is not None)
        self._waiters.publish(stored)
        if owner is not None and worker is not None:
            await worker.start(stored)
        if not wait:
            return stored
        return await self.wait(job_id, timeout)

    async def _control(self, job_id: str, kind: ControlKind, wait: bool, timeout: float | None) -> Job:
        validate_job_id(job_id)
        timeout = _timeout(timeout)
        request: Request = "pause" if kind is ControlKind.PAUSE else "cancel"
        async with asyncio.timeout(timeout):
            while True:
                job = await get_job(self._patient, job_id)
                if job.status not in ALLOWED[request]:
                    raise JobStateError(job_id, job.status, request)
                worker = self._worker
                actor = worker.actor(job_id) if worker is not None else None
                if actor is not None and actor.task is not None:
                    if actor.task.done() or job.status.is_settled:
                        await asyncio.wait([actor.task])  # it is stopping: then the store is the truth
                        await asyncio.sleep(0)  # and its supervisor has seen it end
                        continue
                    actor.tell(Pause() if kind is ControlKind.PAUSE else Cancel())
                    if not wait:
                        return job
                    settled_or_none = await self._wait_while_running(job_id, actor.task)
                    if settled_or_none is None:
                        continue  # its execution had ended (it waits for a retry now): the store is the truth
                    settled = settled_or_none
                    if kind is ControlKind.CANCEL and settled.status is JobStatus.PAUSED:
                        continue  # it paused itself before the cancel reached it: cancel the paused job
                    return settled
                if worker is not None:
                    worker.take_waiting(job_id)  # waiting for its retry timer here: the store is changed now
                applied = await apply_control(self._patient, job_id, kind, self.clock, self._waiters.publish)
                if applied is not None:
                    self._log.info(f"job {applied.status}", job_id=job_id)
                    if kind is ControlKind.CANCEL:
                        await cancel_children(self._patient, job_id, self.clock)
                    return applied
                # a control request was left for the job's live owner in another process
                if not wait:
                    return job
                lease_left = 1.0
                if job.lease_until is not None:
                    lease_left = max((job.lease_until - self.clock.utcnow()).total_seconds(), 0.0) + 0.1
                try:
                    return await self.wait(job_id, timeout=lease_left)
                except TimeoutError:
                    continue  # the owner died before acting on the request: its lease has lapsed, try again

    async def _wait_while_running(self, job_id: str, task: asyncio.Task[object]) -> Job | None:
        """The job once settled; None if its actor's task ended first and left it unsettled (the actor
        had written its last record, a failure awaiting its retry, before the message reached it)."""
        settling = asyncio.ensure_future(self.wait(job_id))
        try:
            await asyncio.wait([settling, task], return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            settling.cancel()
            raise
        if not settling.done():
            job = await get_job(self._patient, job_id)
            if not job.status.is_settled:
                settling.cancel()
                await asyncio.wait([settling])
                await asyncio.sleep(0)  # its supervisor has seen it end
                return None
            # settled as the task ended: the wait sees it at once
        return await settling

    def _agent_filter(self, agent: str | None) -> str | None:
        if agent == ALL_AGENTS:
            return None
        return agent if agent is not None else self._scope
