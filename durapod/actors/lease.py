"""LeaseKeeper: keeps a worker's claim on its jobs and on its id, hands it control requests, takes orphans.

A permanent child of the worker's root supervisor. It wakes every ``control_interval`` seconds (at once
when the store signals a control request, on Redis) and:

- takes the control requests (pause, cancel) that other processes left for the jobs this worker holds
  and hands them to the worker (which tells the job actors);
- every ``lease_ttl / 3`` seconds renews the leases of those jobs and the worker's registration of its
  id; a job whose lease another worker took is reported lost (its actor stops without writing); when
  renewals keep failing (the store is down) and the leases could expire before the next try, every job
  is reported lost first, so that no job ever has two live owners;
- at the same pace claims this agent's orphaned jobs (their owner's lease expired: it died, or lost the
  store for too long) and the sleeping jobs that woke, up to the worker's free capacity, so that a dead
  worker's jobs always continue; and has the worker arm its wake-up timer on the next job to wake.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Protocol

from durapod._log import get_logger
from durapod.lowlevel.actor import Actor, ControlMessage
from durapod.lowlevel.clock import Clock
from durapod.stores.base import ControlRequest, Store

__all__ = ["LeaseKeeper", "LeaseOwner"]


class LeaseOwner(Protocol):
    """What the lease keeper needs of its worker."""

    store: Store
    clock: Clock
    worker_id: str
    lease_ttl: float

    def held_jobs(self) -> list[str]:
        """The ids of the jobs the worker holds: running actors and jobs waiting for their retry timer."""
        ...

    def has_live_actors(self) -> bool:
        """True while any job actor runs here (control requests matter only then)."""
        ...

    async def control(self, request: ControlRequest) -> None:
        """Act on a control request another process left for one of the worker's jobs."""
        ...

    def lost(self, job_ids: list[str]) -> None:
        """The worker no longer holds these jobs: stop their actors without writing."""
        ...

    async def renew_registration(self) -> None:
        """Extend the worker's claim on its id."""
        ...

    async def claim_orphans(self) -> int:
        """Claim and run this agent's orphaned jobs, up to the free capacity. Returns how many."""
        ...

    async def watch_wakeups(self) -> None:
        """Arm the worker's wake-up timer on the next job of its agent asleep in the store."""
        ...


class _Tick(ControlMessage):
    __slots__ = ()


_TICK = _Tick()


class LeaseKeeper(Actor[Any]):
    """Renews leases, delivers control requests, takes over orphans. Made by the worker."""

    def __init__(self, owner: LeaseOwner, *, control_interval: float = 0.1) -> None:
        self.owner = owner
        self.renew_interval = owner.lease_ttl / 3
        self.control_interval = min(control_interval, self.renew_interval)
        clock = owner.clock
        self._last_renewal = clock.monotonic()
        self._next_renewal = self._last_renewal + self.renew_interval
        self._ticker: asyncio.Task[None] | None = None
        self._log = get_logger("durapod.lease", worker_id=owner.worker_id)

    async def on_start(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._ticks(), name="durapod-lease-ticks")

    async def on_stop(self, error: BaseException | None) -> None:
        ticker = self._ticker
        if ticker is not None:
            ticker.cancel()
            await asyncio.wait([ticker])

    async def _ticks(self) -> None:
        # A store that can signal control requests (Redis pub/sub, Postgres NOTIFY) wakes us at once; the tick also runs
        # every control_interval, so a lost signal only delays a request until then.
        store, clock = self.owner.store, self.owner.clock
        while True:
            if store.notifies and self.owner.has_live_actors():
                try:
                    await store.wait_for_control(self.control_interval)
                except Exception:
                    await clock.sleep(self.control_interval)
            else:
                await clock.sleep(self.control_interval)
            self.ref.tell(_TICK)

    async def receive(self, message: Any) -> Any:
        if message is _TICK:
            await self.tick()
        return None

    async def tick(self) -> None:
        """Deliver control requests; renew leases and take orphans when due."""
        owner, clock = self.owner, self.owner.clock
        held = owner.held_jobs()
        try:
            if held:
                for request in await owner.store.take_controls(held):
                    await owner.control(request)
            now = clock.monotonic()
            if now < self._next_renewal:
                return
            await owner.renew_registration()
            if held:
                moment = clock.utcnow()
                until = moment + timedelta(seconds=owner.lease_ttl)
                # jobs that ended meanwhile are missing from the renewal: only those still held count
                renewed = await owner.store.renew_leases(owner.worker_id, held, lease_until=until, now=moment)
                still_held = set(owner.held_jobs())
                lost = [job_id for job_id in held if job_id not in renewed and job_id in still_held]
                if lost:
                    self._log.warning("leases lost", jobs=len(lost), first=lost[0])
                    owner.lost(lost)
        except Exception as exc:
            self._on_store_failure(held, exc)
            return
        self._last_renewal = now
        self._next_renewal = now + self.renew_interval
        try:
            claimed = await owner.claim_orphans()
        except Exception as exc:
            self._log.warning("cannot claim orphaned jobs; will retry", error=repr(exc))
        else:
            if claimed:
                self._log.info("took over orphaned jobs", jobs=claimed)
        try:
            await owner.watch_wakeups()
        except Exception as exc:  # the timer stays as it is; the next renewal asks again
            self._log.warning("cannot read when the next sleeping job wakes; will retry", error=repr(exc))

    def _on_store_failure(self, held: list[str], exc: Exception) -> None:
        since = self.owner.clock.monotonic() - self._last_renewal
        # Stop before the lease can expire: one more failed interval and another worker may claim them.
        if since + self.renew_interval >= self.owner.lease_ttl and held:
            self._log.error("lease renewal keeps failing; stopping job actors", error=repr(exc), jobs=len(held))
            self.owner.lost(held)
        else:
            self._log.warning("lease renewal failed; will retry", error=repr(exc))
