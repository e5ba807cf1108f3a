"""Following a job's events: the log first, then live events, until the job settles.

Live events reach in-process subscribers through bounded queues, once their write has committed (so
every event a subscriber sees is in the store's log). A follower subscribes first, then reads the log,
then takes live events, dropping those the log gave it already (by ``seq``): an event committed while
the log was read is in one or the other, never lost. A subscriber that falls behind is marked lagging
(the agent never waits for it) and catches up from the log. Subscribers in another process read the log,
polling.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from pydantic import JsonValue

from durapod.errors import JobNotFound
from durapod.events import Event, JobStatusEvent, parse_event
from durapod.stores.base import Store

__all__ = ["EventSource", "Subscribers", "Subscription", "follow"]

SUBSCRIBER_BUFFER = 1024


@dataclass(eq=False)
class Subscription:
    """One consumer's live queue of a job's events."""

    job_id: str
    queue: asyncio.Queue[dict[str, JsonValue]] = field(default_factory=lambda: asyncio.Queue(SUBSCRIBER_BUFFER))
    lagging: bool = False


class Subscribers:
    """The live subscriptions of this process, by job id."""

    def __init__(self) -> None:
        self._by_job: dict[str, list[Subscription]] = {}

    @contextlib.contextmanager
    def subscribe(self, job_id: str) -> Iterator[Subscription]:
        """Register a subscription for the duration of the ``with`` block."""
        subscription = Subscription(job_id)
        self._by_job.setdefault(job_id, []).append(subscription)
        try:
            yield subscription
        finally:
            subscriptions = self._by_job.get(job_id, [])
            if subscription in subscriptions:
                subscriptions.remove(subscription)
            if not subscriptions:
                self._by_job.pop(job_id, None)

    def listening(self, job_id: str) -> bool:
        """True while the job has a live subscriber."""
        return job_id in self._by_job

    def publish(self, job_id: str, event: dict[str, JsonValue]) -> None:
        """Offer ``event`` to every subscriber of the job; never blocks, never fails the publisher."""
        for subscription in self._by_job.get(job_id, ()):
            if subscription.lagging:
                continue
            try:
                subscription.queue.put_nowait(event)
            except asyncio.QueueFull:
                subscription.lagging = True  # it will catch up from the log


@dataclass
class EventSource:
    """Where a follower reads events: the store's log and this process's live events."""

    store: Store
    subscribers: Subscribers
    poll_interval: float

    def subscribe(self, job_id: str) -> contextlib.AbstractContextManager[Subscription]:
        """A live subscription to the job's events."""
        return self.subscribers.subscribe(job_id)

    async def since(self, job_id: str, after: int) -> list[dict[str, JsonValue]]:
        """Every logged event with ``seq > after``, in order."""
        return await self.store.read_events(job_id, after=after)


def _seq(event: dict[str, JsonValue]) -> int:
    seq = event.get("seq")
    return seq if isinstance(seq, int) else -1


def _is_final(event: Event) -> bool:
    return isinstance(event, JobStatusEvent) and event.job.status.is_settled


async def follow(
    source: EventSource, job_id: str, after: int, subscription: Subscription | None = None
) -> AsyncIterator[Event]:
    """Yield the job's events with ``seq > after`` until a ``job_status`` event shows it settled."""
    if subscription is None:
        with source.subscribe(job_id) as own:
            async for event in follow(source, job_id, after, own):
                yield event
        return
    last = after
    fast = min(0.01, source.poll_interval)
    delay = fast
    catch_up = True
    while True:
        if subscription.lagging:
            subscription.lagging = False
            while not subscription.queue.empty():
                subscription.queue.get_nowait()
            catch_up = True
        if catch_up:
            catch_up = False
            pending = await source.since(job_id, last)
            for data in pending:
                event = parse_event(data)
                last = event.seq
                yield event
                if _is_final(event):
                    return
            if not pending:
                job = await source.store.get(job_id)
                if job is None:
                    raise JobNotFound(job_id)
                # Settled without a final status event (changed directly in the store): re-check once,
                # since the event may have been logged between the two reads.
                if job.status.is_settled and not await source.since(job_id, last):
                    return
        # Live events wake us at once; when none come, poll the log (writers in other processes).
        try:
            async with asyncio.timeout(delay):
                data = await subscription.queue.get()
        except TimeoutError:
            delay = min(delay * 2, source.poll_interval)
            catch_up = True
            continue
        delay = fast
        while True:
            seq = _seq(data)
            if seq == last + 1:
                event = parse_event(data)
                last = seq
                yield event
                if _is_final(event):
                    return
            elif seq > last + 1:
                catch_up = True  # a gap: we missed some; the log (and the actor's buffer) has them
                break
            try:
                data = subscription.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
