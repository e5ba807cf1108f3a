"""How a job actor is controlled: the messages it is told, its mailbox, and when they interrupt its task.

The actor's mailbox (created on the first message) holds control messages: :class:`Pause`,
:class:`Cancel`, :class:`LeaseLost` and :class:`Drain`. ``tell`` never blocks: it queues the message and,
where the message cannot wait for the agent's next step boundary, interrupts the task at once (cancel,
lease lost, a pause of an agent that has no steps, the pause and drain timeouts). The task reads its
mailbox at every step boundary (``ctx.step`` before and after running a step) and when it is interrupted.

:class:`JobControl` holds that state for one actor, which owns it; the job's
:class:`~durapod.context.JobContext` calls it at step boundaries. The messages are importable from
:mod:`durapod.actors.job`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from durapod.context import Suspend
from durapod.lowlevel.actor import ControlMessage
from durapod.lowlevel.clock import Timer
from durapod.lowlevel.mailbox import Mailbox, OverflowPolicy

if TYPE_CHECKING:
    from durapod.actors._job_runtime import Exit, JobRuntime

__all__ = ["Cancel", "Drain", "JobControl", "LeaseLost", "Pause"]


class Pause(ControlMessage):
    """Pause the job: at the next step boundary, or after ``pause_timeout`` by cancelling the step."""

    __slots__ = ()


class Cancel(ControlMessage):
    """Cancel the job at once; cancelled is terminal."""

    __slots__ = ()


class LeaseLost(ControlMessage):
    """Another worker owns the job now (or its lease could not be renewed): stop, write nothing."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Drain(ControlMessage):
    """The worker is stopping: hand the job back at its next step boundary, or after ``grace`` seconds."""

    grace: float


_INTERRUPTS = ("drain", "pause", "cancel", "lease lost")  # weakest first: a stronger reason wins


class JobControl:
    """One job actor's mailbox, why its task was interrupted, and whether it may be interrupted now.

    Made and owned by its :class:`~durapod.actors.job.JobActor`; users never build one.
    """

    __slots__ = (
        "_cancelled_by_us",
        "_in_step",
        "_job_id",
        "_mailbox",
        "_runtime",
        "_timer",
        "interruptible",
        "reason",
        "running_agent",
        "task",
        "was_cancelled",
    )

    def __init__(self, job_id: str, runtime: JobRuntime) -> None:
        #: the actor's task, set by the worker once it started it
        self.task: asyncio.Task[Exit] | None = None
        self._job_id = job_id
        self._runtime = runtime
        self._mailbox: Mailbox[ControlMessage] | None = None
        self._timer: Timer | None = None
        self.reason: str | None = None  # why the task was interrupted
        self._cancelled_by_us = False
        #: the agent swallowed a cancellation of ours (and went on, or returned)
        self.was_cancelled = False
        #: the agent runs (a message that can wait for its next step boundary waits for it)
        self.running_agent = False
        self.interruptible = False  # only the wait for a slot and the agent itself are interrupted
        self._in_step = 0  # steps running now: a drain waits for them (up to its grace)

    def tell(self, message: ControlMessage) -> None:
        """Queue a control message; never blocks. Interrupts the task where the message cannot wait."""
        task = self.task
        if task is None or task.done():
            return
        mailbox = self._mailbox
        if mailbox is None:
            mailbox = self._mailbox = Mailbox[ControlMessage]._create(self._job_id, 1, OverflowPolicy.DROP_NEWEST)
        mailbox.put_nowait(message, control=True)
        if isinstance(message, Cancel):
            self._interrupt("cancel")
        elif isinstance(message, LeaseLost):
            self._interrupt("lease lost")
        elif not self.running_agent:
            # still waiting to start (a concurrency slot, its first write): nothing to wait for
            self._interrupt("drain" if isinstance(message, Drain) else "pause")
        elif isinstance(message, Pause):
            if not self._runtime.invoker.takes_context:
                self._interrupt("pause")  # a plain agent has no step boundary: it re-runs on resume
            else:
                self._arm(self._runtime.pause_timeout, "pause")
        elif isinstance(message, Drain):
            if self._in_step or not self._runtime.invoker.takes_context:
                self._arm(message.grace, "drain")  # let the steps in flight finish and be journaled
            else:
                self._interrupt("drain")  # between steps: nothing is lost by stopping now

    def _arm(self, delay: float, reason: str) -> None:
        if self._timer is None:
            self._timer = self._runtime.clock.call_later(delay, lambda: self._interrupt(reason))

    def _interrupt(self, reason: str) -> None:
        current = self.reason
        if current is not None and _INTERRUPTS.index(current) >= _INTERRUPTS.index(reason):
            return
        self.reason = reason
        task = self.task
        if self.interruptible and task is not None and not task.done() and not self._cancelled_by_us:
            self._cancelled_by_us = True
            task.cancel()

    def cancel_timer(self) -> None:
        """The task ends: a pause or drain timeout armed for it has nothing left to interrupt."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def step_started(self) -> None:
        """A step's function starts running (its result is not journaled yet)."""
        self._in_step += 1

    def step_finished(self) -> None:
        """A step ended: journaled, or failed."""
        self._in_step -= 1

    def at_boundary(self) -> None:
        """Read the mailbox at a step boundary: a pause or a drain stops the agent here."""
        mailbox = self._mailbox
        if mailbox is None:
            return
        for message in mailbox.drain():
            if isinstance(message, Pause):
                self.reason = self.reason or "pause"
            elif isinstance(message, Drain):
                self.reason = self.reason or "drain"
        if self.reason in ("pause", "drain"):
            raise Suspend(None)

    def at_boundary_quietly(self) -> None:
        """Take what the mailbox holds into account without raising (the agent is stopped already)."""
        with contextlib.suppress(Suspend):
            self.at_boundary()

    def acknowledge_cancel(self) -> bool:
        """True if the cancellation is ours (it is then consumed); False if it came from outside."""
        task = self.task
        if not self._cancelled_by_us or task is None:
            return False
        self._cancelled_by_us = False
        return task.uncancel() == 0

    def stop_interrupts(self) -> None:
        """The agent has stopped: from here on a message only records its reason (no more cancels)."""
        self.running_agent = self.interruptible = False
        if self._cancelled_by_us:  # the agent swallowed our cancellation: consume it
            self.acknowledge_cancel()
            self.was_cancelled = True
