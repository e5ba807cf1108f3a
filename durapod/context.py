"""JobContext: what a running agent uses to journal steps, wait for a human and emit events.

What it checks in what the agent hands it (a step's function and result, an event, usage) is in
:mod:`durapod._context_checks`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, final, overload

from pydantic import JsonValue

from durapod._context_checks import check_step_result, check_usage, event_data, is_async
from durapod._typed import answer_codec, step_codec, type_key
from durapod._util import NoPublicConstructor
from durapod.budget import Budget
from durapod.children import CHILD_STEP, ChildHandle, check_child, journaled_child
from durapod.errors import BudgetExceeded, StepMismatch
from durapod.models import StepRecord
from durapod.sleeping import SLEEP_STEP, decode_wake_time, sleep_delay, wake_time
from durapod.versioning import PATCH_STEP, check_change_id, is_marker

if TYPE_CHECKING:
    from durapod.actors.job import JobActor

__all__ = ["JobContext", "Suspend"]

P = ParamSpec("P")
R = TypeVar("R")


class Suspend(BaseException):
    """Raised inside the agent to stop it at a step boundary (pause, drain) or at an interrupt.

    A ``BaseException`` so that an agent's ``except Exception`` does not swallow it; ``finally`` blocks
    still run. Internal: agents never see it unless they catch ``BaseException``.
    """

    def __init__(
        self, waiting_for: str | None = None, answer_type: str | None = None, *, wake_at: datetime | None = None
    ) -> None:
        super().__init__(waiting_for)
        self.waiting_for = waiting_for
        self.answer_type = answer_type
        self.wake_at = wake_at  # a durable sleep: the job waits pending until then


def _usage_record(tokens: int, requests: int) -> dict[str, int]:
    return {"tokens": tokens, "requests": requests}


@final
class JobContext(metaclass=NoPublicConstructor):
    """The running job as its agent sees it. Made by the runtime and passed as the agent's second argument.

    Example:
        >>> async def triage(ticket: str, ctx: JobContext) -> str:
        ...     facts = await ctx.step("lookup", lookup_ticket, ticket)
        ...     approved = await ctx.interrupt(f"Send this reply? {facts}")
        ...     return "sent" if approved else "dropped"
    """

    __slots__ = (
        "_actor",
        "_budget",
        "_control",
        "_interrupts",
        "_journal",
        "_markers",
        "_next_index",
        "_replay_until",
        "_usage",
    )

    def __init__(self, actor: JobActor, journal: Mapping[int, StepRecord]) -> None:
        self._actor = actor
        self._control = actor.control  # the step boundaries read the actor's mailbox
        self._journal = journal
        self._next_index = 0
        self._replay_until = max(journal) + 1 if journal else 0
        self._interrupts = 0
        self._usage: dict[str, int] | None = None  # made on the first report: most jobs never report
        self._budget: Budget | None = None if actor.job.budget is None else Budget.model_validate(actor.job.budget)
        self._markers: list[tuple[int, str]] = []  # patched() markers to journal with the next record

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self._actor.job.id

    @property
    def input(self) -> JsonValue:
        """The input the job was started with."""
        return self._actor.job.input

    @property
    def inputs(self) -> Sequence[JsonValue]:
        """The inputs given on resume, oldest first."""
        return tuple(self._actor.job.inputs)

    @property
    def attempt(self) -> int:
        """Which execution this is, from 1."""
        return self._actor.job.attempts

    @property
    def epoch(self) -> int:
        """The fencing token of this execution: it rises every time a worker takes the job over, so an
        external system can refuse the writes of a worker that lost the job."""
        return self._actor.job.epoch

    @property
    def metadata(self) -> dict[str, JsonValue]:
        """The job's metadata."""
        return dict(self._actor.job.metadata)

    @property
    def is_replaying(self) -> bool:
        """True while the agent has not yet passed every step its journal holds (it replays them)."""
        return self._next_index < self._replay_until

    @overload
    def step(
        self, name: str, fn: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]: ...

    @overload
    def step(self, name: str, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]: ...

    def step(self, name: str, fn: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, Any]:
        """Run ``fn(*args, **kwargs)`` once and journal its JSON result before returning it.

        On replay (after a crash, a retry or a resume) a journaled step returns its recorded result
        without calling ``fn``. Steps are matched by name and position. The position is taken when
        ``step`` is *called*, so steps started together (``asyncio.gather(ctx.step(...), ctx.step(...))``,
        a ``TaskGroup``) get their positions in call order and replay the same way; each returns its own
        result. A sync ``fn`` runs in a worker thread (``asyncio.to_thread``), never on the event loop;
        an async ``fn`` (or a sync one returning an awaitable) is awaited on the loop.

        A result is journaled by ``fn``'s return annotation: a function annotated ``-> Receipt`` (a pydantic
        model, a dataclass, ``datetime``, ``Decimal``, ``UUID``, a tuple, an enum...) has its result stored
        as JSON and gets an equal ``Receipt`` back, on the first run as on every replay.

        Args:
            name: names the step in the journal and the timeline.
            fn: a sync or async function; its result must be JSON, or of its annotated return type.

        Raises:
            StepMismatch: the journal recorded a different step at this position.
            InvalidInput: ``fn`` returned something that cannot be journaled (naming the step and type).
        """
        index = self._next_index
        self._next_index = index + 1
        return self._step(index, name, fn, args, kwargs)

    async def _step(
        self,
        index: int,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        budgeted: bool = True,
    ) -> Any:
        if budgeted and self._budget is not None:
            await self._check_budget(index)
        record = self._journal.get(index)
        codec = step_codec(fn)
        if record is not None:
            if record.name != name:
                raise StepMismatch(self._actor.job.id, index, record.name, name)
            if codec is None:
                return record.result
            return codec.load(record.result, f"journaled result of step {name!r}", self._actor.job.id)
        actor = self._actor
        control = self._control
        control.at_boundary()
        control.step_started()
        try:
            if is_async(fn):
                result = await fn(*args, **kwargs)
            else:
                result = await asyncio.to_thread(fn, *args, **kwargs)
                if inspect.isawaitable(result):  # a lambda that returns a coroutine, say
                    result = await result
            if codec is not None:
                data, result = codec.round_trip(result, f"result of step {name!r}", actor.job.id)
            else:
                data = check_step_result(result, name, actor.job.id)
            if self._markers:
                await self._save_markers()
            await actor.record_step(index, name, data)
        finally:
            control.step_finished()
        control.at_boundary()
        return result

    @overload
    async def interrupt(self, prompt: str) -> JsonValue: ...

    @overload
    async def interrupt(self, prompt: str, *, answer: type[R]) -> R: ...

    @overload
    async def interrupt(self, prompt: str, *, answer: Any) -> Any: ...

    async def interrupt(self, prompt: str, *, answer: Any = None) -> Any:
        """Pause the job until someone resumes it, and return the value given to ``resume``.

        The job becomes ``paused`` with ``waiting_for=prompt``; ``durable.resume(job_id, value)`` continues
        it, the agent replays its journal, and this call returns ``value``.

        Args:
            prompt: what the job waits for.
            answer: the type of the answer (``Approval``, ``bool``...): ``DurableAgent.resume`` refuses a
                value that does not validate (``InvalidInput``, the job stays paused) and this call returns
                the typed value.

        Raises:
            InvalidInput: the answer given (by a ``Client``, which cannot check it) is not an ``answer``.
        """
        number = self._interrupts
        self._interrupts = number + 1
        answers = self._actor.job.answers
        if number < len(answers):
            value = answers[number]
            if answer is None:
                return value
            return answer_codec(answer).load(value, f"answer to {prompt!r}", self._actor.job.id)
        raise Suspend(str(prompt), type_key(answer) if answer is not None else None)

    @property
    def usage(self) -> dict[str, int]:
        """The usage reported so far (``tokens``, ``requests``), counted over the journal."""
        return dict(self._usage or {})

    async def record_usage(self, *, tokens: int = 0, requests: int = 0) -> None:
        """Report model usage that the job's :class:`~durapod.Budget` counts (integrations report their own).

        Journaled as a step named ``usage``, so a replay counts it once; it adds to ``job.usage``.
        """
        check_usage(tokens, requests)
        index = self._next_index
        self._next_index = index + 1
        recorded = await self._step(index, "usage", _usage_record, (tokens, requests), {}, budgeted=False)
        self._count_usage(tokens=recorded["tokens"], requests=recorded["requests"])

    def _count_usage(self, *, tokens: int = 0, requests: int = 0) -> None:
        """Add usage that a journaled step carries (called on the first run and on every replay)."""
        usage = self._usage
        if usage is None:
            usage = self._usage = {}
        usage["tokens"] = usage.get("tokens", 0) + tokens
        usage["requests"] = usage.get("requests", 0) + requests
        self._actor.usage = dict(usage)

    async def _check_budget(self, index: int) -> None:
        """Stop before step ``index`` if the budget has run out (pause for a new one, or fail)."""
        while self._budget is not None:
            exceeded = self._budget.exceeded(self._usage or {}, index)
            if exceeded is None:
                return
            limit, used, allowed = exceeded
            if self._budget.on_exceeded == "fail":
                raise BudgetExceeded(self.job_id, limit, used, allowed)
            prompt = f"budget exceeded: used {used} {limit} of {allowed}; resume with a new Budget"
            self._budget = await self.interrupt(prompt, answer=Budget)

    async def sleep(self, delay: float | timedelta) -> None:
        """Sleep durably for ``delay`` (seconds or a ``timedelta``).

        The wake time is journaled as a step, so a crash or a restart never starts the sleep over. While
        it sleeps the job is ``pending`` with ``next_attempt_at`` (and :attr:`Job.sleeping_until`) = the
        wake time: it holds no task and no actor, any worker of its agent wakes it on time (after a crash
        too), and it can be paused or cancelled like any pending job. On waking, the agent replays its
        journal and this call returns.

        Example:
            >>> async def remind(text: str, ctx: JobContext) -> str:
            ...     await ctx.sleep(timedelta(days=1))
            ...     return await ctx.step("remind", send_reminder, text)
        """
        index = self._take_index()
        record = self._journal.get(index)
        if record is None:
            span = sleep_delay(delay, self.job_id)
            await self._sleep(index, record, self._actor.utcnow() + span)
        else:
            await self._sleep(index, record, None)

    async def sleep_until(self, moment: datetime) -> None:
        """Sleep durably until ``moment`` (a timezone-aware datetime); see :meth:`sleep`."""
        index = self._take_index()
        record = self._journal.get(index)
        await self._sleep(index, record, wake_time(moment, self.job_id) if record is None else None)

    def start_child(
        self,
        child_id: str,
        input: Any = None,
        *,
        agent: str | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
    ) -> Coroutine[Any, Any, ChildHandle]:
        """Start a child job of ``agent`` (default: this job's agent) on the same store, once; await it
        later through the returned :class:`~durapod.ChildHandle`.

        The start is journaled (a step named ``durapod.child``) after the child job is created "if
        absent", so a replay (after a crash, a retry, a resume) never starts a second child: child ids are
        the caller's, and must be the same on every execution (derive them from ``ctx.job_id``). The child
        is queued for any worker of its agent (a child of this job's own agent starts here at once), names
        this job as its ``parent_id``, and is cancelled when this job is cancelled. The journal position is
        taken when ``start_child`` is called, as for :meth:`step`.

        Example:
            >>> async def research(topic: str, ctx: JobContext) -> list[str]:
            ...     handles = [await ctx.start_child(f"{ctx.job_id}:{n}", n, agent="search") for n in range(5)]
            ...     return list(await asyncio.gather(*handles))  # each handle awaits its child's result

        Raises:
            JobConflictError: the id is another job's (not this job's child with this input).
            StepMismatch: the journal recorded something else at this position.
        """
        index = self._take_index()
        return self._start_child(index, child_id, input, agent, metadata)

    def run_child(
        self,
        child_id: str,
        input: Any = None,
        *,
        agent: str | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """Start a child job (as :meth:`start_child`) and return its result once it completes (typed, for a
        child of this job's own typed agent, which also takes its input model).

        Raises:
            ChildFailed: the child failed or was cancelled.
        """
        index = self._take_index()
        return self._run_child(index, child_id, input, agent, metadata)

    async def _run_child(self, index: int, child_id: str, input: Any, agent: str | None, metadata: object) -> Any:
        handle = await self._start_child(index, child_id, input, agent, metadata)
        return await handle.result()

    async def _start_child(
        self, index: int, child_id: str, input: Any, agent: str | None, metadata: object
    ) -> ChildHandle:
        actor = self._actor
        parent = actor.job
        children = actor.children()
        child_id, checked = check_child(parent.id, child_id, metadata)
        if agent is not None and (not isinstance(agent, str) or not agent):
            raise ValueError(f"agent must be a non-empty str or None, got {agent!r}")
        name = agent if agent is not None else parent.agent
        input = children.input_of(name, child_id, input)
        record = self._journal.get(index)
        if record is not None:
            name = journaled_child(parent.id, index, record, child_id) or name
        else:
            self._control.at_boundary()
            await children.create(parent, child_id, name, input, checked)
            if self._markers:
                await self._save_markers()
            await actor.record_step(index, CHILD_STEP, {"id": child_id, "agent": name})
        return ChildHandle._create(children, parent.id, child_id, name, actor.child_wait)

    def patched(self, change_id: str) -> bool:
        """True where the agent should take the code path that ``change_id`` introduced.

        For jobs that were in flight when the agent's code changed: at a position where the job's journal
        already holds a step the old code recorded, this returns False (and takes no position), so the
        replay goes on along the old path without :class:`~durapod.StepMismatch`. Everywhere else (a new
        job, or a replay that has gone past what was recorded) it returns True, and a marker (a step
        named ``durapod.patch``) is journaled with the next step, so a later replay returns True here
        again. Temporal's ``patched``. Once no job of the old code is left, call
        :meth:`deprecate_patch` instead and drop the old path.

        Example:
            >>> async def triage(ticket: str, ctx: JobContext) -> str:
            ...     facts = await ctx.step("lookup", lookup_ticket, ticket)
            ...     if ctx.patched("check-spam"):
            ...         facts = await ctx.step("spam", check_spam, facts)
            ...     return await ctx.step("draft", llm_draft, facts)
        """
        change_id = check_change_id(change_id)
        index = self._next_index
        record = self._journal.get(index)
        if record is not None and not is_marker(record, change_id):
            return False  # recorded by the code from before the change: keep to the old path
        self._next_index = index + 1
        if record is None:
            self._markers.append((index, change_id))
        return True

    def deprecate_patch(self, change_id: str) -> None:
        """Replaces :meth:`patched` once every job that ran the old code is gone: takes the position
        of the marker that ``patched(change_id)`` journaled, where a journal holds one (or an empty
        position, as ``patched`` would), so those jobs still replay; new jobs journal nothing here."""
        change_id = check_change_id(change_id)
        index = self._next_index
        record = self._journal.get(index)
        if record is None:
            if index < self._replay_until:  # an empty position inside the journal: a marker never written
                self._next_index = index + 1
        elif is_marker(record, change_id):
            self._next_index = index + 1

    async def _save_markers(self) -> None:
        markers = self._markers
        while markers:
            index, change_id = markers.pop(0)
            await self._actor.record_step(index, PATCH_STEP, change_id)

    def _take_index(self) -> int:
        index = self._next_index
        self._next_index = index + 1
        return index

    async def _sleep(self, index: int, record: StepRecord | None, wake_at: datetime | None) -> None:
        actor = self._actor
        if record is not None:
            if record.name != SLEEP_STEP:
                raise StepMismatch(actor.job.id, index, record.name, SLEEP_STEP)
            wake_at = decode_wake_time(record.result, actor.job.id)
        else:
            assert wake_at is not None
            self._control.at_boundary()
            if self._markers:
                await self._save_markers()
            await actor.record_step(index, SLEEP_STEP, wake_at.isoformat())
        if wake_at > actor.utcnow():
            raise Suspend(None, wake_at=wake_at)

    async def emit_token(self, token: str) -> None:
        """Stream a piece of the agent's output (a ``token`` event).

        While the agent replays journaled steps, what it emits is already in the log and is skipped.
        """
        if not self.is_replaying:
            await self._actor.emit({"type": "token", "token": str(token)})

    async def emit(self, event: Any) -> None:
        """Log an event: a ``durapod.events`` model (``ToolCallEvent(name=..., arguments=...)``) or a JSON
        object with a ``type``. Its ``job_id`` and ``seq`` are set here. A type durapod does not define
        (``{"type": "progress", "done": 3}``) streams as a :class:`~durapod.CustomEvent`.

        Raises:
            TypeError: not an event (or a built-in type with wrong fields).
            InvalidInput: not JSON.
        """
        data = event_data(event, self._actor.job.id)
        if not self.is_replaying:
            await self._actor.emit(data)
