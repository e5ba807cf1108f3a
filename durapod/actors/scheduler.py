"""SchedulerActor: fires an agent's schedules, each tick exactly once however many schedulers run.

A permanent child of the worker's root supervisor. It sleeps until the next fire time of any of the
agent's schedules (kept in the store, so every replica sees the same ones), then, per tick:

- creates the job ``<schedule>:<UTC fire time>`` only if absent, so two schedulers create one job;
- applies the overlap policy: ``skip`` (no new run while the previous is unfinished), ``allow``,
  ``queue`` (the fire waits in the schedule's state and runs once the previous has finished);
- applies the catch-up policy to ticks missed while no scheduler ran (later than a grace of one
  interval, at most 60 s): ``none``, ``latest``, or ``all`` within ``catch_up_window``.

``on_schedule`` (sync or async, given the fire time if it takes an argument) makes the run's input; when
it raises, the error is logged and recorded on the schedule, and the scheduler carries on.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import JsonValue

from durapod._log import get_logger
from durapod.errors import StoreError, VersionConflict
from durapod.lowlevel.actor import Actor, ControlMessage
from durapod.lowlevel.clock import Clock
from durapod.models import Job, JobStatus, check_json
from durapod.schedules import CronSchedule, ScheduleState, fire_job_id
from durapod.stores.base import Store

__all__ = ["SchedulerActor", "SchedulerRuntime", "call_on_schedule"]

_log = get_logger("durapod.scheduler")

_UNFINISHED = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.PAUSED)
_MAX_GRACE = timedelta(seconds=60)
_QUEUE_POLL = 1.0


class SchedulerRuntime(Protocol):
    """What the scheduler needs from its worker (implemented by ``DurableAgent``)."""

    store: Store
    clock: Clock
    name: str
    worker_id: str

    def on_schedule_for(self, schedule: str) -> Callable[..., Any] | None:
        """The ``on_schedule`` function registered for the schedule in this process, if any."""
        ...

    async def start_scheduled(self, job_id: str, input: JsonValue, metadata: dict[str, JsonValue]) -> bool:
        """Create the job if absent and run it here. True if this call created it."""
        ...


class _Tick(ControlMessage):
    __slots__ = ()


_TICK = _Tick()


async def call_on_schedule(fn: Callable[..., Any] | None, fire_time: datetime) -> JsonValue:
    """Call ``on_schedule`` (sync or async; with the fire time if it takes an argument)."""
    if fn is None:
        return None
    try:
        wants_time = len(inspect.signature(fn).parameters) >= 1
    except (TypeError, ValueError):
        wants_time = True
    result = fn(fire_time) if wants_time else fn()
    if inspect.isawaitable(result):
        result = await result
    check_json(result, "on_schedule result")
    value: JsonValue = result
    return value


class SchedulerActor(Actor[Any]):
    """Fires the schedules of one agent. Made by ``DurableAgent.start_scheduler()``."""

    def __init__(self, runtime: SchedulerRuntime) -> None:
        self.runtime = runtime
        self._timer: asyncio.Task[None] | None = None
        self._log = _log.bind(worker_id=runtime.worker_id, agent=runtime.name)

    async def on_start(self) -> None:
        self.ref.tell(_TICK)

    async def on_stop(self, error: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()

    async def receive(self, message: Any) -> Any:
        if message is _TICK:
            await self.tick()
        return None

    def wake(self) -> None:
        """Re-read the schedules now (one was added, changed or removed)."""
        self.ref.tell(_TICK)

    async def tick(self) -> None:
        """Fire what is due, then sleep until the next fire time."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        store, clock = self.runtime.store, self.runtime.clock
        try:
            states = await store.list_schedules(self.runtime.name)
        except StoreError as exc:
            # The store blinked: try again shortly instead of crashing (and escalating) the scheduler.
            self._log.warning("cannot read schedules; retrying", error=repr(exc))
            self._timer = asyncio.create_task(self._sleep_then_tick(clock.utcnow() + timedelta(seconds=_QUEUE_POLL)))
            return
        wake_at: datetime | None = None
        for state in states:
            if state.paused:
                continue
            try:
                state = await self._process(state)
            except VersionConflict:
                state = await store.get_schedule(state.agent, state.name) or state
            except Exception as exc:  # one broken schedule must not stop the others
                self._log.exception("schedule failed", schedule=state.name, error=repr(exc))
                continue
            candidates = [moment for moment in (state.next_fire,) if moment is not None]
            if state.queued:
                candidates.append(clock.utcnow() + timedelta(seconds=_QUEUE_POLL))
            for moment in candidates:
                wake_at = moment if wake_at is None else min(wake_at, moment)
        if wake_at is not None:
            self._timer = asyncio.create_task(self._sleep_then_tick(wake_at))

    async def _sleep_then_tick(self, wake_at: datetime) -> None:
        # the delay is measured when the task runs, not when it was made: the clock may have moved between
        clock = self.runtime.clock
        await clock.sleep(max((wake_at - clock.utcnow()).total_seconds(), 0.0))
        self.ref.tell(_TICK)

    async def _process(self, state: ScheduleState) -> ScheduleState:
        clock, store = self.runtime.clock, self.runtime.store
        cron = CronSchedule(state.cron, state.timezone)
        now = clock.utcnow()
        since = state.last_fire or state.created_at
        grace = min(cron.interval_hint(since), _MAX_GRACE)
        horizon = max(timedelta(seconds=state.catch_up_window), grace)
        if since < now - horizon - grace:
            since = now - horizon - grace  # older ticks can never fire: do not enumerate them
        due = cron.fires_between(since, now)
        on_time = [moment for moment in due if now - moment < grace]
        missed = [moment for moment in due if now - moment >= grace]
        to_fire = list(on_time)
        if missed and state.catch_up == "latest":
            to_fire = [missed[-1], *on_time]
        elif missed and state.catch_up == "all":
            window = timedelta(seconds=state.catch_up_window)
            to_fire = [moment for moment in missed if now - moment <= window] + on_time
        if missed and state.catch_up == "none":
            self._log.info("missed ticks not caught up", schedule=state.name, missed=len(missed))
        changes: dict[str, Any] = {}
        queued = list(state.queued)
        last_job_id = state.last_job_id
        last_error = state.last_error
        if queued and not await self._is_unfinished(last_job_id):
            fire = queued.pop(0)
            error = await self._fire(state, fire)
            last_job_id = fire_job_id(state.name, fire)
            last_error = error if error is not None else last_error
        for fire in to_fire:
            job_id = fire_job_id(state.name, fire)
            if await store.get(job_id) is not None:
                last_job_id = job_id  # another scheduler fired it
                continue
            if await self._is_unfinished(last_job_id):
                if state.overlap == "skip":
                    self._log.info("tick skipped: previous run unfinished", schedule=state.name, previous=last_job_id)
                    continue
                if state.overlap == "queue":
                    queued.append(fire)
                    continue
            error = await self._fire(state, fire)
            last_error = error
            if error is None:
                last_job_id = job_id
        if due:
            changes["last_fire"] = max(due[-1], state.last_fire) if state.last_fire else due[-1]
        changes.update(
            next_fire=cron.next_after(now),
            queued=queued,
            last_job_id=last_job_id,
            last_error=last_error,
        )
        updated = state.model_copy(update={**changes, "version": state.version + 1, "updated_at": now})
        if updated.model_dump(exclude={"version", "updated_at"}) == state.model_dump(exclude={"version", "updated_at"}):
            return state
        return await store.save_schedule(updated, expected_version=state.version)

    async def _is_unfinished(self, job_id: str | None) -> bool:
        if job_id is None:
            return False
        job: Job | None = await self.runtime.store.get(job_id)
        return job is not None and job.status in _UNFINISHED

    async def _fire(self, state: ScheduleState, fire: datetime) -> str | None:
        """Make the input and create the tick's job (if absent). Returns the error of ``on_schedule``."""
        job_id = fire_job_id(state.name, fire)
        try:
            value = await call_on_schedule(self.runtime.on_schedule_for(state.name), fire)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            self._log.warning("on_schedule failed", schedule=state.name, fire_time=fire.isoformat(), error=message)
            return message
        metadata: dict[str, JsonValue] = {"schedule": state.name, "fire_time": fire.isoformat()}
        created = await self.runtime.start_scheduled(job_id, value, metadata)
        if created:
            self._log.info("schedule fired", schedule=state.name, job_id=job_id)
        return None
