"""What a job actor gets from its worker and what it gives back: :class:`JobRuntime` and :class:`Exit`.

Both the actor (:mod:`durapod.actors.job`) and the code that ends its run
(:mod:`durapod.actors._job_endings`) use them; the worker imports them from :mod:`durapod.actors.job`.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import JsonValue

from durapod._invoke import AgentInvoker
from durapod._log import Logger
from durapod.actors.eventlog import Flusher
from durapod.children import ChildRuntime
from durapod.lowlevel.clock import Clock
from durapod.models import Job, error_text
from durapod.retry import RetryPolicy
from durapod.stores.base import Store

if TYPE_CHECKING:
    from durapod.actors.job import JobActor

__all__ = ["Exit", "JobRuntime"]


class Exit(enum.Enum):
    """How a job actor ended, for its supervisor."""

    DONE = "done"
    """Nothing more to do here: the job settled, or it changed elsewhere."""
    RETRY = "retry"
    """The job waits for its durable retry timer (``next_attempt_at``): restart the actor then."""
    ASLEEP = "asleep"
    """The job sleeps (``ctx.sleep``), released in the store with a lease that ends when it wakes: the
    worker keeps only the wake time, and then any worker of the agent may claim it."""
    HANDED_BACK = "handed back"
    """The worker is draining: the job is pending again, its lease released, for any worker."""
    CRASHED = "crashed"
    """The actor could not write its job's outcome (a store error): restart it, reading the job anew."""


@dataclass(frozen=True, slots=True)
class JobRuntime:
    """What a job actor gets from its worker: the store, the agent, the policies and three callbacks.

    Made by the worker for its actors; an actor never reaches the worker or the facade otherwise.
    """

    store: Store
    clock: Clock
    worker_id: str
    invoker: AgentInvoker
    retry: RetryPolicy
    pause_timeout: float
    max_recoveries: int
    concurrency: asyncio.Semaphore | None
    log: Logger
    #: every write of a job, for the local callers waiting for it to settle
    written: Callable[[Job], None]
    #: a new event of a job, for its live subscribers
    publish_event: Callable[[str, dict[str, JsonValue]], None]
    #: persists the buffered events of the worker's job logs
    flusher: Flusher
    #: the text stored for a failed attempt's exception (``DurableAgent(redact_errors=...)``)
    describe_error: Callable[[BaseException], str] = error_text
    #: whether a job has live subscribers (an event derived from a write is made only for them); None: any
    listening: Callable[[str], bool] | None = None
    #: called with the actor and its task once the task has ended (the worker's supervision)
    exited: Callable[[JobActor, asyncio.Task[Exit]], None] = lambda actor, task: None
    #: starts and awaits child jobs (``ctx.start_child``); None where the worker offers none
    children: ChildRuntime | None = None
