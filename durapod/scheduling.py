"""Scheduler: an agent's named schedules, kept in the store, and the scheduler actor that fires them.

A service of :class:`~durapod.DurableAgent` (which delegates its schedule calls here). The actor runs as a
permanent child of the worker's root supervisor once ``start()`` is called.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import JsonValue

from durapod.actors.scheduler import SchedulerActor
from durapod.errors import VersionConflict
from durapod.lowlevel.clock import Clock
from durapod.lowlevel.policy import ChildSpec, RestartType
from durapod.schedules import CatchUp, CronSchedule, Overlap, ScheduleState, check_policy, validate_schedule_name
from durapod.stores.base import Store
from durapod.worker import Worker

__all__ = ["ScheduleRequest", "Scheduler"]


@dataclass(frozen=True, slots=True)
class ScheduleRequest:
    """A schedule as registered in code (its ``on_schedule`` lives only in this process)."""

    cron: str
    on_schedule: Callable[..., Any] | None
    timezone: str
    overlap: Overlap
    catch_up: CatchUp
    catch_up_window: float


class Scheduler:
    """The schedules of one agent: registration, changes, and the actor that fires them.

    Args:
        store: the (patient) store the schedules live in.
        worker: the worker that runs fired jobs and hosts the scheduler actor.
        name: the agent's name.
        timezone: the default timezone of new schedules.
        clock: time source.
        start_fired: creates a fire's job if absent and runs it on the worker; True if it created it.
    """

    def __init__(
        self,
        store: Store,
        worker: Worker,
        *,
        name: str,
        timezone: str,
        clock: Clock,
        start_fired: Callable[[str, JsonValue, dict[str, JsonValue]], Awaitable[bool]],
    ) -> None:
        self.store = store
        self.worker = worker
        self.name = name
        self.worker_id = worker.worker_id
        self.timezone = timezone
        self.clock = clock
        self._start_fired = start_fired
        self._on_schedule: dict[str, Callable[..., Any] | None] = {}
        self._pending: dict[str, ScheduleRequest] = {}
        self._actor: SchedulerActor | None = None
        self._starting: asyncio.Task[Any] | None = None

    def register(self, name: str, request: ScheduleRequest) -> None:
        """Remember a schedule given before the worker runs; it is saved when the worker opens."""
        self._on_schedule[name] = request.on_schedule
        self._pending[name] = request

    async def save_pending(self) -> None:
        """Save the schedules registered before the worker ran."""
        for name, request in list(self._pending.items()):
            await self._save(name, request)

    async def schedule(
        self,
        name: str,
        cron: str,
        on_schedule: Callable[..., Any] | None = None,
        *,
        timezone: str | None = None,
        overlap: Overlap = "skip",
        catch_up: CatchUp = "none",
        catch_up_window: float = 86_400.0,
    ) -> ScheduleState:
        """Add (or change) a named schedule (see :meth:`DurableAgent.schedule`)."""
        validate_schedule_name(name)
        if on_schedule is not None and not callable(on_schedule):
            raise TypeError(f"on_schedule must be callable or None, got {on_schedule!r}")
        zone = timezone if timezone is not None else self.timezone
        CronSchedule(cron, zone)
        check_policy(overlap, catch_up, catch_up_window)
        request = ScheduleRequest(cron, on_schedule, zone, overlap, catch_up, float(catch_up_window))
        self._on_schedule[name] = on_schedule
        if not self.worker.is_running:
            self._pending[name] = request
            now = self.clock.utcnow()
            return ScheduleState(agent=self.name, name=name, cron=cron, timezone=zone, created_at=now, updated_at=now)
        state = await self._save(name, request)
        self._wake()
        return state

    async def schedules(self) -> builtins.list[ScheduleState]:
        """This agent's schedules as stored, by name."""
        return await self.store.list_schedules(self.name)

    async def pause_schedule(self, name: str) -> ScheduleState:
        """Stop a schedule from firing until :meth:`resume_schedule`. Raises ``KeyError`` if unknown."""
        return await self._update(name, paused=True)

    async def resume_schedule(self, name: str) -> ScheduleState:
        """Let a paused schedule fire again (from its next tick). Raises ``KeyError`` if unknown."""
        return await self._update(name, paused=False, last_fire=self.clock.utcnow())

    async def remove_schedule(self, name: str) -> bool:
        """Delete a schedule. True if it existed."""
        self._on_schedule.pop(name, None)
        self._pending.pop(name, None)
        removed = await self.store.delete_schedule(self.name, name)
        self._wake()
        return removed

    def start(self) -> None:
        """Start firing (idempotent). The worker must be running."""
        if not self.worker.is_running:
            raise RuntimeError(
                f"agent {self.name!r} is not running: use `async with durable:` before start_scheduler()"
            )
        root = self.worker.root
        if root.has_child("scheduler") or (self._starting is not None and not self._starting.done()):
            return

        def build() -> SchedulerActor:
            self._actor = SchedulerActor(self)
            return self._actor

        spec = ChildSpec("scheduler", build, RestartType.PERMANENT, shutdown_timeout=1.0)
        self._starting = asyncio.get_running_loop().create_task(root.start_child(spec), name="durapod-scheduler-start")

    async def stop(self) -> None:
        """Stop firing at once (no new fire starts; jobs already created run on). Idempotent."""
        starting, self._starting = self._starting, None
        if starting is not None:
            await asyncio.gather(starting, return_exceptions=True)
        if self.worker.is_running:
            root = self.worker.root
            ref = root.child("scheduler")
            if ref is not None:
                ref.kill()
            await root.terminate_child("scheduler")
        self._actor = None

    @property
    def is_running(self) -> bool:
        """True while the scheduler actor runs."""
        return self.worker.is_running and self.worker.root.has_child("scheduler")

    # -- what the scheduler actor calls ----------------------------------------------------------

    def on_schedule_for(self, schedule: str) -> Callable[..., Any] | None:
        """The ``on_schedule`` registered here for ``schedule``."""
        return self._on_schedule.get(schedule)

    async def start_scheduled(self, job_id: str, input: JsonValue, metadata: dict[str, JsonValue]) -> bool:
        """Create a fire's job if absent and run it here."""
        return await self._start_fired(job_id, input, metadata)

    # -- internals -------------------------------------------------------------------------------

    async def _save(self, name: str, request: ScheduleRequest) -> ScheduleState:
        while True:
            now = self.clock.utcnow()
            current = await self.store.get_schedule(self.name, name)
            fields = {
                "cron": request.cron,
                "timezone": request.timezone,
                "overlap": request.overlap,
                "catch_up": request.catch_up,
                "catch_up_window": request.catch_up_window,
            }
            try:
                if current is None:
                    state = ScheduleState(agent=self.name, name=name, created_at=now, updated_at=now, **fields)
                    state = await self.store.save_schedule(
                        state.model_copy(
                            update={"next_fire": CronSchedule(request.cron, request.timezone).next_after(now)}
                        ),
                        expected_version=None,
                    )
                elif all(getattr(current, key) == value for key, value in fields.items()):
                    state = current
                else:
                    changed = current.model_copy(
                        update={
                            **fields,
                            "next_fire": CronSchedule(request.cron, request.timezone).next_after(now),
                            "version": current.version + 1,
                            "updated_at": now,
                        }
                    )
                    state = await self.store.save_schedule(changed, expected_version=current.version)
            except VersionConflict:
                continue
            self._pending.pop(name, None)
            return state

    async def _update(self, name: str, **changes: Any) -> ScheduleState:
        while True:
            current = await self.store.get_schedule(self.name, name)
            if current is None:
                raise KeyError(f"agent {self.name!r} has no schedule {name!r}")
            updated = current.model_copy(
                update={**changes, "version": current.version + 1, "updated_at": self.clock.utcnow()}
            )
            try:
                state = await self.store.save_schedule(updated, expected_version=current.version)
            except VersionConflict:
                continue
            self._wake()
            return state

    def _wake(self) -> None:
        if self._actor is not None and self.is_running:
            self._actor.wake()
