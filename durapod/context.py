"""JobContext: what a running agent uses to journal steps, wait for a human and emit events."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, final, overload

from pydantic import JsonValue

from durapod._util import NoPublicConstructor
from durapod.errors import StepMismatch
from durapod.models import StepRecord, check_json

if TYPE_CHECKING:
    from durapod.actors.job import JobActor

__all__ = ["JobContext", "Suspend"]

P = ParamSpec("P")
R = TypeVar("R")


class Suspend(BaseException):
    """Raised inside the agent to stop it at a step boundary (pause) or at an interrupt.

    A ``BaseException`` so that an agent's ``except Exception`` does not swallow it; ``finally`` blocks
    still run. Internal: agents never see it unless they catch ``BaseException``.
    """

    def __init__(self, waiting_for: str | None = None) -> None:
        super().__init__(waiting_for)
        self.waiting_for = waiting_for


@final
class JobContext(metaclass=NoPublicConstructor):
    """The running job as its agent sees it. Made by the runtime and passed as the agent's second argument.

    Example:
        >>> async def triage(ticket: str, ctx: JobContext) -> str:
        ...     facts = await ctx.step("lookup", lookup_ticket, ticket)
        ...     approved = await ctx.interrupt(f"Send this reply? {facts}")
        ...     return "sent" if approved else "dropped"
    """

    __slots__ = ("_actor", "_interrupts", "_journal", "_next_index", "attempt", "epoch", "input", "inputs", "job_id")

    def __init__(self, actor: JobActor, journal: list[StepRecord]) -> None:
        job = actor.job
        self._actor = actor
        self._journal = journal
        self._next_index = 0
        self._interrupts = 0
        self.job_id: str = job.id
        """The job's id."""
        self.input: JsonValue = job.input
        """The input the job was started with."""
        self.inputs: Sequence[JsonValue] = tuple(job.inputs)
        """The inputs given on resume, oldest first."""
        self.attempt: int = job.attempts
        """Which execution this is, from 1."""
        self.epoch: int = job.epoch
        """The fencing token of this execution: it rises every time a worker takes the job over, so an
        external system can refuse the writes of a worker that lost the job."""

    @property
    def metadata(self) -> dict[str, JsonValue]:
        """The job's metadata."""
        return dict(self._actor.job.metadata)

    @property
    def is_replaying(self) -> bool:
        """True while the agent is still returning journaled steps instead of running them."""
        return self._next_index < len(self._journal)

    @overload
    async def step(self, name: str, fn: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R: ...

    @overload
    async def step(self, name: str, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R: ...

    async def step(self, name: str, fn: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run ``fn(*args, **kwargs)`` once and journal its JSON result before returning it.

        On replay (after a crash, a retry or a resume) a journaled step returns its recorded result
        without calling ``fn``. Steps are matched by name and order.

        Args:
            name: names the step in the journal and the timeline.
            fn: a sync or async function; its result must be JSON.

        Raises:
            StepMismatch: the journal recorded a different step at this position.
            InvalidInput: ``fn`` returned something that is not JSON.
        """
        index = self._next_index
        if index < len(self._journal):
            record = self._journal[index]
            if record.name != name:
                raise StepMismatch(self.job_id, index, record.name, name)
            self._next_index = index + 1
            return record.result
        self._actor.check_suspend()
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        check_json(result, f"result of step {name!r}", self.job_id)
        record = await self._actor.record_step(index, name, cast(JsonValue, result))
        self._journal.append(record)
        self._next_index = index + 1
        self._actor.check_suspend()
        return result

    async def interrupt(self, prompt: str) -> JsonValue:
        """Pause the job until someone resumes it, and return the value given to ``resume``.

        The job becomes ``paused`` with ``waiting_for=prompt``; ``durable.resume(job_id, value)`` continues
        it, the agent replays its journal, and this call returns ``value``.
        """
        number = self._interrupts
        self._interrupts = number + 1
        answers = self._actor.job.answers
        if number < len(answers):
            return answers[number]
        raise Suspend(str(prompt))

    async def emit_token(self, token: str) -> None:
        """Stream a piece of the agent's output (a ``token`` event).

        While the agent replays journaled steps, what it emits is already in the log and is skipped.
        """
        if not self.is_replaying:
            await self._actor.emit({"type": "token", "token": str(token)})

    async def emit(self, event: Any) -> None:
        """Log an event: a ``durapod.events`` model (``ToolCallEvent(name=..., arguments=...)``) or a JSON
        object with a ``type``. Its ``job_id`` and ``seq`` are set here.

        Raises:
            TypeError: not an event.
            InvalidInput: not JSON.
        """
        if hasattr(event, "model_dump"):
            data = event.model_dump(mode="json", exclude={"job_id", "seq", "replayed"})
        elif isinstance(event, dict):
            data = dict(event)
        else:
            raise TypeError(f"cannot emit {event!r}: expected a durapod.events model or a dict with a 'type'")
        if not isinstance(data.get("type"), str):
            raise TypeError(f"cannot emit {event!r}: an event needs a 'type'")
        check_json(data, "event", self.job_id)
        if data["type"] == "error":
            raise TypeError("agents report failure by raising (or by yielding an ErrorEvent from a generator)")
        if not self.is_replaying:
            await self._actor.emit(data)
