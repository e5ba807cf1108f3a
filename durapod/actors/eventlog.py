"""A job's event log as its actor writes it: sequence numbers, batching, live fan-out, replay marks.

Events are numbered by ``seq`` (rising by one within the job) and persisted in small batches: when
``batch_size`` events are buffered, when the worker's :class:`Flusher` comes round (every
``flush_delay`` seconds while any log of the worker holds events), and with the write that settles the
job. So a token stream costs one store write per batch, not per token, and a job that settles quickly
costs no write of its own for its events. The buffer exists only while events wait in it.

Live subscribers get a batch once its write has committed, never before: a ``seq`` anyone has seen is in
the store, so the execution that takes over after a crash (which numbers on from the last *logged* seq)
never gives it to another event. A consumer that resumes after the last seq it saw finds no gap and no
seq reused. Events buffered when a worker dies were never shown to anyone and are simply gone.

After a crash, the next execution re-runs the agent from its last checkpoint. Events it emits while
replaying journaled steps are already in the log and are not emitted again. The output streamed after
the checkpoint by an execution that stopped there is void: the next execution logs a ``step_restarted``
event naming the first abandoned ``seq`` before it streams that step again. The first events it emits
past the checkpoint after a crash also carry ``replayed=True`` (they repeat what the dead execution had
logged, if the agent is deterministic).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Any

from pydantic import JsonValue

from durapod.errors import StaleOwnerError
from durapod.stores.base import Store

__all__ = ["EventLog", "Flusher", "is_agent_event"]

#: Event types the runtime writes; every other type comes from the agent.
_RUNTIME_TYPES = frozenset({"job_status", "step", "step_restarted", "error", "done", "interrupt"})
#: Event types that close the output of a step: what the agent streamed before them is not abandoned.
_CHECKPOINTS = frozenset({"step", "step_restarted", "done"})

_BATCH_SIZE = 64
_FLUSH_DELAY = 0.05


def is_agent_event(event: dict[str, JsonValue]) -> bool:
    """True for an event produced by the agent (tokens, tool calls, custom events)."""
    return event.get("type") not in _RUNTIME_TYPES


class Flusher:
    """Persists the buffered events of a worker's logs every ``delay`` seconds: one timer for the worker
    (armed only while some log holds events), not one per job. Owned by the worker, which closes it."""

    __slots__ = ("_delay", "_dirty", "_task", "_timer")

    def __init__(self, delay: float = _FLUSH_DELAY) -> None:
        self._delay = delay
        self._dirty: set[EventLog] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def mark(self, log: EventLog) -> None:
        """``log`` holds events: flush it at the next round."""
        self._dirty.add(log)
        if self._timer is None and (self._task is None or self._task.done()):
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._round)

    def unmark(self, log: EventLog) -> None:
        """``log`` was flushed (or its events were taken by a write) meanwhile."""
        self._dirty.discard(log)

    def _round(self) -> None:
        self._timer = None
        if self._dirty:
            logs, self._dirty = self._dirty, set()
            self._task = asyncio.get_running_loop().create_task(self._flush(logs), name="durapod-event-flush")

    async def _flush(self, logs: set[EventLog]) -> None:
        await asyncio.gather(*(log.flush_quietly() for log in logs))
        if self._dirty and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._round)

    async def close(self) -> None:
        """Stop the timer and let a round in progress finish."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait([task])


class EventLog:
    """One job's event log writer, owned by the job's actor."""

    __slots__ = (
        "_buffer",
        "_epoch",
        "_flusher",
        "_in_flight",
        "_listening",
        "_loaded",
        "_logged_steps",
        "_publish",
        "_store",
        "job_id",
        "next_seq",
        "partial_from",
        "stale_agent_events",
    )

    def __init__(
        self,
        job_id: str,
        store: Store,
        publish: Callable[[str, dict[str, JsonValue]], None],
        flusher: Flusher,
        *,
        fresh: bool,
        listening: Callable[[str], bool] | None = None,
    ) -> None:
        self.job_id = job_id
        self._store = store
        self._publish = publish
        self._listening = listening  # whether the job has live subscribers (None: assume it has)
        self._flusher = flusher
        self._epoch: int | None = None
        self._buffer: list[dict[str, JsonValue]] | None = None
        self._in_flight: asyncio.Future[None] | None = None  # a flush being written
        self._loaded = fresh
        self.next_seq = 0
        self.stale_agent_events = 0
        #: the seq of the first agent event logged since the last checkpoint (None when there is none)
        self.partial_from: int | None = None
        self._logged_steps: set[int] | None = None  # the indexes of the step events logged (made when needed)

    @property
    def is_loaded(self) -> bool:
        """True once the log's numbering is known (a new job's log is empty: it needs no reading)."""
        return self._loaded

    def set_epoch(self, epoch: int) -> None:
        """Fence the log's writes by ``epoch``: a worker that lost the job cannot add to its log."""
        self._epoch = epoch

    async def load(self) -> None:
        """Read the logged events once: where numbering continues and what a replay repeats."""
        if self._loaded:
            return
        logged = await self._store.read_events(self.job_id)
        self._loaded = True
        if not logged:
            return
        last = logged[-1].get("seq")
        self.next_seq = (last if isinstance(last, int) else len(logged) - 1) + 1
        for event in logged:
            self._track_partial(event)
        trailing = 0
        for event in reversed(logged):
            if not is_agent_event(event):
                break
            trailing += 1
        self.stale_agent_events = trailing

    def _track_partial(self, event: dict[str, JsonValue]) -> None:
        kind = event.get("type")
        if kind in _CHECKPOINTS:
            self.partial_from = None
            index = event.get("index")
            if kind == "step" and isinstance(index, int):
                if self._logged_steps is None:
                    self._logged_steps = set()
                self._logged_steps.add(index)
        elif self.partial_from is None and kind not in _RUNTIME_TYPES:
            self.partial_from = _seq(event)

    def restart_step(self, journaled: Collection[int]) -> None:
        """An execution starts with the steps ``journaled`` done: log ``step_restarted`` if an earlier
        execution streamed output past its last checkpoint (abandoned: this execution streams it anew).

        When a journaled step has no ``step`` event in the log (its process died between journaling the
        step and writing the event), the output since the last logged step mixes journaled steps (not
        streamed again) with the abandoned one: nothing is declared abandoned then.
        """
        partial_from, self.partial_from = self.partial_from, None
        if partial_from is None or not (self._logged_steps or set()).issuperset(journaled):
            return
        index = max(journaled) + 1 if journaled else 0
        self.append({"type": "step_restarted", "index": index, "from_seq": partial_from})

    def append(self, event: dict[str, JsonValue]) -> bool:
        """Number and buffer one event. True when the buffer is full and should be flushed.

        Live subscribers get it once it is written (by :meth:`flush`, or by a write that calls
        :meth:`publish` once committed).
        """
        event["job_id"] = self.job_id
        event["seq"] = self.next_seq
        self.next_seq += 1
        if self.stale_agent_events:
            if is_agent_event(event):
                self.stale_agent_events -= 1
                event["replayed"] = True
            elif event.get("type") == "error" or _settled_status(event):
                self.stale_agent_events = 0  # that execution ended: the next one is new, not a replay
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = []
            self._flusher.mark(self)
        buffer.append(event)
        self._track_partial(event)
        return len(buffer) >= _BATCH_SIZE

    def number_step(self) -> int:
        """Number the ``step`` event that journaling a step gives the log: the store derives it from the
        step's record (:attr:`StepRecord.event_seq <durapod.models.StepRecord.event_seq>`), so it is not
        buffered. Returns its seq. (The steps whose events are logged matter to :meth:`restart_step`
        only, at the start of an execution: :meth:`load` reads them.)"""
        seq = self.next_seq
        self.next_seq += 1
        self.partial_from = None  # the output streamed before it is the step's
        return seq

    def number_status(self, *, running: bool) -> int:
        """Number the ``job_status`` event a write of the job logs (derived from that write: see
        ``Store.save``'s ``status_seq``). Returns its seq."""
        seq = self.next_seq
        self.next_seq += 1
        if not running:
            self.stale_agent_events = 0  # that execution ended: the next one is new, not a replay
        return seq

    def unnumber(self, seq: int) -> None:
        """The write that was to log ``seq`` failed: the number is free again if it was the last given
        (a write started since keeps its own)."""
        if self.next_seq == seq + 1:
            self.next_seq = seq

    def publish(self, events: list[dict[str, JsonValue]]) -> None:
        """Hand events taken by a write to the live subscribers, once that write has committed."""
        for event in events:
            self._publish(self.job_id, event)

    def publish_derived(self, make: Callable[[], dict[str, JsonValue]]) -> None:
        """Hand an event a committed write derived (a step, a status) to the live subscribers: made by
        ``make`` only if the job has any."""
        if self._listening is None or self._listening(self.job_id):
            self._publish(self.job_id, make())

    async def take(self) -> list[dict[str, JsonValue]]:
        """Everything buffered, for a write that logs it (after a flush in progress has finished)."""
        while self._in_flight is not None:
            await asyncio.wait([self._in_flight])
        return self._take_buffer()

    def take_now(self) -> list[dict[str, JsonValue]] | None:
        """What :meth:`take` gives, without awaiting: None while a flush is being written (then await
        :meth:`take`). A job's writes take its events this way: most find no flush in progress."""
        if self._in_flight is not None:
            return None
        return self._take_buffer()

    def _take_buffer(self) -> list[dict[str, JsonValue]]:
        batch = self._buffer
        if batch is None:
            return []  # nothing buffered: the flusher holds no mark of this log either
        self._buffer = None
        self._flusher.unmark(self)
        return batch

    def give_back(self, batch: list[dict[str, JsonValue]], unwritten: list[dict[str, JsonValue]]) -> None:
        """A write that was to log ``batch`` failed: keep its events for the next flush, but drop those
        that described the failed write itself (``unwritten``, the last ones numbered)."""
        dropped = {id(event) for event in unwritten}
        kept = [event for event in batch if id(event) not in dropped]
        self.next_seq -= len(unwritten)
        if kept:
            self._buffer = kept + (self._buffer or [])
            self._flusher.mark(self)

    def discard(self) -> None:
        """Drop what is buffered: another worker owns the job now and writes its log."""
        if self._buffer is not None:  # the flusher marks a log only while it holds events
            self._buffer = None
            self._flusher.unmark(self)

    async def flush(self) -> None:
        """Persist what is buffered, in order (one store write)."""
        batch = await self.take()
        if not batch:
            return
        done = self._in_flight = asyncio.get_running_loop().create_future()
        try:
            await self._store.append_events(self.job_id, batch, epoch=self._epoch)
            self.publish(batch)  # before the next write of the log can start: subscribers see them in order
        except StaleOwnerError:
            pass  # another worker owns the job and writes its log: ours is stale
        except BaseException:
            self._buffer = batch + (self._buffer or [])  # keep them for the next flush: nothing is lost
            self._flusher.mark(self)
            raise
        finally:
            self._in_flight = None
            done.set_result(None)

    async def flush_quietly(self) -> None:
        """Flush; a failure leaves the events buffered for a later round (the settle write at the latest)."""
        try:
            await self.flush()
        except Exception:  # kept buffered, and marked again for the next round, by flush()
            return

    async def close(self) -> None:
        """Write what is still buffered (the actor stops without a write that takes it: it crashed). If
        that fails, drop it: nobody has seen those events, and the actor that runs the job next numbers
        on from the logged ones, so a late write of ours must not land on its seqs."""
        if self._buffer is None and self._in_flight is None:
            return  # the common end: the job's last write took every event
        await self.flush_quietly()
        self.discard()


def _settled_status(event: dict[str, Any]) -> bool:
    job = event.get("job")
    return event.get("type") == "job_status" and isinstance(job, dict) and job.get("status") != "running"


def _seq(event: dict[str, Any]) -> int:
    seq = event.get("seq")
    return seq if isinstance(seq, int) else -1
