"""Server-Sent Events for one job: its logged and live events, followed through pauses, with keep-alives.

Each event goes out as ``id: <seq>`` / ``event: <type>`` / ``data: <public JSON>``, so a browser's
``EventSource`` (or any SSE client) reconnects with ``Last-Event-ID`` and misses nothing. The stream ends
with an ``end`` event (no id) once the job is completed, failed or cancelled (or, with ``until=settled``,
at its next settle), and with a ``shutdown`` event when the server stops.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from pydantic import JsonValue

from durapod._log import get_logger
from durapod._util import cancel_and_wait
from durapod.errors import JobNotFound
from durapod.events import Event
from durapod.models import Job, JobStatus
from durapod.web._views import event_view

__all__ = ["KEEP_ALIVE_INTERVAL", "OpenStreams", "StreamSource", "job_events"]

#: Seconds between keep-alive comments on a quiet stream (proxies drop idle connections).
KEEP_ALIVE_INTERVAL: Final = 15.0
#: How long a browser waits before reconnecting a dropped stream (milliseconds, the SSE ``retry:``).
RECONNECT_DELAY_MS: Final = 2000

_log = get_logger("durapod.web")


@dataclass(frozen=True)
class _Item:
    """What the producer hands the response: an event, or (``end``, ``shutdown``, ``error``) why the
    stream ends."""

    kind: Literal["event", "end", "shutdown", "error"]
    event: Event | None = None
    payload: dict[str, JsonValue] = field(default_factory=dict)


_SHUTDOWN: Final = _Item("shutdown", payload={"reason": "server shutting down"})


class StreamSource(Protocol):
    """What a stream reads: a :class:`durapod.Client` or a :class:`durapod.DurableAgent`."""

    async def status(self, job_id: str) -> Job | None: ...

    def stream(self, job_id: str, *, after: int = -1) -> AsyncIterator[Event]: ...


@dataclass(eq=False)
class OpenStreams:
    """The app's open streams, so that a server shutting down can end each one with a final event."""

    queues: set[asyncio.Queue[_Item]] = field(default_factory=set)
    closing: bool = False

    def close(self) -> None:
        """End every open stream with a ``shutdown`` event, and every stream opened from now on at once."""
        self.closing = True
        for queue in self.queues:
            try:
                queue.put_nowait(_SHUTDOWN)
            except asyncio.QueueFull:
                # a slow reader: drop what it has not read (their ids never reached it, so a reconnect
                # with Last-Event-ID gets them again) and end it at once
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(_SHUTDOWN)


def _format(item: _Item) -> bytes:
    if item.event is not None:
        event = item.event
        data = json.dumps(event_view(event), ensure_ascii=False, separators=(",", ":"))
        return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n".encode()
    return f"event: {item.kind}\ndata: {json.dumps(item.payload, separators=(',', ':'))}\n\n".encode()


async def _produce(
    source: StreamSource, job_id: str, after: int, until_settled: bool, poll_interval: float, out: asyncio.Queue[_Item]
) -> None:
    """Feed ``out`` with the job's events after ``after`` until it ends; then put why it ended."""
    last = after
    try:
        while True:
            saw_any = False
            async for event in source.stream(job_id, after=last):
                saw_any = True
                last = event.seq
                await out.put(_Item("event", event))
            if until_settled:
                job = await source.status(job_id)
                status: JsonValue = job.status.value if job is not None else None
                await out.put(_Item("end", payload={"reason": "settled", "status": status, "last_seq": last}))
                return
            if saw_any:
                continue  # it settled once (an old pause in the log, say): read on from there
            job = await source.status(job_id)
            if job is None:
                await out.put(_Item("end", payload={"reason": "deleted", "last_seq": last}))
                return
            if job.status.is_settled and job.status is not JobStatus.PAUSED:
                await out.put(
                    _Item("end", payload={"reason": job.status.value, "status": job.status.value, "last_seq": last})
                )
                return
            # paused: nothing comes until someone resumes it (from this process or another)
            await asyncio.sleep(poll_interval)
    except JobNotFound:
        await out.put(_Item("end", payload={"reason": "deleted", "last_seq": last}))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        _log.warning("event stream failed", job_id=job_id, error=repr(exc))
        await out.put(_Item("error", payload={"error": str(exc), "error_type": type(exc).__name__, "last_seq": last}))


async def job_events(
    source: StreamSource,
    job_id: str,
    *,
    after: int,
    until_settled: bool,
    streams: OpenStreams,
    keep_alive: float = KEEP_ALIVE_INTERVAL,
    poll_interval: float = 0.25,
) -> AsyncIterator[bytes]:
    """The body of a job's ``text/event-stream`` response (the job is known to exist)."""
    queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=256)
    streams.queues.add(queue)
    producer = asyncio.create_task(_produce(source, job_id, after, until_settled, poll_interval, queue))
    try:
        yield f"retry: {RECONNECT_DELAY_MS}\n\n".encode()
        if streams.closing:
            yield _format(_SHUTDOWN)
            return
        while True:
            try:
                async with asyncio.timeout(keep_alive):
                    item = await queue.get()
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            yield _format(item)
            if item.kind != "event":
                return
    finally:
        streams.queues.discard(queue)
        await cancel_and_wait(producer)
