"""The schedule half of DurableAgent: named schedules kept in the store, and the scheduler actor."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import JsonValue

from durapod.actors.scheduler import SchedulerActor
from durapod.errors import VersionConflict
from durapod.lowlevel.actor import ActorRef
from durapod.lowlevel.clock import Clock
from durapod.lowlevel.policy import ChildSpec, RestartType
from durapod.lowlevel.supervisor import Supervisor
from durapod.models import Job, validate_job_id
from durapod.schedules import CatchUp, CronSchedule, Overlap, ScheduleState, check_policy
from durapod.stores.base import Store

__all__ = ["ScheduleRequest", "SchedulingMixin"]


@dataclass(frozen=True, slots=True)
class ScheduleRequest:
    """A schedule as registered in code (its ``on_schedule`` lives only in this process)."""

    cron: str
    on_schedule: Callable[..., Any] | None
    timezone: str
    overlap: Overlap
    catch_up: CatchUp
    catch_up_window: float


class SchedulingMixin:
    """Schedules of a :class:`~durapod.DurableAgent` (see its documentation)."""

    # provided by DurableAgent
    name: str
    worker_id: str
    store: Store
    timezone: str
    clock: Clock
    _patient: Store
    _root: Supervisor | None
    _root_ref: ActorRef[Any] | None
    _on_schedule: dict[str, Callable[..., Any] | None]
    _pending_schedules: dict[str, ScheduleRequest]
    _scheduler: SchedulerActor | None
    _background: set[asyncio.Future[Any]]

    @property
    def is_running(self) -> bool:
        """True between ``open()`` (or ``async with``) and ``aclose()``."""
        return self._root_ref is not None and self._root_ref.is_alive

    def _new_job(self, job_id: str, input: JsonValue, metadata: Any, *, owned: bool) -> Job:
        raise NotImplementedError

    async def _spawn(self, job: Job, *, fresh: bool = False) -> None:
        raise NotImplementedError

    # -- schedules -------------------------------------------------------------------------------

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
        """Add (or change) a named schedule of this agent; it is kept in the store for every replica.

        Args:
            name: unique per agent; job ids of its fires are ``<name>:<UTC fire time>``.
            cron: 5 fields, 6 with a leading seconds field, or an alias such as ``@hourly``.
            on_schedule: makes each run's input (sync or async; given the fire time if it takes an
                argument). None: the input is None.
            timezone: IANA name (default: the agent's ``timezone``).
            overlap: ``skip`` (default), ``allow`` or ``queue``.
            catch_up: ``none`` (default), ``latest`` or ``all`` (within ``catch_up_window`` seconds).

        Raises:
            ValueError: an invalid name, expression, timezone or policy, naming it.
        """
        validate_job_id(name)
        if ":" in name:
            raise ValueError(f"invalid schedule name {name!r}: ':' separates the name from the fire time")
        zone = timezone or self.timezone
        CronSchedule(cron, zone)
        check_policy(overlap, catch_up, catch_up_window)
        request = ScheduleRequest(cron, on_schedule, zone, overlap, catch_up, float(catch_up_window))
        self._on_schedule[name] = on_schedule
        if not self.is_running:
            self._pending_schedules[name] = request
            now = self.clock.utcnow()
            return ScheduleState(agent=self.name, name=name, cron=cron, timezone=zone, created_at=now, updated_at=now)
        state = await self._save_schedule(name, request)
        self._wake_scheduler()
        return state

    async def schedules(self) -> builtins.list[ScheduleState]:
        """This agent's schedules as stored (their last and next fire, last error), by name."""
        return await self._patient.list_schedules(self.name)

    async def pause_schedule(self, name: str) -> ScheduleState:
        """Stop a schedule from firing until :meth:`resume_schedule`. Raises ``KeyError`` if unknown."""
        return await self._update_schedule(name, paused=True)

    async def resume_schedule(self, name: str) -> ScheduleState:
        """Let a paused schedule fire again (from its next tick). Raises ``KeyError`` if unknown."""
        return await self._update_schedule(name, paused=False, last_fire=self.clock.utcnow())

    async def remove_schedule(self, name: str) -> bool:
        """Delete a schedule. True if it existed."""
        self._on_schedule.pop(name, None)
        self._pending_schedules.pop(name, None)
        removed = await self._patient.delete_schedule(self.name, name)
        self._wake_scheduler()
        return removed

    def start_scheduler(self) -> None:
        """Start firing this agent's schedules (idempotent). The worker must be running."""
        root = self._root
        if root is None or not self.is_running:
            raise RuntimeError(f"{self!r} is not running: use `async with durable:` before start_scheduler()")
        if root.has_child("scheduler"):
            return

        def build() -> SchedulerActor:
            self._scheduler = SchedulerActor(self)
            return self._scheduler

        spec = ChildSpec("scheduler", build, RestartType.PERMANENT, shutdown_timeout=1.0)
        task = asyncio.ensure_future(root.start_child(spec))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop_scheduler(self) -> None:
        """Stop firing at once (no new fire starts; jobs already created run on). Idempotent."""
        for task in list(self._background):
            await asyncio.gather(task, return_exceptions=True)
        root = self._root
        if root is not None and root.has_child("scheduler"):
            ref = root.child("scheduler")
            if ref is not None:
                ref.kill()
            await root.terminate_child("scheduler")
        self._scheduler = None

    @property
    def is_scheduling(self) -> bool:
        """True while the scheduler runs."""
        return self._root is not None and self.is_running and self._root.has_child("scheduler")

    def on_schedule_for(self, schedule: str) -> Callable[..., Any] | None:
        """The ``on_schedule`` registered here for ``schedule`` (used by the scheduler)."""
        return self._on_schedule.get(schedule)

    async def start_scheduled(self, job_id: str, input: JsonValue, metadata: dict[str, JsonValue]) -> bool:
        """Create a fire's job if absent and run it here (used by the scheduler)."""
        job = self._new_job(job_id, input, metadata, owned=True)
        stored, created = await self._patient.create(job)
        if created:
            await self._spawn(stored, fresh=True)
        return created

    async def _save_schedule(self, name: str, request: ScheduleRequest) -> ScheduleState:
        while True:
            now = self.clock.utcnow()
            current = await self._patient.get_schedule(self.name, name)
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
                    state = await self._patient.save_schedule(
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
                    state = await self._patient.save_schedule(changed, expected_version=current.version)
            except VersionConflict:
                continue
            self._pending_schedules.pop(name, None)
            return state

    async def _update_schedule(self, name: str, **changes: Any) -> ScheduleState:
        while True:
            current = await self._patient.get_schedule(self.name, name)
            if current is None:
                raise KeyError(f"agent {self.name!r} has no schedule {name!r}")
            updated = current.model_copy(
                update={**changes, "version": current.version + 1, "updated_at": self.clock.utcnow()}
            )
            try:
                state = await self._patient.save_schedule(updated, expected_version=current.version)
            except VersionConflict:
                continue
            self._wake_scheduler()
            return state

    def _wake_scheduler(self) -> None:
        if self._scheduler is not None and self.is_scheduling:
            self._scheduler.wake()
