"""MemoryStore: the store contract in one process's memory, for tests and for jobs that need no restart."""

from __future__ import annotations

import builtins
import itertools
import json
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import pydantic_core
from pydantic import JsonValue

from durapod.errors import InvalidInput, JobNotFound, StaleOwnerError, VersionConflict
from durapod.models import CLAIMABLE, SETTLED, Job, JobStatus, StepRecord, status_event
from durapod.schedules import ScheduleState
from durapod.stores._codec import _WORKER_FORGOTTEN_AFTER, _is_seq, _status_seq, _with_step_events
from durapod.stores.base import (
    ControlRequest,
    Page,
    Store,
    WorkerRecord,
    claimed_job,
    control_kind,
    encode_cursor,
    list_arguments,
    matches,
)

__all__ = ["MemoryStore"]


def _lease_is_free(job: Job, lease_until: datetime | None, owner: str, now: datetime, reclaim_own: bool) -> bool:
    if job.status not in CLAIMABLE:
        return False
    if lease_until is None or lease_until < now:
        return True
    return reclaim_own and job.owner == owner


def _check_events(job_id: str, events: Sequence[Mapping[str, JsonValue]]) -> None:
    for event in events:
        if not _is_seq(event.get("seq")):
            raise InvalidInput("event", dict(event), "needs an int 'seq'", job_id)


_dumps = pydantic_core.to_json  # compact JSON bytes, fast (the JSON was checked when the event was made)


def _index(record: StepRecord) -> int:
    return record.index


class MemoryStore(Store):
    """Jobs, journals and events in dicts, for one event loop.

    Every operation runs to its end without awaiting anything, so on its event loop each one is atomic
    without a lock. Nothing survives the process. Records are immutable models, so reads hand them out
    without copying.

    Example:
        >>> store = MemoryStore()
    """

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._steps: defaultdict[str, dict[int, StepRecord]] = defaultdict(dict)
        # each job's log, flat: seq, event, seq, event... (no tuple per event: fewer objects for the garbage
        # collector to track); the job_status event of a write (save's status_seq) is kept as the job's
        # compact JSON bytes: a third of the memory of its dicts, and no reader shares it with the store.
        # The step events are derived from the journal when the log is read.
        self._events: defaultdict[str, list[Any]] = defaultdict(list)
        self._controls: defaultdict[str, list[tuple[int, ControlRequest]]] = defaultdict(list)
        self._asked = itertools.count()
        self._schedules: dict[tuple[str, str], ScheduleState] = {}
        self._workers: dict[str, tuple[str, str, datetime]] = {}  # id -> (token, info, lease_until)
        # Leases renewed (or released) since the job was last written, kept beside the record: a renewal
        # does not copy the record, so a job's actor and the store go on sharing one immutable ``Job``.
        self._leases: dict[str, datetime | None] = {}

    def __repr__(self) -> str:
        return f"MemoryStore(jobs={len(self._jobs)})"

    async def create(self, job: Job, *, status_seq: int | None = None) -> tuple[Job, bool]:
        status_seq = _status_seq(job.id, status_seq)
        existing = self._jobs.get(job.id)
        if existing is not None:
            return self._current(existing), False
        self._jobs[job.id] = job
        if status_seq is not None:
            self._append_status(job.id, status_seq, job)
        return self._current(job), True

    def _current(self, job: Job) -> Job:
        # The journal's length is the truth for ``steps``, and a renewed lease for ``lease_until``; records
        # are not copied on every append or renewal, only when read.
        journal = self._steps.get(job.id)
        steps = len(journal) if journal else 0
        update: dict[str, object] = {}
        if job.steps != steps:
            update["steps"] = steps
        lease_until = self._leases.get(job.id, job.lease_until)
        if lease_until != job.lease_until:
            update["lease_until"] = lease_until
        return job.model_copy(update=update) if update else job

    def _lease_until(self, job: Job) -> datetime | None:
        return self._leases.get(job.id, job.lease_until)

    def _put(self, job: Job) -> None:
        self._jobs[job.id] = job
        self._leases.pop(job.id, None)

    async def get(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return self._current(job) if job is not None else None

    async def save(
        self,
        job: Job,
        *,
        expected_version: int,
        events: Sequence[Mapping[str, JsonValue]] = (),
        status_seq: int | None = None,
    ) -> Job:
        if events:
            _check_events(job.id, events)
        status_seq = _status_seq(job.id, status_seq)
        given = job
        stored = self._jobs.get(job.id)
        if stored is None:
            raise JobNotFound(job.id)
        if stored.version != expected_version or job.version != expected_version + 1:
            raise VersionConflict(job.id, expected_version, stored.version)
        if job.status in SETTLED:
            lease_until = None
        elif job.owner == stored.owner and job.epoch == stored.epoch:
            lease_until = self._lease_until(stored)
        else:
            lease_until = job.lease_until
        if job.lease_until != lease_until:
            job = job.model_copy(update={"lease_until": lease_until})
        self._put(job)
        if events:
            self._append(job.id, events)
        if status_seq is not None:
            self._append_status(job.id, status_seq, given)
        return self._current(job)

    async def list(
        self,
        *,
        status: Collection[JobStatus] | None = None,
        agent: str | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        statuses, after = list_arguments(status, limit, cursor)
        wanted = None if statuses is None else {JobStatus(value) for value in statuses}
        found = [self._current(job) for job in self._jobs.values() if matches(job, wanted, agent, metadata)]
        found.sort(key=lambda job: (job.created_at, job.id), reverse=True)
        if after is not None:
            found = [job for job in found if (job.created_at, job.id) < after]
        if limit is not None and len(found) > limit:
            page = found[:limit]
            return Page(page, encode_cursor(page[-1]) if page else None)
        return Page(found, None)

    async def delete(self, job_id: str) -> bool:
        self._steps.pop(job_id, None)
        self._events.pop(job_id, None)
        self._controls.pop(job_id, None)
        self._leases.pop(job_id, None)
        return self._jobs.pop(job_id, None) is not None

    async def append_step(self, record: StepRecord, *, events: Sequence[Mapping[str, JsonValue]] = ()) -> None:
        if events:
            _check_events(record.job_id, events)
        job = self._jobs.get(record.job_id)
        if job is None:
            raise JobNotFound(record.job_id)
        journal = self._steps[record.job_id]
        if job.status != JobStatus.RUNNING or job.epoch != record.epoch:
            raise StaleOwnerError(record.job_id, record.epoch, job.epoch, f"job is {job.status}")
        if record.index in journal:
            raise StaleOwnerError(record.job_id, record.epoch, job.epoch, f"step #{record.index} is journaled")
        journal[record.index] = record
        if events:
            self._append(record.job_id, events)

    async def read_steps(self, job_id: str) -> builtins.list[StepRecord]:
        journal = self._steps.get(job_id)
        return sorted(journal.values(), key=_index) if journal else []

    async def append_events(
        self, job_id: str, events: Sequence[Mapping[str, JsonValue]], *, epoch: int | None = None
    ) -> None:
        _check_events(job_id, events)
        if epoch is not None:
            job = self._jobs.get(job_id)
            if job is None or job.epoch != epoch:
                raise StaleOwnerError(job_id, epoch, job.epoch if job is not None else None, "event log")
        self._append(job_id, events)

    def _append(self, job_id: str, events: Sequence[Mapping[str, JsonValue]]) -> None:
        log = self._events[job_id]
        last = log[-2] if log else -1
        for event in events:
            seq = event["seq"]
            if isinstance(seq, int) and seq > last:  # a logged seq is ignored
                log.append(seq)  # the writer hands its events over; a mapping of another kind is copied
                log.append(event if type(event) is dict else dict(event))
                last = seq

    def _append_status(self, job_id: str, seq: int, job: Job) -> None:
        """Log the ``job_status`` event of a write at ``seq``: the job kept as its compact JSON."""
        log = self._events[job_id]
        if not log or seq > log[-2]:
            log.append(seq)
            log.append(_dumps(job))

    async def read_events(self, job_id: str, *, after: int = -1) -> builtins.list[dict[str, JsonValue]]:
        log = self._events.get(job_id, [])
        appended = [
            (seq, status_event(job_id, seq, json.loads(kept)) if isinstance(kept, bytes) else dict(kept))
            for seq, kept in zip(log[::2], log[1::2], strict=True)
            if seq > after
        ]
        journal = self._steps.get(job_id)
        return _with_step_events(appended, journal.values() if journal else (), after)

    async def claim(
        self, job_id: str, owner: str, *, lease_until: datetime, now: datetime, reclaim_own: bool = False
    ) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None or not _lease_is_free(job, self._lease_until(job), owner, now, reclaim_own):
            return None
        claimed = claimed_job(job, owner, lease_until, now)
        self._put(claimed)
        return self._current(claimed)

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
        candidates = sorted(
            (
                job
                for job in self._jobs.values()
                if (agent is None or job.agent == agent)
                and _lease_is_free(job, self._lease_until(job), owner, now, reclaim_own)
            ),
            key=lambda job: (job.created_at, job.id),
        )[: max(limit, 0)]
        claimed = [claimed_job(job, owner, lease_until, now) for job in candidates]
        for job in claimed:
            self._put(job)
        return [self._current(job) for job in claimed]

    async def next_wake(self, agent: str | None, *, now: datetime) -> datetime | None:
        wakes = [
            lease_until
            for job in self._jobs.values()
            if job.owner is None
            and job.status in CLAIMABLE
            and (agent is None or job.agent == agent)
            and (lease_until := self._lease_until(job)) is not None
            and lease_until >= now
        ]
        return min(wakes, default=None)

    async def renew_leases(
        self, owner: str, job_ids: Collection[str], *, lease_until: datetime, now: datetime | None = None
    ) -> set[str]:
        held: set[str] = set()
        for job_id in job_ids:
            job = self._jobs.get(job_id)
            if job is None or job.owner != owner or job.status in SETTLED:
                continue
            self._leases[job_id] = lease_until
            held.add(job_id)
        return held

    async def release(self, job_id: str, owner: str) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.owner != owner:
            return False
        self._leases[job_id] = None
        return True

    async def request_control(self, request: ControlRequest) -> None:
        control_kind(request.kind, request.job_id)
        if request.job_id not in self._jobs:
            raise JobNotFound(request.job_id)
        self._controls[request.job_id].append((next(self._asked), request))

    async def take_controls(self, job_ids: Collection[str]) -> builtins.list[ControlRequest]:
        taken: builtins.list[tuple[int, ControlRequest]] = []
        for job_id in job_ids:
            taken.extend(self._controls.pop(job_id, ()))
        taken.sort(key=lambda item: (item[1].requested_at, item[0]))
        return [request for _, request in taken]

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
        held = self._workers.get(worker_id)
        if held is not None and held[0] != token and held[2] >= now and held[0] != replace:
            return held[1]
        self._workers[worker_id] = (token, info, lease_until)
        forgotten = now - _WORKER_FORGOTTEN_AFTER
        for gone in [other for other, (_, _, until) in self._workers.items() if until < forgotten]:
            del self._workers[gone]
        return None

    async def renew_worker(
        self, worker_id: str, token: str, *, lease_until: datetime, now: datetime | None = None
    ) -> bool:
        held = self._workers.get(worker_id)
        if held is None or held[0] != token:
            return False
        self._workers[worker_id] = (token, held[1], lease_until)
        return True

    async def unregister_worker(self, worker_id: str, token: str) -> None:
        held = self._workers.get(worker_id)
        if held is not None and held[0] == token:
            del self._workers[worker_id]

    async def list_workers(self, *, now: datetime) -> builtins.list[WorkerRecord]:
        return [
            WorkerRecord(worker_id, info, lease_until)
            for worker_id, (_, info, lease_until) in sorted(self._workers.items())
            if lease_until >= now
        ]

    async def get_schedule(self, agent: str, name: str) -> ScheduleState | None:
        return self._schedules.get((agent, name))

    async def save_schedule(self, state: ScheduleState, *, expected_version: int | None) -> ScheduleState:
        key = (state.agent, state.name)
        stored = self._schedules.get(key)
        if expected_version is None:
            if stored is not None:
                raise VersionConflict(f"schedule {state.agent}/{state.name}", 0, stored.version)
        elif stored is None or stored.version != expected_version or state.version != expected_version + 1:
            raise VersionConflict(
                f"schedule {state.agent}/{state.name}", expected_version, stored.version if stored else None
            )
        self._schedules[key] = state
        return state

    async def list_schedules(self, agent: str | None = None) -> builtins.list[ScheduleState]:
        found = [state for (owner, _), state in self._schedules.items() if agent is None or owner == agent]
        return sorted(found, key=lambda state: (state.agent, state.name))

    async def delete_schedule(self, agent: str, name: str) -> bool:
        return self._schedules.pop((agent, name), None) is not None

    async def close(self) -> None:
        return None
