"""Child jobs: a job starts jobs of any agent on its store, once, and awaits their results.

``ctx.start_child(child_id, input, agent=...)`` creates the child job (pending, ``parent_id`` = the
parent, queued for any worker of its agent; a child of the parent's own agent starts at once in the
parent's worker) and journals a step named :data:`CHILD_STEP` whose result names the child. The child is
created before the step is journaled and creation is "create if absent", so a parent that crashes between
the two finds its child on replay instead of starting a second one. Awaiting the handle waits for the
child to settle through the client's wait machinery (local writes wake it; another process's are polled).

Cancelling a parent cancels its unfinished children (read from its journal), and theirs in turn.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Generator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, final

from pydantic import JsonValue

from durapod._control import apply_control
from durapod._util import NoPublicConstructor
from durapod._waiting import Waiters
from durapod.errors import ChildFailed, JobConflictError, JobNotFound, JobStateError, StepMismatch
from durapod.lowlevel.clock import Clock
from durapod.models import Job, JobStatus, StepRecord, check_json, check_metadata, new_job, validate_job_id
from durapod.stores.base import Store

__all__ = [
    "CHILD_STEP",
    "ChildHandle",
    "ChildRuntime",
    "cancel_children",
    "check_child",
    "child_ids",
    "journaled_child",
]

#: The journal name of a ``ctx.start_child`` / ``ctx.run_child`` position; its result is ``{"id", "agent"}``.
CHILD_STEP: Final = "durapod.child"


class ChildRuntime:
    """What a worker's job actors use to start and await child jobs. Made by :class:`~durapod.DurableAgent`."""

    def __init__(
        self, store: Store, clock: Clock, waiters: Waiters, poll_interval: float, is_local: Callable[[str], bool]
    ) -> None:
        self.store = store
        self.clock = clock
        self.waiters = waiters
        self.poll_interval = poll_interval
        self.is_local = is_local
        #: runs a new job of the worker's own agent here at once (set by the agent once its worker exists)
        self.adopt: Callable[[Job], Awaitable[None]] | None = None
        #: the worker's agent name: its children start here
        self.agent = ""
        #: the JSON form of a child's input, and the child job with its typed result, for children of
        #: the worker's own agent when it is typed (set by the agent)
        self.dump_input: Callable[[Any, str], JsonValue] | None = None
        self.typed: Callable[[Job], Job] | None = None

    def input_of(self, agent: str, child_id: str, input: Any) -> JsonValue:
        """The child's input as stored: validated by the agent's input type for a child of this worker's
        agent (a typed agent takes its model or its JSON form), else checked to be JSON."""
        if agent == self.agent and self.dump_input is not None:
            return self.dump_input(input, child_id)
        checked: JsonValue = check_json(input, "child input", child_id)
        return checked

    async def create(
        self, parent: Job, child_id: str, agent: str, input: JsonValue, metadata: Mapping[str, JsonValue]
    ) -> Job:
        """Create the child job if absent (queued for its agent) and return it.

        Raises:
            JobConflictError: the id belongs to a job that is not this parent's child with this input.
        """
        now = self.clock.utcnow()
        job = new_job(
            id=child_id,
            agent=agent,
            input=input,
            metadata=dict(metadata),
            created_at=now,
            updated_at=now,
            version=1,
            parent_id=parent.id,
        )
        stored, created = await self.store.create(job)
        if not created:
            if stored.parent_id != parent.id:
                raise JobConflictError(child_id, f"another parent ({stored.parent_id!r}), not {parent.id!r}")
            if stored.agent != agent:
                raise JobConflictError(child_id, f"another agent ({stored.agent!r})")
            if stored.input != input:
                raise JobConflictError(child_id)
        elif agent == self.agent and self.adopt is not None:
            await self.adopt(stored)
        return stored

    async def wait(self, child_id: str) -> Job:
        """The child once it completed, failed or was cancelled (a paused child is waited for too)."""
        while True:
            job = await self.waiters.wait(self.store, child_id, None, self.poll_interval, self.is_local)
            if job.status is not JobStatus.PAUSED:
                return job
            await self.clock.sleep(self.poll_interval)  # paused: someone must resume it; look again later


def child_ids(steps: list[StepRecord] | Mapping[int, StepRecord]) -> list[str]:
    """The ids of the children a journal started, in journal order."""
    records = steps.values() if isinstance(steps, Mapping) else steps
    ids: list[str] = []
    for record in sorted(records, key=lambda record: record.index):
        if record.name == CHILD_STEP and isinstance(record.result, dict) and isinstance(record.result.get("id"), str):
            ids.append(str(record.result["id"]))
    return ids


async def cancel_children(
    store: Store, job_id: str, clock: Clock, journal: Mapping[int, StepRecord] | None = None
) -> list[str]:
    """Cancel the unfinished children of a cancelled job, and theirs in turn. Returns the ids cancelled
    (a child that a live worker runs gets a control request: it is cancelled once its owner acts)."""
    ids = child_ids(journal if journal is not None else await store.read_steps(job_id))
    cancelled: list[str] = []
    for child_id in ids:
        with contextlib.suppress(JobStateError, JobNotFound):  # settled already, or deleted
            applied = await apply_control(store, child_id, "cancel", clock)
            cancelled.append(child_id)
            if applied is not None:  # nobody ran it: cancel its own children here
                cancelled += await cancel_children(store, child_id, clock)
    return cancelled


@final
class ChildHandle(metaclass=NoPublicConstructor):
    """A child job started with :meth:`JobContext.start_child`. Await it for the child's result.

    Example:
        >>> async def research(topic: str, ctx: JobContext) -> list[str]:
        ...     handles = [await ctx.start_child(f"{ctx.job_id}:{n}", n, agent="search") for n in range(5)]
        ...     return await asyncio.gather(*handles)
    """

    __slots__ = ("_children", "_waiting", "agent", "job_id", "parent_id")

    def __init__(
        self,
        children: ChildRuntime,
        parent_id: str,
        job_id: str,
        agent: str,
        waiting: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self._children = children
        self._waiting = waiting
        self.parent_id = parent_id
        """The parent job's id."""
        self.job_id = job_id
        """The child job's id."""
        self.agent = agent
        """The child's agent name."""

    def __repr__(self) -> str:
        return f"<ChildHandle {self.job_id} of {self.parent_id}>"

    async def job(self) -> Job:
        """The child job once it completed, failed or was cancelled."""
        if self._waiting is None:
            return await self._children.wait(self.job_id)
        async with self._waiting():
            return await self._children.wait(self.job_id)

    async def result(self) -> Any:
        """The child's result once it completed (typed, for a child of the parent's own typed agent).

        Raises:
            ChildFailed: the child failed or was cancelled.
        """
        job = await self.job()
        if job.status is not JobStatus.COMPLETED:
            raise ChildFailed(self.parent_id, self.job_id, str(job.status), job.error_type, job.error)
        typed = self._children.typed
        return (typed(job) if typed is not None else job).result

    def __await__(self) -> Generator[Any, None, Any]:
        return self.result().__await__()


def check_child(parent_id: str, child_id: object, metadata: object) -> tuple[str, dict[str, Any]]:
    """The child's id and metadata checked (InvalidJobId, InvalidInput, TypeError)."""
    checked_id = validate_job_id(child_id)
    if checked_id == parent_id:
        raise ValueError(f"job {parent_id!r} cannot be its own child")
    return checked_id, check_metadata(metadata, "metadata", checked_id)


def journaled_child(parent_id: str, index: int, record: StepRecord, child_id: str) -> str:
    """The agent a journaled child step names; :class:`StepMismatch` if it is not this child's."""
    result = record.result
    recorded = result.get("id") if isinstance(result, dict) else None
    if record.name != CHILD_STEP or recorded != child_id:
        shown = f"{CHILD_STEP}({recorded})" if record.name == CHILD_STEP else record.name
        raise StepMismatch(parent_id, index, shown, f"{CHILD_STEP}({child_id})")
    assert isinstance(result, dict)
    return str(result.get("agent", ""))
