"""LeaseKeeper: renews the leases of the jobs a worker runs and delivers control requests to them.

Every ``renew_interval`` seconds it extends the lease of every live job actor. A job whose lease another
worker took is told :class:`~durapod.actors.job.LeaseLost`. When renewals keep failing (the store is
down) and the leases could expire before the next try, it stops every job actor first, so that no job
ever has two live owners.

Every ``control_interval`` seconds it takes the control requests (pause, cancel) that other processes
left in the store for its jobs and hands them to the job actors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from durapod._log import get_logger
from durapod.actors.job import Cancel, LeaseLost, Pause
from durapod.lowlevel.actor import Actor, ActorRef, ControlMessage
from durapod.lowlevel.clock import Clock
from durapod.stores.base import Store

__all__ = ["LeaseKeeper"]

_log = get_logger("durapod.lease")


class _Tick(ControlMessage):
    __slots__ = ()


_TICK = _Tick()


class LeaseKeeper(Actor[Any]):
    """A permanent child of a worker's root supervisor. Made by ``DurableAgent``."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        worker_id: str,
        lease_ttl: float,
        live_jobs: Callable[[], dict[str, ActorRef[Any] | None]],
        *,
        control_interval: float = 0.1,
    ) -> None:
        self.store = store
        self.clock = clock
        self.worker_id = worker_id
        self.lease_ttl = lease_ttl
        self.renew_interval = lease_ttl / 3
        self.control_interval = min(control_interval, self.renew_interval)
        self._live_jobs = live_jobs
        self._last_renewal = clock.monotonic()
        self._next_renewal = self._last_renewal + self.renew_interval
        self._timer: asyncio.Task[None] | None = None
        self._log = _log.bind(worker_id=worker_id)

    async def on_start(self) -> None:
        self._timer = asyncio.create_task(self._ticks())

    async def on_stop(self, error: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()

    async def _ticks(self) -> None:
        # A store that can signal control requests (Redis pub/sub) wakes us at once; the tick also runs
        # every control_interval, so a lost signal only delays a request until then.
        wait_for_control = getattr(self.store, "wait_for_control", None)
        while True:
            if wait_for_control is not None and self._live_jobs():
                try:
                    await wait_for_control(self.control_interval)
                except Exception:
                    await self.clock.sleep(self.control_interval)
            else:
                await self.clock.sleep(self.control_interval)
            self.ref.tell(_TICK)

    async def receive(self, message: Any) -> Any:
        if message is _TICK:
            await self.tick()
        return None

    async def tick(self) -> None:
        """Deliver control requests, and renew leases when due."""
        jobs = self._live_jobs()
        if not jobs:
            self._last_renewal = self.clock.monotonic()
            return
        try:
            live = [job_id for job_id, ref in jobs.items() if ref is not None]
            for request in await self.store.take_controls(live) if live else ():
                ref = jobs.get(request.job_id)
                if ref is not None:
                    ref.tell(Pause() if request.kind == "pause" else Cancel())
            now = self.clock.monotonic()
            if now < self._next_renewal:
                return
            until = self.clock.utcnow() + timedelta(seconds=self.lease_ttl)
            held = await self.store.renew_leases(self.worker_id, list(jobs), lease_until=until)
        except Exception as exc:
            self._on_store_failure(jobs, exc)
            return
        self._last_renewal = now
        self._next_renewal = now + self.renew_interval
        for job_id, ref in jobs.items():
            if job_id not in held and ref is not None:
                self._log.warning("lease lost", job_id=job_id)
                ref.tell(LeaseLost())

    def _on_store_failure(self, jobs: dict[str, ActorRef[Any] | None], exc: Exception) -> None:
        since = self.clock.monotonic() - self._last_renewal
        # Stop before the lease can expire: one more failed interval and another worker may claim them.
        if since + self.renew_interval >= self.lease_ttl:
            self._log.error("lease renewal keeps failing; stopping job actors", error=repr(exc), jobs=len(jobs))
            for ref in jobs.values():
                if ref is not None:
                    ref.tell(LeaseLost())
        else:
            self._log.warning("lease renewal failed; will retry", error=repr(exc))
